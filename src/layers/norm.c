/* Normalisation layers.
 *   batchnorm   over features after a linear, over channels after a conv
 *               (BatchNorm1d / BatchNorm2d): bnN.weight, bnN.bias, and the
 *               state bnN.running_mean, bnN.running_var, bnN.num_batches_tracked
 *   layernorm   over the last dimension, [F] or [T, F]: lnN.weight, lnN.bias
 * and the fused forms batchnorm relu [maxpool(2)] (ops/batchnorm.c) and
 * layernorm gelu [dropout(P)] (ops/layernorm.c). */
#include "layers/layers.h"
#include "ops/ops.h"

enum { WEIGHT, BIAS, RUNNING_MEAN, RUNNING_VAR, NUM_BATCHES };

/* weight and bias of the normalised channels (batchnorm: in_shape[0]) or
 * features (layernorm: the last dimension) */
static int affine_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    int c = l->kind == &layer_layernorm ? l->in_shape[l->in_ndim - 1] : l->in_shape[0];
    out[WEIGHT] = (layer_tensor){"weight", 1, {c}, .learned = true};
    out[BIAS] = (layer_tensor){"bias", 1, {c}, .learned = true};
    return 2;
}

/* ---- batchnorm ---- */

static int batchnorm_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    int c = l->in_shape[0];
    affine_tensors(l, out);
    out[RUNNING_MEAN] = (layer_tensor){"running_mean", 1, {c}, .learned = false};
    out[RUNNING_VAR] = (layer_tensor){"running_var", 1, {c}, .learned = false};
    out[NUM_BATCHES] = (layer_tensor){"num_batches_tracked", 0, {0}, .learned = false};
    return 5;
}

/* weight 1, bias 0, running mean 0, running variance 1, as PyTorch starts. */
static void batchnorm_init(nn_layer *l, nn_rng *rng) {
    nn_init_const(l->tensors[WEIGHT], 1.0f);
    nn_init_const(l->tensors[RUNNING_VAR], 1.0f);
}

/* Training mode also counts the batch, as PyTorch's num_batches_tracked. */
static void count_batch(nn_layer *l, nn_ctx *ctx) {
    if (nn_training(ctx)) l->tensors[NUM_BATCHES]->data[0] += 1.0f;
}

static nn_tensor *batchnorm_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    nn_tensor *y = nn_batch_norm(run->ctx, x, l->tensors[WEIGHT], l->tensors[BIAS], l->tensors[RUNNING_MEAN]->data,
                                 l->tensors[RUNNING_VAR]->data, NN_BATCH_NORM_MOMENTUM, NN_BATCH_NORM_EPS);
    count_batch(l, run->ctx);
    return y;
}

/* Over features [F] or channels [C, H, W]; PyTorch's BatchNorm1d would take
 * a sequence's steps for channels, so sequences are refused. */
static int batchnorm_infer(nn_layer *l, const char *where) {
    if (l->in_ndim == 2) {
        char in[48];
        return nn_error("%s: normalises features or channels, but its input is the sequence %s (use layernorm)",
                        where, layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    return 0;
}

const nn_layer_kind layer_batchnorm = {
    .name = "batchnorm",
    .prefix = "bn",
    .infer = batchnorm_infer,
    .tensors = batchnorm_tensors,
    .init = batchnorm_init,
    .forward = batchnorm_forward,
};

static nn_tensor *batchnorm_relu(nn_layer *l, nn_ctx *ctx, nn_tensor *x, bool maxpool) {
    nn_tensor *y = nn_batch_norm_relu(ctx, x, l->tensors[WEIGHT], l->tensors[BIAS], l->tensors[RUNNING_MEAN]->data,
                                      l->tensors[RUNNING_VAR]->data, NN_BATCH_NORM_MOMENTUM, NN_BATCH_NORM_EPS,
                                      maxpool);
    count_batch(l, ctx);
    return y;
}

nn_tensor *batchnorm_relu_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return batchnorm_relu(l, run->ctx, x, false);
}

nn_tensor *batchnorm_relu_maxpool_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return batchnorm_relu(l, run->ctx, x, true);
}

/* ---- layernorm ---- */

static int layernorm_infer(nn_layer *l, const char *where) {
    if (l->in_ndim == 3) {
        char in[48];
        return nn_error("%s: normalises features, but its input is %s (use batchnorm after a conv)", where,
                        layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    return 0;
}

static void layernorm_init(nn_layer *l, nn_rng *rng) { nn_init_const(l->tensors[WEIGHT], 1.0f); }

static nn_tensor *layernorm_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_layer_norm(run->ctx, x, l->tensors[WEIGHT], l->tensors[BIAS], NN_LAYER_NORM_EPS);
}

const nn_layer_kind layer_layernorm = {
    .name = "layernorm",
    .prefix = "ln",
    .infer = layernorm_infer,
    .tensors = affine_tensors,
    .init = layernorm_init,
    .forward = layernorm_forward,
};

/* l[0] the layernorm, l[1] the GELU, l[2] the dropout if any. */
nn_tensor *layernorm_gelu_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_layer_norm_gelu(run->ctx, x, l->tensors[WEIGHT], l->tensors[BIAS], NN_LAYER_NORM_EPS, 0.0f, run->dropout_rng);
}

nn_tensor *layernorm_gelu_dropout_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_layer_norm_gelu(run->ctx, x, l->tensors[WEIGHT], l->tensors[BIAS], NN_LAYER_NORM_EPS, l[2].p, run->dropout_rng);
}
