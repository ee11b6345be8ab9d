/* Convolutions: conv(OUT,K[,stride=S][,padding=P]), as torch.nn.Conv2d with
 * square kernels and zero padding.
 *   [C, H, W] -> [OUT, H', W']    convN.weight [OUT, C, K, K], convN.bias [OUT]
 * and the fused forms the forward loop uses when a conv is followed by
 * [batchnorm] relu [maxpool(2)] (ops/conv.c). */
#include "layers/layers.h"
#include "ops/ops.h"

enum { WEIGHT, BIAS };
enum { BN_WEIGHT, BN_BIAS, BN_RUNNING_MEAN, BN_RUNNING_VAR, BN_NUM_BATCHES };

static int conv_infer(nn_layer *l, const char *where) {
    if (l->in_ndim != 3) {
        char in[48];
        return nn_error("%s: needs an image [C, H, W] but gets %s (a conv cannot come after flatten or linear)",
                        where, layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    l->out_shape[0] = l->out;
    return layer_window(where, "height", l->in_shape[1], l->kernel, l->stride, l->padding, &l->out_shape[1]) ||
                   layer_window(where, "width", l->in_shape[2], l->kernel, l->stride, l->padding, &l->out_shape[2])
               ? -1
               : 0;
}

static int conv_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    out[WEIGHT] = (layer_tensor){"weight", 4, {l->out, l->in_shape[0], l->kernel, l->kernel}, .learned = true,
                                 .decay = true};
    out[BIAS] = (layer_tensor){"bias", 1, {l->out}, .learned = true};
    return 2;
}

/* PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C K K. */
static void conv_init(nn_layer *l, nn_rng *rng) {
    int fan_in = l->in_shape[0] * l->kernel * l->kernel;
    nn_init_uniform_fan_in(l->tensors[WEIGHT], fan_in, rng);
    nn_init_uniform_fan_in(l->tensors[BIAS], fan_in, rng);
}

static nn_tensor *conv_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_conv2d(run->ctx, x, l->tensors[WEIGHT], l->tensors[BIAS], l->stride, l->padding);
}

const nn_layer_kind layer_conv = {
    .name = "conv",
    .prefix = "conv",
    .example = "conv(32,3)",
    .n_args = 4,
    .args = {{"out", true, true, 0, 1, 4096, offsetof(nn_layer, out)},
             {"kernel", true, true, 0, 1, 32, offsetof(nn_layer, kernel)},
             {"stride", true, false, 1, 1, 32, offsetof(nn_layer, stride)},
             {"padding", true, false, 0, 0, 32, offsetof(nn_layer, padding)}},
    .spatial = true,
    .infer = conv_infer,
    .tensors = conv_tensors,
    .init = conv_init,
    .forward = conv_forward,
};

/* ---- fused: conv relu [maxpool(2)], conv batchnorm relu [maxpool(2)] ---- */

static nn_tensor *conv_relu(nn_layer *l, nn_ctx *ctx, nn_tensor *x, bool maxpool) {
    return nn_conv2d_relu(ctx, x, l->tensors[WEIGHT], l->tensors[BIAS], l->stride, l->padding, maxpool);
}

nn_tensor *conv_relu_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return conv_relu(l, run->ctx, x, false);
}

nn_tensor *conv_relu_maxpool_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return conv_relu(l, run->ctx, x, true);
}

/* l[0] the conv, l[1] the batch norm (its running statistics updated and
 * its batch count advanced in training mode, as batchnorm's own forward does). */
static nn_tensor *conv_batchnorm_relu(nn_layer *l, nn_ctx *ctx, nn_tensor *x, bool maxpool) {
    nn_layer *bn = &l[1];
    nn_tensor *y = nn_conv2d_bn_relu(ctx, x, l->tensors[WEIGHT], l->tensors[BIAS], l->stride, l->padding,
                                     bn->tensors[BN_WEIGHT], bn->tensors[BN_BIAS], bn->tensors[BN_RUNNING_MEAN]->data,
                                     bn->tensors[BN_RUNNING_VAR]->data, NN_BATCH_NORM_MOMENTUM, NN_BATCH_NORM_EPS,
                                     maxpool);
    if (nn_training(ctx)) bn->tensors[BN_NUM_BATCHES]->data[0] += 1.0f;
    return y;
}

nn_tensor *conv_batchnorm_relu_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return conv_batchnorm_relu(l, run->ctx, x, false);
}

nn_tensor *conv_batchnorm_relu_maxpool_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return conv_batchnorm_relu(l, run->ctx, x, true);
}
