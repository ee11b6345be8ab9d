/* Blocks: layers that hold layers.
 *   residual(LAYERS)     y = x + f(x), f the LAYERS in order; f must keep the
 *                        shape ([C, H, W] -> [C, H, W], [T, F] -> [T, F])
 *   repeat(N, LAYERS)    the LAYERS N times in a row, each copy its own layers
 *                        (own weights): repeat(2, linear(64) relu) is
 *                        linear(64) relu linear(64) relu
 * In the stack a block is followed by the layers it holds (l->n_inner of
 * them, a nested block's included; for repeat its N copies one after the
 * other), planned before it and run by its forward through layers_forward.
 *
 * A residual block has no tensors of its own; its layers are named under it
 * (res1.conv2.weight), as a PyTorch module `res1` holding them would name
 * them. repeat has no name: its copies' layers are named as if written out. */
#include <string.h>

#include "layers/layers.h"

/* f's output must have x's shape, or x + f(x) does not exist. */
static int residual_infer(nn_layer *l, const char *where) {
    const nn_layer *last = layers_span_last(l + 1, l->n_inner);
    if (last->out_ndim == l->in_ndim && memcmp(last->out_shape, l->in_shape, sizeof l->in_shape) == 0) return 0;
    char in[48], out[48];
    return nn_error("%s: its layers map %s to %s; a residual block must keep the shape", where,
                    layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in),
                    layer_shape_str(last->out_ndim, last->out_shape, out, sizeof out));
}

/* y = x + f(x). The add sends y's gradient both ways, unchanged: straight
 * to x (the identity path, through no weight) and back through f; x's
 * gradient is the sum of the two:
 *   dL/dx = dL/dy + (df/dx)^T dL/dy */
static nn_tensor *residual_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    nn_tensor *fx = layers_forward(l + 1, l->n_inner, run, x);
    return nn_add(run->ctx, x, fx);
}

const nn_layer_kind layer_residual = {
    .name = "residual",
    .prefix = "res",
    .example = "residual(linear(64) relu linear(64))",
    .holds_layers = true,
    .infer = residual_infer,
    .forward = residual_forward,
};

/* The last copy's output is the block's. */
static int repeat_infer(nn_layer *l, const char *where) {
    const nn_layer *last = layers_span_last(l + 1, l->n_inner);
    l->out_ndim = last->out_ndim;
    memcpy(l->out_shape, last->out_shape, sizeof l->out_shape);
    return 0;
}

static nn_tensor *repeat_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return layers_forward(l + 1, l->n_inner, run, x);
}

const nn_layer_kind layer_repeat = {
    .name = "repeat",
    .example = "repeat(2, linear(64) relu)",
    .n_args = 1,
    .args = {{"times", true, true, 0, 1, 1024, offsetof(nn_layer, times)}},
    .holds_layers = true,
    .infer = repeat_infer,
    .forward = repeat_forward,
};
