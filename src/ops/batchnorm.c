/* Batch normalisation (Ioffe & Szegedy 2015), as PyTorch's BatchNorm1d/2d:
 * per channel c of x [B,C] or [B,C,H,W], over its n = B*H*W values,
 *   training:   mu, var = the batch's mean and biased variance of channel c
 *   evaluation: mu, var = running_mean[c], running_var[c]
 *   rstd = 1 / sqrt(var + eps), xhat = (x - mu) rstd, y = xhat w + b
 * Backward, with sums and means over the channel's n values:
 *   dw += sum(dy xhat),  db += sum(dy)
 *   training:   dx += w rstd (dy - mean(dy) - xhat mean(dy xhat))   (mu and
 *               var depend on x too)
 *   evaluation: dx += w rstd dy                                     (affine)
 * The forward saves mu and rstd per channel; xhat is recomputed. Channels run
 * in parallel, each summed in order by one thread, so runs repeat exactly. */
#include <math.h>

#include "ops/ops.h"

nn_tensor *nn_batch_norm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float *running_mean,
                         float *running_var, float momentum, float eps) {
    char sx[64], sw[64], sb[64];
    nn_check_live(ctx, x, "batch_norm");
    nn_check_live(ctx, w, "batch_norm");
    nn_check_live(ctx, b, "batch_norm");
    NN_CHECK(x->ndim == 2 || x->ndim == 4, "batch_norm: input %s must be [B, C] or [B, C, H, W]",
             nn_shape_str(x, sx));
    int B = x->shape[0], C = x->shape[1];
    size_t plane = x->ndim == 4 ? (size_t)x->shape[2] * x->shape[3] : 1, n = (size_t)B * plane;
    NN_CHECK(w->ndim == 1 && w->shape[0] == C && nn_same_shape(w, b),
             "batch_norm: weight %s and bias %s must both be [%d] for input %s", nn_shape_str(w, sw),
             nn_shape_str(b, sb), C, nn_shape_str(x, sx));
    bool training = ctx->training;
    NN_CHECK(!training || n > 1, "batch_norm: training needs more than one value per channel, input is %s",
             nn_shape_str(x, sx));
    NN_CHECK(training || (running_mean && running_var),
             "batch_norm: evaluation mode needs running_mean and running_var (input %s)", nn_shape_str(x, sx));
    nn_tensor *in[] = {x, w, b};
    nn_tensor *y = nn_op_output(ctx, x->ndim, x->shape, in, 3);
    float *stats = ctx->grad_enabled && y->grad ? nn_arena_alloc(ctx, 2 * (size_t)C * sizeof(float)) : NULL;
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (int c = 0; c < C; c++) {
        double mean, var;
        if (training) {
            double sum = 0.0, sq = 0.0;
            for (int i = 0; i < B; i++) {
                const float *xc = x->data + ((size_t)i * C + c) * plane;
#pragma omp simd reduction(+ : sum)
                for (size_t s = 0; s < plane; s++) sum += xc[s];
            }
            mean = sum / (double)n;
            for (int i = 0; i < B; i++) {
                const float *xc = x->data + ((size_t)i * C + c) * plane;
#pragma omp simd reduction(+ : sq)
                for (size_t s = 0; s < plane; s++) sq += ((double)xc[s] - mean) * ((double)xc[s] - mean);
            }
            var = sq / (double)n;
            if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
            if (running_var)
                running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * var * n / (double)(n - 1));
        } else {
            mean = running_mean[c];
            var = running_var[c];
        }
        float rstd = (float)(1.0 / sqrt(var + eps));
        /* y = x scale + shift, the form PyTorch's CPU kernel uses. */
        float scale = rstd * w->data[c], shift = b->data[c] - (float)mean * scale;
        for (int i = 0; i < B; i++) {
            const float *xc = x->data + ((size_t)i * C + c) * plane;
            float *yc = y->data + ((size_t)i * C + c) * plane;
            for (size_t s = 0; s < plane; s++) yc[s] = xc[s] * scale + shift;
        }
        if (stats) {
            stats[2 * c] = (float)mean;
            stats[2 * c + 1] = rstd;
        }
    }
    nn_node *node = nn_record(ctx, NN_OP_BATCH_NORM, y, in, 3);
    if (node) {
        node->saved = stats;
        node->attr = eps;
        node->flag = training;
    }
    return y;
}

void nn_batch_norm_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    const float *stats = n->saved;
    bool training = n->flag;
    int B = x->shape[0], C = x->shape[1];
    size_t plane = x->ndim == 4 ? (size_t)x->shape[2] * x->shape[3] : 1, count = (size_t)B * plane;
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (int c = 0; c < C; c++) {
        float mu = stats[2 * c], rstd = stats[2 * c + 1];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int i = 0; i < B; i++) {
            const float *xc = x->data + ((size_t)i * C + c) * plane, *dy = y->grad + ((size_t)i * C + c) * plane;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xhat)
            for (size_t s = 0; s < plane; s++) {
                sum_dy += dy[s];
                sum_dy_xhat += (double)dy[s] * ((xc[s] - mu) * rstd);
            }
        }
        if (w->grad) w->grad[c] += (float)sum_dy_xhat;
        if (b->grad) b->grad[c] += (float)sum_dy;
        if (!x->grad) continue;
        float k = w->data[c] * rstd;
        float mean_dy = training ? (float)(sum_dy / (double)count) : 0.0f;
        float mean_dy_xhat = training ? (float)(sum_dy_xhat / (double)count) : 0.0f;
        for (int i = 0; i < B; i++) {
            size_t at = ((size_t)i * C + c) * plane;
            const float *xc = x->data + at, *dy = y->grad + at;
            float *dx = x->grad + at;
            for (size_t s = 0; s < plane; s++) {
                float xhat = (xc[s] - mu) * rstd;
                dx[s] += k * (dy[s] - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}
