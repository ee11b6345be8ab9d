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
 * in parallel, each summed in order by one thread, so runs repeat exactly.
 *
 * batch_norm_relu is relu(batch_norm(x)), optionally followed by 2x2 max
 * pooling of stride 2, as one op: only its output (and the pooling winners)
 * is kept, and the backward makes the batch norm's dy on the fly,
 *   dy_bn = dy [y > 0]   or   dy at the window's winner if y > 0, else 0,
 * into a per-thread buffer of the channel's planes, then sums exactly as
 * batch_norm does (the same values in the same order: the same bits). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops/batchnorm_relu.h"
#include "ops/vec16.h"

typedef struct bn_shape {
    int B, C;
    size_t plane, n; /* values per (image, channel), per channel */
} bn_shape;

static bn_shape bn_check(nn_ctx *ctx, const char *op, const nn_tensor *x, const nn_tensor *w, const nn_tensor *b,
                         const float *running_mean, const float *running_var) {
    char sx[64], sw[64], sb[64];
    nn_check_live(ctx, x, op);
    nn_check_live(ctx, w, op);
    nn_check_live(ctx, b, op);
    NN_CHECK(x->ndim == 2 || x->ndim == 4, "%s: input %s must be [B, C] or [B, C, H, W]", op, nn_shape_str(x, sx, sizeof sx));
    bn_shape s = {.B = x->shape[0], .C = x->shape[1]};
    s.plane = x->ndim == 4 ? (size_t)x->shape[2] * x->shape[3] : 1;
    s.n = (size_t)s.B * s.plane;
    NN_CHECK(w->ndim == 1 && w->shape[0] == s.C && nn_same_shape(w, b),
             "%s: weight %s and bias %s must both be [%d] for input %s", op, nn_shape_str(w, sw, sizeof sw), nn_shape_str(b, sb, sizeof sb),
             s.C, nn_shape_str(x, sx, sizeof sx));
    NN_CHECK(!ctx->training || s.n > 1, "%s: training needs more than one value per channel, input is %s", op,
             nn_shape_str(x, sx, sizeof sx));
    NN_CHECK(ctx->training || (running_mean && running_var),
             "%s: evaluation mode needs running_mean and running_var (input %s)", op, nn_shape_str(x, sx, sizeof sx));
    return s;
}

/* Channel c's mean and rstd: the batch's in training (updating the running
 * statistics), the running ones in evaluation. */
static void channel_stats(const float *x, const bn_shape *s, int c, bool training, float *running_mean,
                          float *running_var, float momentum, float eps, double *mean_out, float *rstd_out) {
    double mean, var;
    if (training) {
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < s->B; i++) {
            const float *xc = x + ((size_t)i * s->C + c) * s->plane;
#pragma omp simd reduction(+ : sum)
            for (size_t k = 0; k < s->plane; k++) sum += xc[k];
        }
        mean = sum / (double)s->n;
        for (int i = 0; i < s->B; i++) {
            const float *xc = x + ((size_t)i * s->C + c) * s->plane;
#pragma omp simd reduction(+ : sq)
            for (size_t k = 0; k < s->plane; k++) sq += ((double)xc[k] - mean) * ((double)xc[k] - mean);
        }
        var = sq / (double)s->n;
        if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
        if (running_var)
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * var * s->n / (double)(s->n - 1));
    } else {
        mean = running_mean[c];
        var = running_var[c];
    }
    *mean_out = mean;
    *rstd_out = (float)(1.0 / sqrt(var + eps));
}

