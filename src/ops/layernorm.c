/* Layer normalisation over the last dimension (Ba et al. 2016), as PyTorch's
 * nn.LayerNorm: biased variance, eps inside the square root.
 *   mu = mean(x), rstd = 1 / sqrt(var(x) + eps), xhat = (x - mu) rstd
 *   y = xhat * w + b
 * Backward, per row of N elements, with g = dy * w:
 *   dw += dy * xhat,  db += dy
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 * The forward saves mu and rstd per row; xhat is recomputed from the input. */
#include <math.h>

#include "ops/ops.h"

nn_tensor *nn_layer_norm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float eps) {
    char sx[64], sw[64], sb[64];
    nn_check_live(ctx, x, "layer_norm");
    nn_check_live(ctx, w, "layer_norm");
    nn_check_live(ctx, b, "layer_norm");
    int N = x->ndim ? x->shape[x->ndim - 1] : 0;
    NN_CHECK(x->ndim >= 1 && w->ndim == 1 && w->shape[0] == N && nn_same_shape(w, b),
             "layer_norm: weight %s and bias %s must both be [%d] for input %s", nn_shape_str(w, sw),
             nn_shape_str(b, sb), N, nn_shape_str(x, sx));
    nn_tensor *in[] = {x, w, b};
    nn_tensor *y = nn_op_output(ctx, x->ndim, x->shape, in, 3);
    size_t rows = x->size / (size_t)N;
    bool keep = ctx->grad_enabled && y->grad;
    float *stats = keep ? nn_arena_alloc(ctx, 2 * rows * sizeof(float)) : NULL;
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * N;
        float *yr = y->data + r * N;
        /* Sums in double, vectorised: omp simd permits reordering the sum. */
        double mean = 0.0, var = 0.0;
#pragma omp simd reduction(+ : mean)
        for (int j = 0; j < N; j++) mean += xr[j];
        mean /= N;
#pragma omp simd reduction(+ : var)
        for (int j = 0; j < N; j++) var += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        var /= N;
        float mu = (float)mean, rstd = (float)(1.0 / sqrt(var + eps));
        for (int j = 0; j < N; j++) yr[j] = (xr[j] - mu) * rstd * w->data[j] + b->data[j];
        if (stats) {
            stats[2 * r] = mu;
            stats[2 * r + 1] = rstd;
        }
    }
    nn_node *node = nn_record(ctx, NN_OP_LAYER_NORM, y, in, 3);
    if (node) {
        node->saved = stats;
        node->attr = eps;
    }
    return y;
}

/* Columns per task of the weight and bias gradients: each task sums its
 * columns over all rows in row order, so the result does not depend on how
 * many threads share the work. */
#define LN_COLS 128

void nn_layer_norm_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    const float *stats = n->saved;
    int N = w->shape[0];
    size_t rows = x->size / (size_t)N;
    if (w->grad || b->grad) {
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
        for (int j0 = 0; j0 < N; j0 += LN_COLS) {
            int j1 = j0 + LN_COLS < N ? j0 + LN_COLS : N;
            for (size_t r = 0; r < rows; r++) {
                const float *xr = x->data + r * N, *dy = y->grad + r * N;
                float mu = stats[2 * r], rstd = stats[2 * r + 1];
                if (w->grad)
                    for (int j = j0; j < j1; j++) w->grad[j] += dy[j] * (xr[j] - mu) * rstd;
                if (b->grad)
                    for (int j = j0; j < j1; j++) b->grad[j] += dy[j];
            }
        }
    }
    if (!x->grad) return;
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * N, *dy = y->grad + r * N;
        float mu = stats[2 * r], rstd = stats[2 * r + 1];
        double mean_g = 0.0, mean_gx = 0.0;
#pragma omp simd reduction(+ : mean_g, mean_gx)
        for (int j = 0; j < N; j++) {
            float g = dy[j] * w->data[j];
            mean_g += g;
            mean_gx += (double)g * (xr[j] - mu) * rstd;
        }
        mean_g /= N;
        mean_gx /= N;
        float *dx = x->grad + r * N;
        for (int j = 0; j < N; j++) {
            float xhat = (xr[j] - mu) * rstd;
            dx[j] += rstd * (dy[j] * w->data[j] - (float)mean_g - xhat * (float)mean_gx);
        }
    }
}
