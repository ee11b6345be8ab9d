/* Dense layers: linear(OUT), y = x W^T + b, as torch.nn.Linear, on the last
 * dimension:
 *   [F] -> [OUT], [T, F] -> [T, OUT]    fcN.weight [OUT, F], fcN.bias [OUT]
 * linear(OUT,bias=0) has no bias (nn.Linear(F, OUT, bias=False)): a GPT's
 * layers without biases, as nanoGPT's bias=False. */
#include "layers/layers.h"

enum { WEIGHT, BIAS };

static int linear_infer(nn_layer *l, const char *where) {
    if (l->in_ndim == 3) {
        char in[48];
        return nn_error("%s: its input is %s; add flatten before a linear layer", where,
                        layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    l->out_shape[l->in_ndim - 1] = l->out;
    return 0;
}

/* The features a layer acts on: the last dimension of its input. */
static int in_features(const nn_layer *l) { return l->in_shape[l->in_ndim - 1]; }

static int linear_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    out[WEIGHT] = (layer_tensor){"weight", 2, {l->out, in_features(l)}, .learned = true, .decay = true};
    if (!l->bias) return 1;
    out[BIAS] = (layer_tensor){"bias", 1, {l->out}, .learned = true};
    return 2;
}

/* PyTorch's default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static void linear_init(nn_layer *l, nn_rng *rng) {
    int fan_in = in_features(l);
    nn_init_uniform_fan_in(l->tensors[WEIGHT], fan_in, rng);
    if (l->bias) nn_init_uniform_fan_in(l->tensors[BIAS], fan_in, rng);
}

/* [B, T, F] goes through as [B*T, F] rows (views, no copies). */
static nn_tensor *linear_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    nn_tensor *b = l->bias ? l->tensors[BIAS] : NULL;
    if (x->ndim == 2) return nn_linear(run->ctx, x, l->tensors[WEIGHT], b);
    int B = x->shape[0], T = x->shape[1];
    nn_tensor *rows = nn_reshape(run->ctx, x, 2, (int[]){B * T, x->shape[2]});
    nn_tensor *y = nn_linear(run->ctx, rows, l->tensors[WEIGHT], b);
    return nn_reshape(run->ctx, y, 3, (int[]){B, T, l->out});
}

const nn_layer_kind layer_linear = {
    .name = "linear",
    .prefix = "fc",
    .example = "linear(128)",
    .n_args = 2,
    .args = {{"out", true, true, 0, 1, 65536, offsetof(nn_layer, out)},
             {"bias", true, false, 1, 0, 1, offsetof(nn_layer, bias)}},
    .infer = linear_infer,
    .tensors = linear_tensors,
    .init = linear_init,
    .forward = linear_forward,
};