nn_tensor *nn_batch_norm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float *running_mean,
                         float *running_var, float momentum, float eps) {
    bn_shape s = bn_check(ctx, nn_op_table[NN_OP_BATCH_NORM].name, x, w, b, running_mean, running_var);
    bool training = ctx->training;
    nn_tensor *in[] = {x, w, b};
    nn_tensor *y = nn_op_output(ctx, x->ndim, x->shape, in, 3);
    float *stats = ctx->grad_enabled && y->grad ? nn_arena_alloc(ctx, 2 * (size_t)s.C * sizeof(float)) : NULL;
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (int c = 0; c < s.C; c++) {
        double mean;
        float rstd;
        channel_stats(x->data, &s, c, training, running_mean, running_var, momentum, eps, &mean, &rstd);
        /* y = x scale + shift, the form PyTorch's CPU kernel uses. */
        float scale = rstd * w->data[c], shift = b->data[c] - (float)mean * scale;
        for (int i = 0; i < s.B; i++) {
            const float *xc = x->data + ((size_t)i * s.C + c) * s.plane;
            float *yc = y->data + ((size_t)i * s.C + c) * s.plane;
            for (size_t k = 0; k < s.plane; k++) yc[k] = xc[k] * scale + shift;
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

/* Adds one plane's sum of dy and of dy * x_hat to the running sums (the
 * separate and the fused backward share it, so they give the same bits). */
static inline void add_plane_sums(const float *dy, const float *xc, size_t n, float mu, float rstd, double *sum_dy,
                                  double *sum_dy_xhat) {
    double s = *sum_dy, t = *sum_dy_xhat;
#pragma omp simd reduction(+ : s, t)
    for (size_t k = 0; k < n; k++) {
        s += dy[k];
        t += (double)dy[k] * ((xc[k] - mu) * rstd);
    }
    *sum_dy = s, *sum_dy_xhat = t;
}

/* Channel c's backward given its dy: image i's plane at dy + i * dy_stride. */
static void channel_backward(nn_tensor *x, nn_tensor *w, nn_tensor *b, const bn_shape *s, int c, const float *stats,
                             bool training, const float *dy_c, size_t dy_stride) {
    float mu = stats[2 * c], rstd = stats[2 * c + 1];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int i = 0; i < s->B; i++)
        add_plane_sums(dy_c + i * dy_stride, x->data + ((size_t)i * s->C + c) * s->plane, s->plane, mu, rstd, &sum_dy,
                       &sum_dy_xhat);
    if (w->grad) w->grad[c] += (float)sum_dy_xhat;
    if (b->grad) b->grad[c] += (float)sum_dy;
    if (!x->grad) return;
    float k = w->data[c] * rstd;
    float mean_dy = training ? (float)(sum_dy / (double)s->n) : 0.0f;
    float mean_dy_xhat = training ? (float)(sum_dy_xhat / (double)s->n) : 0.0f;
    for (int i = 0; i < s->B; i++) {
        size_t at = ((size_t)i * s->C + c) * s->plane;
        const float *xc = x->data + at, *dy = dy_c + i * dy_stride;
        float *dx = x->grad + at;
        for (size_t e = 0; e < s->plane; e++) {
            float xhat = (xc[e] - mu) * rstd;
            dx[e] += k * (dy[e] - mean_dy - xhat * mean_dy_xhat);
        }
    }
}

void nn_batch_norm_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *y = n->out;
    bn_shape s = {.B = x->shape[0], .C = x->shape[1], .plane = x->ndim == 4 ? (size_t)x->shape[2] * x->shape[3] : 1};
    s.n = (size_t)s.B * s.plane;
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (int c = 0; c < s.C; c++)
        channel_backward(x, n->in[1], n->in[2], &s, c, n->saved, n->flag, y->grad + (size_t)c * s.plane,
                         (size_t)s.C * s.plane);
}

/* ---- batch norm + ReLU (+ 2x2 max pooling) (ops/batchnorm_relu.h) ------------------ */

/* Room for one pooled plane, with a vector's slack (y or dy as floats, the winners as bytes). */
static size_t pooled_floats(int H, int W) { return (size_t)(H / 2) * (W / 2) + 2 * VL; }

size_t bn_relu_plane_floats(const bn_relu *r) {
    return r->plane + 2 * VL + (r->pool ? 2 * pooled_floats(r->H, r->W) : 0);
}

void bn_relu_init(bn_relu *r, nn_ctx *ctx, const char *op, const nn_tensor *x, const nn_tensor *w,
                  const nn_tensor *b, const float *running_mean, const float *running_var, bool pool, bool recording) {
    char sx[64];
    bn_shape s = bn_check(ctx, op, x, w, b, running_mean, running_var);
    NN_CHECK(!pool || (x->ndim == 4 && x->shape[2] >= 2 && x->shape[3] >= 2), "%s: input %s is not an image of at least 2x2",
             op, nn_shape_str(x, sx, sizeof sx));
    *r = (bn_relu){.B = s.B, .C = s.C, .H = x->ndim == 4 ? x->shape[2] : 1, .W = x->ndim == 4 ? x->shape[3] : 1,
                   .plane = s.plane, .n = s.n, .pool = pool, .training = ctx->training, .ctx = ctx};
    r->out_plane = pool ? (size_t)(r->H / 2) * (r->W / 2) : r->plane;
    r->threads = omp_get_max_threads() < s.C ? omp_get_max_threads() : s.C;
    if (x->size <= NN_PARALLEL_MIN) r->threads = 1;
    /* forward: a pooled plane, its winners and a plane's last two rows; sums: one g plane */
    size_t fwd = pool ? 2 * pooled_floats(r->H, r->W) + 2 * (size_t)r->W + 2 * VL : 0;
    size_t sums = bn_relu_plane_floats(r);
    r->thread_floats = ((fwd > sums ? fwd : sums) + 15) / 16 * 16;
    if (recording) r->stats = nn_arena_alloc(ctx, 2 * (size_t)s.C * sizeof(float));
    if (recording) r->coef = nn_arena_alloc(ctx, 3 * (size_t)s.C * sizeof(float));
    if (recording && pool) r->winner = nn_arena_alloc(ctx, (size_t)s.B * s.C * r->out_plane);
}

void bn_relu_forward(bn_relu *r, const float *x, const nn_tensor *w, const nn_tensor *b, float *running_mean,
                     float *running_var, float momentum, float eps, float *y) {
    bn_shape s = {.B = r->B, .C = r->C, .plane = r->plane, .n = r->n};
    float *scratch = r->pool ? nn_ctx_scratch(r->ctx, r->threads * r->thread_floats * sizeof(float)) : NULL;
    size_t P = r->out_plane;
#pragma omp parallel for num_threads(r->threads)
    for (int c = 0; c < s.C; c++) {
        double mean;
        float rstd;
        channel_stats(x, &s, c, r->training, running_mean, running_var, momentum, eps, &mean, &rstd);
        float scale = rstd * w->data[c], shift = b->data[c] - (float)mean * scale;
        if (r->stats) r->stats[2 * c] = (float)mean, r->stats[2 * c + 1] = rstd;
        float *yp = scratch ? scratch + (size_t)omp_get_thread_num() * r->thread_floats : NULL;
        uint8_t *wp = yp ? (uint8_t *)(yp + pooled_floats(r->H, r->W)) : NULL;
        float *rows = yp ? yp + 2 * pooled_floats(r->H, r->W) : NULL;
        for (int i = 0; i < s.B; i++) {
            size_t plane_at = (size_t)i * s.C + c;
            const float *xc = x + plane_at * s.plane;
            if (!r->pool) {
                float *yc = y + plane_at * s.plane;
                for (size_t k = 0; k < s.plane; k++) {
                    float v = xc[k] * scale + shift;
                    yc[k] = v > 0.0f ? v : 0.0f;
                }
                continue;
            }
            int PH = r->H / 2, PW = r->W / 2;
            for (int ph = 0; ph < PH; ph++) {
                const float *r0 = xc + (size_t)2 * ph * r->W, *r1 = r0 + r->W;
                /* rows are read 2 * VL floats at a time from r0 and r1; where
                 * that would pass the end of x, through a copy with room */
                size_t read_end = (size_t)(r1 - x) + 2 * (size_t)((PW + VL - 1) / VL) * VL;
                if (read_end > (size_t)s.B * s.C * s.plane) {
                    memcpy(rows, r0, 2 * (size_t)r->W * sizeof(float));
                    /* the lanes read past the rows are discarded, but defined (valgrind) */
                    memset(rows + 2 * (size_t)r->W, 0, 2 * VL * sizeof(float));
                    r0 = rows, r1 = rows + r->W;
                }
                nn_relu_pool2_row(r0, r1, scale, shift, PW, yp + ph * PW, wp + ph * PW);
            }
            memcpy(y + plane_at * P, yp, P * sizeof(float));
            if (r->winner) memcpy(r->winner + plane_at * P, wp, P);
        }
    }
}

/* g of plane p (= image * C + channel): batch_norm's dy, made from the op's dy. */
static void g_plane(const bn_relu *r, const float *y, const float *dy, size_t p, float *g, float *room) {
    size_t P = r->out_plane;
    const float *d = dy + p * P, *yv = y + p * P;
    if (!r->pool) {
        for (size_t k = 0; k < r->plane; k++) g[k] = yv[k] > 0.0f ? d[k] : 0.0f;
        return;
    }
    float *gp = room;
    uint8_t *wp = (uint8_t *)(room + pooled_floats(r->H, r->W));
    for (size_t k = 0; k < P; k++) gp[k] = yv[k] > 0.0f ? d[k] : 0.0f;
    memcpy(wp, r->winner + p * P, P);
    if (r->H % 2 || r->W % 2) memset(g, 0, r->plane * sizeof(float)); /* uncovered edges */
    nn_relu_pool2_scatter(gp, wp, r->H / 2, r->W / 2, r->W, g);
}

void bn_relu_gradient_sums(const bn_relu *r, const float *x, const float *y, const float *dy, const nn_tensor *w,
                           const nn_tensor *b, float *coef) {
    float *scratch = nn_ctx_scratch(r->ctx, r->threads * r->thread_floats * sizeof(float));
#pragma omp parallel for num_threads(r->threads)
    for (int c = 0; c < r->C; c++) {
        float *g = scratch + (size_t)omp_get_thread_num() * r->thread_floats, *room = g + r->plane + 2 * VL;
        float mu = r->stats[2 * c], rstd = r->stats[2 * c + 1];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int i = 0; i < r->B; i++) {
            g_plane(r, y, dy, (size_t)i * r->C + c, g, room);
            add_plane_sums(g, x + ((size_t)i * r->C + c) * r->plane, r->plane, mu, rstd, &sum_dy, &sum_dy_xhat);
        }
        if (w->grad) w->grad[c] += (float)sum_dy_xhat;
        if (b->grad) b->grad[c] += (float)sum_dy;
        coef[3 * c] = w->data[c] * rstd;
        coef[3 * c + 1] = r->training ? (float)(sum_dy / (double)r->n) : 0.0f;
        coef[3 * c + 2] = r->training ? (float)(sum_dy_xhat / (double)r->n) : 0.0f;
    }
}

