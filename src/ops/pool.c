/* Pooling over k x k windows with a stride, no padding, per plane of
 * x [B,C,H,W] -> y [B,C,OH,OW], OH = (H - k) / stride + 1, as PyTorch's
 * F.max_pool2d(x, k, stride) and F.avg_pool2d(x, k, stride).
 * Planes run in parallel; within a plane the backward adds in output order,
 * so overlapping windows (stride < k) still give the same bits every run. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/vec16.h"

#define POOL_BLOCK 32 /* outputs of a row handled together by max pooling */

typedef struct pool_geom {
    int planes, H, W, OH, OW, k, S;
} pool_geom;

static pool_geom pool_check(nn_ctx *ctx, const char *op, const nn_tensor *x, int k, int stride) {
    char sx[64];
    nn_check_live(ctx, x, op);
    NN_CHECK(x->ndim == 4, "%s: input %s must be [B, C, H, W]", op, nn_shape_str(x, sx, sizeof sx));
    NN_CHECK(k >= 1 && stride >= 1, "%s: kernel %d and stride %d must be >= 1", op, k, stride);
    NN_CHECK(x->shape[2] >= k && x->shape[3] >= k, "%s: input %s is smaller than the %dx%d window", op,
             nn_shape_str(x, sx, sizeof sx), k, k);
    pool_geom g = {.planes = x->shape[0] * x->shape[1], .H = x->shape[2], .W = x->shape[3], .k = k, .S = stride};
    g.OH = (g.H - k) / stride + 1;
    g.OW = (g.W - k) / stride + 1;
    return g;
}

static nn_tensor *pool_output(nn_ctx *ctx, const nn_tensor *x, const pool_geom *g, nn_tensor *const *in) {
    return nn_op_output(ctx, 4, (int[]){x->shape[0], x->shape[1], g->OH, g->OW}, in, 1);
}

static void pool_record(nn_node *node, const pool_geom *g, void *saved) {
    if (!node) return;
    node->iattr[0] = g->k;
    node->iattr[1] = g->S;
    node->saved = saved;
}

/* The maxima of n windows of one output row from ow0 on, and where they are. */
static inline void max_pool_row(const float *xp, int W, int k, int S, int oh, int ow0, int n, float *m,
                                int32_t *best) {
    for (int t = 0; t < n; t++) m[t] = -INFINITY, best[t] = oh * S * W + (ow0 + t) * S;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            int at = (oh * S + i) * W + ow0 * S + j;
            for (int t = 0; t < n; t++) {
                float v = xp[at + t * S];
                bool take = (v > m[t]) | isnan(v);
                m[t] = take ? v : m[t];
                best[t] = take ? at + t * S : best[t];
            }
        }
}

/* y = max over the window; the forward saves, per output, the index within
 * its plane (h * W + w) of the first maximum in row-major order (or of the
 * last NaN, as in PyTorch), and the backward adds dy there:
 *   dx[argmax] += dy */
nn_tensor *nn_max_pool2d(nn_ctx *ctx, nn_tensor *x, int k, int stride) {
    pool_geom g = pool_check(ctx, "max_pool2d", x, k, stride);
    nn_tensor *y = pool_output(ctx, x, &g, &x);
    size_t in_plane = (size_t)g.H * g.W, out_plane = (size_t)g.OH * g.OW;
    int32_t *argmax = ctx->grad_enabled && y->grad ? nn_arena_alloc(ctx, y->size * sizeof(int32_t)) : NULL;
    /* Blocks of a row's outputs, window element by window element, with
     * selects in a loop over the outputs that vectorises: on real data each
     * comparison is a coin flip, and branching on it was 3x slower. */
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (int p = 0; p < g.planes; p++) {
        const float *xp = x->data + p * in_plane;
        for (int oh = 0; oh < g.OH; oh++)
            for (int ow0 = 0; ow0 < g.OW; ow0 += POOL_BLOCK) {
                int n = g.OW - ow0 < POOL_BLOCK ? g.OW - ow0 : POOL_BLOCK;
                float m[POOL_BLOCK];
                int32_t best[POOL_BLOCK];
                max_pool_row(xp, g.W, k, g.S, oh, ow0, n, m, best);
                size_t o = p * out_plane + (size_t)oh * g.OW + ow0;
                memcpy(y->data + o, m, (size_t)n * sizeof(float));
                if (argmax) memcpy(argmax + o, best, (size_t)n * sizeof(int32_t));
            }
    }
    pool_record(nn_record(ctx, NN_OP_MAX_POOL2D, y, &x, 1), &g, argmax);
    return y;
}

