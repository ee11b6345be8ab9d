/* Activations, elementwise, any shape: relu, leakyrelu[(SLOPE)], gelu
 * (the exact erf form), sigmoid, tanh. */
#include "layers/layers.h"

static nn_tensor *relu_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_relu(run->ctx, x);
}

static nn_tensor *leakyrelu_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_leaky_relu(run->ctx, x, l->p);
}

static nn_tensor *gelu_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_gelu(run->ctx, x, false);
}

static nn_tensor *sigmoid_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_sigmoid(run->ctx, x);
}

static nn_tensor *tanh_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_tanh(run->ctx, x);
}

const nn_layer_kind layer_relu = {.name = "relu", .forward = relu_forward};
const nn_layer_kind layer_leakyrelu = {
    .name = "leakyrelu",
    .n_args = 1,
    .args = {{"slope", false, false, 0.01, 0.0, 1.0, offsetof(nn_layer, p)}},
    .forward = leakyrelu_forward,
};
const nn_layer_kind layer_gelu = {.name = "gelu", .forward = gelu_forward};
const nn_layer_kind layer_sigmoid = {.name = "sigmoid", .forward = sigmoid_forward};
const nn_layer_kind layer_tanh = {.name = "tanh", .forward = tanh_forward};
