/* Every op of the library in one table: the name shown in graphs and
 * messages, and the function that runs it backwards. */
#include "ops/ops.h"

const nn_op_info nn_op_table[NN_OP_COUNT] = {
    [NN_OP_MATMUL] = {"matmul", nn_matmul_backward},
    [NN_OP_LINEAR] = {"linear", nn_linear_backward},
    [NN_OP_ADD] = {"add", nn_add_backward},
    [NN_OP_SUB] = {"sub", nn_sub_backward},
    [NN_OP_MUL] = {"mul", nn_mul_backward},
    [NN_OP_ADD_BIAS] = {"add_bias", nn_add_bias_backward},
    [NN_OP_SCALE] = {"scale", nn_scale_backward},
    [NN_OP_SUM] = {"sum", nn_sum_backward},
    [NN_OP_MEAN] = {"mean", nn_mean_backward},
    [NN_OP_RESHAPE] = {"reshape", nn_reshape_backward},
    [NN_OP_RELU] = {"relu", nn_relu_backward},
    [NN_OP_LEAKY_RELU] = {"leaky_relu", nn_leaky_relu_backward},
    [NN_OP_SIGMOID] = {"sigmoid", nn_sigmoid_backward},
    [NN_OP_TANH] = {"tanh", nn_tanh_backward},
    [NN_OP_GELU] = {"gelu", nn_gelu_backward},
    [NN_OP_SOFTMAX] = {"softmax", nn_softmax_backward},
    [NN_OP_LOG_SOFTMAX] = {"log_softmax", nn_log_softmax_backward},
    [NN_OP_CROSS_ENTROPY] = {"cross_entropy", nn_cross_entropy_backward},
    [NN_OP_MSE] = {"mse", nn_mse_backward},
    [NN_OP_DROPOUT] = {"dropout", nn_dropout_backward},
    [NN_OP_LAYER_NORM] = {"layer_norm", nn_layer_norm_backward},
    [NN_OP_CONV2D] = {"conv2d", nn_conv2d_backward},
    [NN_OP_CONV2D_RELU] = {"conv2d+relu", nn_conv2d_backward},
    [NN_OP_CONV2D_RELU_MAXPOOL] = {"conv2d+relu+max_pool2d", nn_conv2d_backward},
    [NN_OP_MAX_POOL2D] = {"max_pool2d", nn_max_pool2d_backward},
    [NN_OP_AVG_POOL2D] = {"avg_pool2d", nn_avg_pool2d_backward},
    [NN_OP_BATCH_NORM] = {"batch_norm", nn_batch_norm_backward},
};