void nn_max_pool2d_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *y = n->out;
    if (!x->grad) return;
    const int32_t *argmax = n->saved;
    int planes = x->shape[0] * x->shape[1];
    size_t in_plane = (size_t)x->shape[2] * x->shape[3], out_plane = (size_t)y->shape[2] * y->shape[3];
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (int p = 0; p < planes; p++) {
        float *dx = x->grad + p * in_plane;
        const float *dy = y->grad + p * out_plane;
        const int32_t *at = argmax + p * out_plane;
        for (size_t o = 0; o < out_plane; o++) dx[at[o]] += dy[o];
    }
}

/* y = mean over the window of k*k elements:
 *   dx[window] += dy / (k*k) */
nn_tensor *nn_avg_pool2d(nn_ctx *ctx, nn_tensor *x, int k, int stride) {
    pool_geom g = pool_check(ctx, "avg_pool2d", x, k, stride);
    nn_tensor *y = pool_output(ctx, x, &g, &x);
    size_t in_plane = (size_t)g.H * g.W, out_plane = (size_t)g.OH * g.OW;
    float inv = 1.0f / (float)(k * k);
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (int p = 0; p < g.planes; p++) {
        const float *xp = x->data + p * in_plane;
        float *yp = y->data + p * out_plane;
        for (int oh = 0; oh < g.OH; oh++)
            for (int ow = 0; ow < g.OW; ow++) {
                const float *win = xp + (size_t)oh * g.S * g.W + (size_t)ow * g.S;
                float sum = 0.0f;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) sum += win[i * g.W + j];
                yp[oh * g.OW + ow] = sum * inv;
            }
    }
    pool_record(nn_record(ctx, NN_OP_AVG_POOL2D, y, &x, 1), &g, NULL);
    return y;
}

void nn_avg_pool2d_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *y = n->out;
    if (!x->grad) return;
    int k = n->iattr[0], S = n->iattr[1], planes = x->shape[0] * x->shape[1];
    int W = x->shape[3], OH = y->shape[2], OW = y->shape[3];
    size_t in_plane = (size_t)x->shape[2] * W, out_plane = (size_t)OH * OW;
    float inv = 1.0f / (float)(k * k);
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (int p = 0; p < planes; p++) {
        float *dx = x->grad + p * in_plane;
        const float *dy = y->grad + p * out_plane;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float g = dy[oh * OW + ow] * inv;
                float *win = dx + (size_t)oh * S * W + (size_t)ow * S;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) win[i * W + j] += g;
            }
    }
}

/* ---- 2x2, stride-2 max pooling of ReLU(z * scale + shift), for the fused ops ---- */

/* Each 16 outputs of a row pair: the even and odd columns of both rows as
 * vectors, the first maximum in row-major order (a strict > keeps the
 * earlier of equal values, as max_pool2d over ReLU outputs does). */
void nn_relu_pool2_row(const float *r0, const float *r1, float scale, float shift, int PW, float *y, uint8_t *winner) {
    v16 a = (v16){0} + scale, b = (v16){0} + shift;
    for (int pw = 0; pw < PW; pw += VL) {
        v16 a0 = v16_load(r0 + 2 * pw), a1 = v16_load(r0 + 2 * pw + VL);
        v16 b0 = v16_load(r1 + 2 * pw), b1 = v16_load(r1 + 2 * pw + VL);
        v16 v[4] = {v16_relu(v16_even(a0, a1) * a + b), v16_relu(v16_odd(a0, a1) * a + b),
                    v16_relu(v16_even(b0, b1) * a + b), v16_relu(v16_odd(b0, b1) * a + b)};
        v16 m = v[0];
        i16 k = {0};
        for (int q = 1; q < 4; q++) {
            i16 take = v[q] > m;
            m = v16_select(take, v[q], m);
            k = i16_select(take, (i16){0} + q, k);
        }
        v16_store(y + pw, m);
        u8x16 kb = __builtin_convertvector(k, u8x16);
        memcpy(winner + pw, &kb, sizeof kb);
    }
}

/* dz at the winners, 0 elsewhere: row pair by row pair, each row whole
 * vectors at a time and in order, so each row's zero tail is overwritten by
 * the next row (or lands in dz's room). */
void nn_relu_pool2_scatter(const float *g, const uint8_t *winner, int PH, int PW, int OW, float *dz) {
    const i16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int ph = 0; ph < PH; ph++)
        for (int row = 0; row < 2; row++) {
            float *r = dz + (size_t)(2 * ph + row) * OW;
            for (int pw = 0; pw < PW; pw += VL) {
                int at = ph * PW + pw, len = PW - pw < VL ? PW - pw : VL;
                u8x16 kb;
                memcpy(&kb, winner + at, sizeof kb);
                i16 k = __builtin_convertvector(kb, i16);
                v16 zero = {0}, d = v16_select(lane < len, v16_load(g + at), zero);
                v16 left = v16_select(k == 2 * row, d, zero), right = v16_select(k == 2 * row + 1, d, zero);
                v16_store(r + 2 * pw, v16_interleave_lo(left, right));
                v16_store(r + 2 * pw + VL, v16_interleave_hi(left, right));
            }
        }
}
