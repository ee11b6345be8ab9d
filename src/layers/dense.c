/* Dense layers: linear(OUT), y = x W^T + b, as torch.nn.Linear.
 *   [F] -> [OUT]    fcN.weight [OUT, F], fcN.bias [OUT] */
#include "layers/layers.h"

enum { WEIGHT, BIAS };

static int linear_infer(nn_layer *l, const char *where) {
    if (l->in_ndim == 3) {
        char in[48];
        return nn_error("%s: its input is %s; add flatten before a linear layer", where,
                        layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    l->out_shape[0] = l->out;
    return 0;
}

static int linear_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    out[WEIGHT] = (layer_tensor){"weight", 2, {l->out, l->in_shape[0]}, .learned = true, .decay = true};
    out[BIAS] = (layer_tensor){"bias", 1, {l->out}, .learned = true};
    return 2;
}

/* PyTorch's default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void linear_init(nn_layer *l, nn_rng *rng) {
    int fan_in = l->in_shape[0];
    nn_init_uniform_fan_in(l->tensors[WEIGHT], fan_in, rng);
    nn_init_uniform_fan_in(l->tensors[BIAS], fan_in, rng);
}

static nn_tensor *linear_forward(nn_layer *l, nn_ctx *ctx, nn_tensor *x, nn_rng *dropout_rng) {
    return nn_linear(ctx, x, l->tensors[WEIGHT], l->tensors[BIAS]);
}

const nn_layer_kind layer_linear = {
    .name = "linear",
    .prefix = "fc",
    .example = "linear(128)",
    .n_args = 1,
    .args = {{"out", true, true, 0, 1, 65536, offsetof(nn_layer, out)}},
    .infer = linear_infer,
    .tensors = linear_tensors,
    .init = linear_init,
    .forward = linear_forward,
};
