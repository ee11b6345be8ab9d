/* Shared by the op files: the backward of every op (listed in
 * src/core/ops_table.c) and small checks. */
#ifndef NN_OPS_H
#define NN_OPS_H

#include "core/graph.h"

void nn_matmul_backward(nn_node *n);
void nn_linear_backward(nn_node *n);
void nn_add_backward(nn_node *n);
void nn_sub_backward(nn_node *n);
void nn_mul_backward(nn_node *n);
void nn_add_bias_backward(nn_node *n);
void nn_scale_backward(nn_node *n);
void nn_sum_backward(nn_node *n);
void nn_mean_backward(nn_node *n);
void nn_reshape_backward(nn_node *n);
void nn_relu_backward(nn_node *n);
void nn_leaky_relu_backward(nn_node *n);
void nn_sigmoid_backward(nn_node *n);
void nn_tanh_backward(nn_node *n);
void nn_gelu_backward(nn_node *n);
void nn_softmax_backward(nn_node *n);
void nn_log_softmax_backward(nn_node *n);
void nn_cross_entropy_backward(nn_node *n);
void nn_mse_backward(nn_node *n);
void nn_dropout_backward(nn_node *n);
void nn_layer_norm_backward(nn_node *n);
void nn_conv2d_backward(nn_node *n);
void nn_max_pool2d_backward(nn_node *n);
void nn_avg_pool2d_backward(nn_node *n);
void nn_batch_norm_backward(nn_node *n);

/* Fused forms of layer sequences, for the model's forward loop (same results
 * as the separate ops, without the tensors between them). */
/* relu(conv2d(x, w, b)), and with maxpool, max_pool2d(that, 2, 2). */
nn_tensor *nn_conv2d_relu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding,
                          bool maxpool);

/* Aborts with both shapes in the message unless a and b have the same shape. */
void nn_check_same_shape(const char *op, const nn_tensor *a, const nn_tensor *b);

#endif
