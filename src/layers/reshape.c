/* flatten: [C, H, W] (or any shape) -> [C*H*W], the batch kept. */
#include "layers/layers.h"

static int flatten_infer(nn_layer *l, const char *where) {
    long n = 1;
    for (int i = 0; i < l->in_ndim; i++) n *= l->in_shape[i];
    if (n == 0) return nn_error("%s: a sequence of any length has no fixed size to flatten (use last)", where);
    if (n > 1L << 30) return nn_error("%s: its output of %ld values per example is too large", where, n);
    l->out_ndim = 1;
    l->out_shape[0] = (int)n;
    l->out_shape[1] = l->out_shape[2] = 0;
    return 0;
}

static nn_tensor *flatten_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_flatten(run->ctx, x);
}

const nn_layer_kind layer_flatten = {.name = "flatten", .infer = flatten_infer, .forward = flatten_forward};