void bn_relu_input_grad(const bn_relu *r, const float *x, const float *y, const float *dy, const float *coef, int i0,
                        int n, float *dx, bool add, float *scratch) {
    float *g = scratch, *room = g + r->plane + 2 * VL;
    for (int i = i0; i < i0 + n; i++)
        for (int c = 0; c < r->C; c++) {
            size_t p = (size_t)i * r->C + c;
            g_plane(r, y, dy, p, g, room);
            float mu = r->stats[2 * c], rstd = r->stats[2 * c + 1];
            float k = coef[3 * c], mean_dy = coef[3 * c + 1], mean_dy_xhat = coef[3 * c + 2];
            const float *xc = x + p * r->plane;
            float *d = dx + (p - (size_t)i0 * r->C) * r->plane;
            for (size_t e = 0; e < r->plane; e++) {
                float xhat = (xc[e] - mu) * rstd;
                float v = k * (g[e] - mean_dy - xhat * mean_dy_xhat);
                d[e] = add ? d[e] + v : 0.0f + v; /* 0 + v: a zeroed buffer's sign of zero */
            }
        }
}

/* The op on its own, after any producer of x. */
nn_tensor *nn_batch_norm_relu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float *running_mean,
                              float *running_var, float momentum, float eps, bool maxpool) {
    nn_tensor *in[] = {x, w, b};
    int shape[4] = {x->shape[0], x->shape[1], x->ndim == 4 ? x->shape[2] : 0, x->ndim == 4 ? x->shape[3] : 0};
    if (maxpool) shape[2] /= 2, shape[3] /= 2;
    nn_tensor *y = nn_op_output(ctx, x->ndim, shape, in, 3);
    bn_relu *r = nn_arena_alloc(ctx, sizeof *r);
    bn_relu_init(r, ctx, nn_op_table[maxpool ? NN_OP_BATCH_NORM_RELU_MAXPOOL : NN_OP_BATCH_NORM_RELU].name, x, w, b, running_mean, running_var,
                 maxpool, ctx->grad_enabled && y->grad);
    bn_relu_forward(r, x->data, w, b, running_mean, running_var, momentum, eps, y->data);
    nn_node *node = nn_record(ctx, maxpool ? NN_OP_BATCH_NORM_RELU_MAXPOOL : NN_OP_BATCH_NORM_RELU, y, in, 3);
    if (node) {
        node->saved = r;
        node->attr = eps;
        node->flag = r->training;
    }
    return y;
}

void nn_batch_norm_relu_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    const bn_relu *r = n->saved;
    bn_relu_gradient_sums(r, x->data, y->data, y->grad, w, b, r->coef);
    if (!x->grad) return;
    size_t pf = (bn_relu_plane_floats(r) + 15) / 16 * 16;
    float *scratch = nn_ctx_scratch(r->ctx, (size_t)r->threads * pf * sizeof(float));
#pragma omp parallel for num_threads(r->threads)
    for (int i = 0; i < r->B; i++)
        bn_relu_input_grad(r, x->data, y->data, y->grad, r->coef, i, 1, x->grad + (size_t)i * r->C * r->plane, true,
                           scratch + (size_t)omp_get_thread_num() * pf);
}
