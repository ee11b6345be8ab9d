/* Shared by the op files: the backward of every op (listed in
 * src/core/ops_table.c) and small checks. */
#ifndef NN_OPS_H
#define NN_OPS_H

#include <stdint.h>

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
void nn_embedding_backward(nn_node *n);
/* nn_rnn, nn_lstm and nn_gru (ops/rnn.c) */
void nn_recurrent_backward(nn_node *n);
void nn_last_step_backward(nn_node *n);
/* ops/attention.c */
void nn_attention_backward(nn_node *n);
/* nn_add_positions and nn_mean_steps (ops/sequence.c) */
void nn_add_positions_backward(nn_node *n);
void nn_mean_steps_backward(nn_node *n);

/* Fused forms of layer sequences, for the model's forward loop (same results
 * as the separate ops, without the tensors between them). */
/* relu(conv2d(x, w, b)), and with maxpool, max_pool2d(that, 2, 2). */
nn_tensor *nn_conv2d_relu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding,
                          bool maxpool);

/* relu(batch_norm(conv2d(x, w, b), bn_w, bn_b, ...)), and with maxpool,
 * max_pool2d(that, 2, 2); the convolution's output keeps no gradient. */
nn_tensor *nn_conv2d_bn_relu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding,
                             nn_tensor *bn_w, nn_tensor *bn_b, float *running_mean, float *running_var, float momentum,
                             float eps, bool maxpool);
/* relu(batch_norm(x, ...)), and with maxpool, max_pool2d(that, 2, 2). */
nn_tensor *nn_batch_norm_relu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float *running_mean,
                              float *running_var, float momentum, float eps, bool maxpool);
void nn_batch_norm_relu_backward(nn_node *n);
/* gelu(layer_norm(x, w, b, eps)) (exact GELU), then, in training mode with
 * p > 0, dropout(that, p, rng), drawing rng's numbers as nn_dropout does. */
nn_tensor *nn_layer_norm_gelu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float eps, float p,
                              nn_rng *rng);
void nn_layer_norm_gelu_backward(nn_node *n);

/* Dropout's mask: mask[i] = 1 where element i is kept (probability 1 - p),
 * from rng's next n numbers, which it advances past (ops/dropout.c). */
void nn_dropout_mask(uint8_t *mask, size_t n, float p, nn_rng *rng);

/* The fused ops' 2x2, stride-2 max pooling of max(z * scale + shift, 0)
 * (ops/pool.c). A row pair r0, r1 of z gives y[0..PW) and the window's
 * winner (0..3, row-major, the first maximum); rows are read 32 floats at a
 * time and y and winner written 16 at a time, past their ends: callers
 * leave room. */
void nn_relu_pool2_row(const float *r0, const float *r1, float scale, float shift, int PW, float *y,
                       uint8_t *winner);
/* Its adjoint on one plane: dz (OH x OW, rows of OW) gets g[ph * PW + pw]
 * at each window's winner and 0 at its other three places. g and winner are
 * read 16 at a time and dz written 2 x 16 floats past its last window: room
 * again. Rows and columns no window covers are left alone. */
void nn_relu_pool2_scatter(const float *g, const uint8_t *winner, int PH, int PW, int OW, float *dz);

/* Aborts with both shapes in the message unless a and b have the same shape. */
void nn_check_same_shape(const char *op, const nn_tensor *a, const nn_tensor *b);

#endif
