/* Pooling: maxpool(K[,stride=S]) and avgpool(K[,stride=S]) over K x K
 * windows, no padding, floor mode, as F.max_pool2d / F.avg_pool2d; the
 * stride defaults to the kernel.
 *   [C, H, W] -> [C, H', W']
 * and over time: last, each sequence's last real step, and mean, the
 * average of its real steps (an encoder's pooled output; padding is left out).
 *   [T, H] -> [H] */
#include "layers/layers.h"

static int pool_infer(nn_layer *l, const char *where) {
    if (l->in_ndim != 3) {
        char in[48];
        return nn_error("%s: needs an image [C, H, W] but gets %s (a pooling layer cannot come after flatten or "
                        "linear)",
                        where, layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    return layer_window(where, "height", l->in_shape[1], l->kernel, l->stride, 0, &l->out_shape[1]) ||
                   layer_window(where, "width", l->in_shape[2], l->kernel, l->stride, 0, &l->out_shape[2])
               ? -1
               : 0;
}

static nn_tensor *maxpool_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_max_pool2d(run->ctx, x, l->kernel, l->stride);
}

static nn_tensor *avgpool_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_avg_pool2d(run->ctx, x, l->kernel, l->stride);
}

#define POOL_ARGS                                                                                                 \
    .n_args = 2, .args = {{"kernel", true, true, 0, 1, 32, offsetof(nn_layer, kernel)},                        \
                          {"stride", true, false, LAYER_ARG_FIRST, 1, 32, offsetof(nn_layer, stride)}},         \
    .spatial = true, .infer = pool_infer

const nn_layer_kind layer_maxpool = {.name = "maxpool", .example = "maxpool(2)", POOL_ARGS, .forward = maxpool_forward};
const nn_layer_kind layer_avgpool = {.name = "avgpool", .example = "avgpool(2)", POOL_ARGS, .forward = avgpool_forward};

bool layer_is_maxpool_2x2(const nn_layer *l) {
    return l->kind == &layer_maxpool && l->kernel == 2 && l->stride == 2;
}

/* last and mean: a sequence to one vector. */
static int over_time_infer(nn_layer *l, const char *where) {
    if (l->in_ndim != 2) {
        char in[48];
        return nn_error("%s: takes a sequence [T, H], but its input is %s", where,
                        layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    l->out_ndim = 1;
    l->out_shape[0] = l->in_shape[1];
    l->out_shape[1] = 0;
    return 0;
}

static nn_tensor *last_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_last_step(run->ctx, x, run->lengths);
}

const nn_layer_kind layer_last = {.name = "last", .infer = over_time_infer, .forward = last_forward};

static nn_tensor *mean_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_mean_steps(run->ctx, x, run->lengths);
}

const nn_layer_kind layer_mean = {.name = "mean", .infer = over_time_infer, .forward = mean_forward};
