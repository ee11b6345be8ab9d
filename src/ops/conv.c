/* 2-D convolution, and the same followed by ReLU (and 2x2 max pooling) as
 * one op. With z = conv(x, w) + b:
 *   nn_conv2d:            y = z
 *   conv2d_relu:          y = max(z, 0)
 *   conv2d_relu_maxpool:  y = max over each 2x2 window of max(z, 0), stride 2
 * The fused forms write only y (and, for pooling, which of the four won):
 * no intermediate tensors, no passes over them. Backward, with dy:
 *   dz = dy [y > 0]                          (ReLU; y > 0 exactly where z > 0)
 *   dz = dy at the window's winner if y > 0  (pooling: 0 elsewhere)
 *   db += sum of dz, and dW, dx from dz by the algorithm (conv_internal.h).
 * Ties in a window go to the first maximum in row-major order and a window
 * of all-zero ReLU outputs passes no gradient, as the three separate ops do.
 *
 * The batch is split into a fixed number of parts that threads take in
 * turn; each part sums its own weight and bias gradients and the parts are
 * added in order, so results have the same bits for any thread count. Each
 * thread's scratch (im2col columns, Winograd tiles, z of a chunk) comes from
 * the arena with the op. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "ops/conv_internal.h"
#include "ops/vec16.h"

#define CONV_PARTS 16
#define REDUCE_BLOCK 1024 /* weight-gradient elements a thread sums over the parts at a time */

typedef enum conv_epilogue { EPI_NONE, EPI_RELU, EPI_RELU_POOL } conv_epilogue;

/* What the backward needs besides the inputs, allocated by the forward. */
typedef struct conv_saved {
    conv_geom g;
    conv_algo algo;
    conv_epilogue epi;
    int threads, parts, chunk;
    size_t algo_floats, thread_floats; /* scratch per thread: the algorithm's, and with z */
    float *scratch;                    /* threads x thread_floats */
    float *u;                          /* Winograd-domain weights [36, C, O] (NULL otherwise) */
    uint8_t *winner;                   /* pooling: 0..3 per output, the window's first maximum */
    float *dw_parts;                   /* parts x dw_size (NULL without a weight gradient) */
    float *db_parts;                   /* parts x [O] (NULL without a bias gradient) */
    size_t dw_size;
} conv_saved;

/* Winograd pays where the channel product dominates its transforms (tens of
 * channels); with few input channels (a first layer) the direct loops beat
 * a product with an inner dimension of C*KH*KW. */
conv_algo conv_choose_algo(const conv_geom *g) {
    if (g->KH == 3 && g->KW == 3 && g->S == 1 && g->C >= 8 && g->O >= 8) return CONV_WINOGRAD;
    if (g->S == 1 && g->K <= 27) return CONV_DIRECT;
    return CONV_IM2COL;
}

static size_t algo_scratch(const conv_geom *g, conv_algo algo, int chunk) {
    switch (algo) {
    case CONV_WINOGRAD: return conv_winograd_scratch(g, chunk);
    case CONV_DIRECT: return conv_direct_scratch(g, chunk);
    default: return conv_im2col_scratch(g, chunk);
    }
}

static void algo_forward(const conv_saved *s, const float *w, const float *x, int n, float *z, float *scratch) {
    switch (s->algo) {
    case CONV_WINOGRAD: conv_winograd_forward(&s->g, s->u, x, n, z, scratch); break;
    case CONV_DIRECT: conv_direct_forward(&s->g, w, x, n, z, scratch); break;
    default: conv_im2col_forward(&s->g, w, x, n, z, scratch); break;
    }
}

static void algo_backward(const conv_saved *s, const float *w, const float *x, const float *dz, int n, float *dw,
                          bool accumulate, float *dx, float *scratch) {
    switch (s->algo) {
    case CONV_WINOGRAD: conv_winograd_backward(&s->g, s->u, x, dz, n, dw, accumulate, dx, scratch); break;
    case CONV_DIRECT: conv_direct_backward(&s->g, w, x, dz, n, dw, accumulate, dx, scratch); break;
    default: conv_im2col_backward(&s->g, w, x, dz, n, dw, accumulate, dx, scratch); break;
    }
}

static inline float relu(float v) { return v > 0.0f ? v : 0.0f; }

/* One row of 2x2 windows over rows r0, r1 of z (each read 32 floats at a
 * time, past its end: z has room): the maximum of ReLU(z + b), and which of
 * the four (row-major) is the first to reach it. y and winner get whole
 * vectors (their buffers have room too). */
static void pool_row(const float *r0, const float *r1, float bias, int PW, float *y, uint8_t *winner) {
    v16 b = (v16){0} + bias;
    for (int pw = 0; pw < PW; pw += VL) {
        v16 a0 = v16_load(r0 + 2 * pw), a1 = v16_load(r0 + 2 * pw + VL);
        v16 b0 = v16_load(r1 + 2 * pw), b1 = v16_load(r1 + 2 * pw + VL);
        v16 v[4] = {v16_relu(v16_even(a0, a1) + b), v16_relu(v16_odd(a0, a1) + b), v16_relu(v16_even(b0, b1) + b),
                    v16_relu(v16_odd(b0, b1) + b)};
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

/* Per-thread room for one pooled plane at a time, with a vector's slack:
 * y (forward) or dy (backward) as floats, and the winners as bytes. */
static size_t plane_floats(const conv_geom *g) { return (size_t)(g->OH / 2) * (g->OW / 2) + 2 * VL; }

/* y of n images from their z (which y is, in place, without an epilogue). */
static void epilogue(const conv_saved *s, const float *bias, float *z, int n, float *y, uint8_t *winner,
                     float *plane) {
    const conv_geom *g = &s->g;
    int PH = g->OH / 2, PW = g->OW / 2;
    size_t P = (size_t)PH * PW;
    float *yp = plane;
    uint8_t *wp = (uint8_t *)(plane + plane_floats(g));
    for (int c = 0; c < n * g->O; c++) { /* c: one (image, channel) plane */
        float bo = bias ? bias[c % g->O] : 0.0f;
        float *restrict zp = z + (size_t)c * g->L;
        if (s->epi == EPI_NONE) {
            for (int l = 0; l < g->L; l++) zp[l] += bo;
        } else if (s->epi == EPI_RELU) {
            float *restrict yc = y + (size_t)c * g->L;
            for (int l = 0; l < g->L; l++) yc[l] = relu(zp[l] + bo);
        } else {
            for (int ph = 0; ph < PH; ph++) {
                const float *r0 = zp + (size_t)2 * ph * g->OW;
                pool_row(r0, r0 + g->OW, bo, PW, yp + ph * PW, wp + ph * PW);
            }
            memcpy(y + c * P, yp, P * sizeof(float));
            if (winner) memcpy(winner + c * P, wp, P);
        }
    }
}

/* The sum of v[0..n), vector lanes first (a fixed order). */
static float sum_of(const float *v, size_t n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < n; i++) sum += v[i];
    return sum;
}

/* dz of n images (from image i0 on) from dy, the ReLU output and the
 * pooling winners; returns it (dy itself without an epilogue) and adds
 * the bias gradient (the sum of dz per channel) to db. */
static const float *epilogue_backward(const conv_saved *s, const nn_tensor *y, int i0, int n, float *dz, float *db,
                                      float *plane) {
    const conv_geom *g = &s->g;
    size_t out_plane = s->epi == EPI_RELU_POOL ? (size_t)(g->OH / 2) * (g->OW / 2) : (size_t)g->L;
    const float *dy = y->grad + (size_t)i0 * g->O * out_plane, *yv = y->data + (size_t)i0 * g->O * out_plane;
    if (s->epi == EPI_NONE) {
        if (db)
            for (int c = 0; c < n * g->O; c++) db[c % g->O] += sum_of(dy + (size_t)c * g->L, g->L);
        return dy;
    }
    if (s->epi == EPI_RELU) {
        for (int c = 0; c < n * g->O; c++) {
            const float *restrict d = dy + (size_t)c * g->L, *restrict yc = yv + (size_t)c * g->L;
            float *restrict out = dz + (size_t)c * g->L;
            for (int l = 0; l < g->L; l++) out[l] = yc[l] > 0.0f ? d[l] : 0.0f;
            if (db) db[c % g->O] += sum_of(out, g->L);
        }
        return dz;
    }
    int PH = g->OH / 2, PW = g->OW / 2;
    size_t pf = plane_floats(g);
    float *dyp = plane;
    uint8_t *wp = (uint8_t *)(plane + pf);
    const uint8_t *win = s->winner + (size_t)i0 * g->O * out_plane;
    /* Rows are written whole vectors at a time, in order, each one's zero
     * tail overwritten by what comes next (or landing in dz's room). */
    if (g->OH % 2 || g->OW % 2) memset(dz, 0, (size_t)n * g->O * g->L * sizeof(float)); /* uncovered edges */
    for (int c = 0; c < n * g->O; c++) {
        /* the window's gradient: dy where the pooled ReLU output is positive */
        for (size_t e = 0; e < out_plane; e++) dyp[e] = yv[c * out_plane + e] > 0.0f ? dy[c * out_plane + e] : 0.0f;
        memcpy(wp, win + c * out_plane, out_plane);
        for (int ph = 0; ph < PH; ph++) {
            float *r0 = dz + (size_t)c * g->L + (size_t)2 * ph * g->OW, *r1 = r0 + g->OW;
            for (int row = 0; row < 2; row++)
                for (int pw = 0; pw < PW; pw += VL) {
                    int at = ph * PW + pw, len = PW - pw < VL ? PW - pw : VL;
                    u8x16 kb;
                    memcpy(&kb, wp + at, sizeof kb);
                    i16 k = __builtin_convertvector(kb, i16), lane = {0, 1, 2, 3, 4, 5, 6, 7,
                                                                      8, 9, 10, 11, 12, 13, 14, 15};
                    v16 zero = {0}, d = v16_select(lane < len, v16_load(dyp + at), zero);
                    v16 left = v16_select(k == 2 * row, d, zero), right = v16_select(k == 2 * row + 1, d, zero);
                    float *r = row ? r1 : r0;
                    v16_store(r + 2 * pw, v16_interleave_lo(left, right));
                    v16_store(r + 2 * pw + VL, v16_interleave_hi(left, right));
                }
        }
        /* summed at full resolution, in the order the separate ops sum it */
        if (db) db[c % g->O] += sum_of(dz + (size_t)c * g->L, g->L);
    }
    return dz;
}

static nn_tensor *conv_op(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding,
                          conv_epilogue epi) {
    static const char *const names[] = {"conv2d", "conv2d_relu", "conv2d_relu_maxpool"};
    static const nn_op ops[] = {NN_OP_CONV2D, NN_OP_CONV2D_RELU, NN_OP_CONV2D_RELU_MAXPOOL};
    const char *name = names[epi];
    char sx[64], sw[64], sb[64];
    nn_check_live(ctx, x, name);
    nn_check_live(ctx, w, name);
    NN_CHECK(x->ndim == 4 && w->ndim == 4 && x->shape[1] == w->shape[1],
             "%s: input %s does not match weight %s (expected input [B, C, H, W] and weight [O, C, KH, KW])", name,
             nn_shape_str(x, sx), nn_shape_str(w, sw));
    NN_CHECK(stride >= 1 && padding >= 0, "%s: stride %d must be >= 1 and padding %d >= 0", name, stride, padding);
    conv_geom g = {.B = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3], .O = w->shape[0],
                   .KH = w->shape[2], .KW = w->shape[3], .S = stride, .P = padding};
    NN_CHECK(g.H + 2 * g.P >= g.KH && g.W + 2 * g.P >= g.KW,
             "%s: kernel of weight %s is larger than input %s with padding %d", name, nn_shape_str(w, sw),
             nn_shape_str(x, sx), padding);
    if (b) {
        nn_check_live(ctx, b, name);
        NN_CHECK(b->ndim == 1 && b->shape[0] == g.O, "%s: bias %s does not match weight %s", name,
                 nn_shape_str(b, sb), nn_shape_str(w, sw));
    }
    g.OH = (g.H + 2 * g.P - g.KH) / g.S + 1;
    g.OW = (g.W + 2 * g.P - g.KW) / g.S + 1;
    g.K = g.C * g.KH * g.KW;
    g.L = g.OH * g.OW;
    NN_CHECK(epi != EPI_RELU_POOL || (g.OH >= 2 && g.OW >= 2), "%s: output %dx%d is smaller than the 2x2 window",
             name, g.OH, g.OW);

    nn_tensor *in[] = {x, w, b};
    int n_in = b ? 3 : 2;
    int out_shape[] = {g.B, g.O, g.OH, g.OW};
    if (epi == EPI_RELU_POOL) out_shape[2] = g.OH / 2, out_shape[3] = g.OW / 2;
    nn_tensor *y = nn_op_output(ctx, 4, out_shape, in, n_in);

    conv_saved s = {.g = g, .algo = conv_choose_algo(&g), .epi = epi};
    s.parts = g.B < CONV_PARTS ? g.B : CONV_PARTS;
    s.threads = omp_get_max_threads() < s.parts ? omp_get_max_threads() : s.parts;
    s.chunk = s.algo == CONV_WINOGRAD ? conv_winograd_chunk(&g) : 1;
    s.algo_floats = algo_scratch(&g, s.algo, s.chunk);
    /* z (or dz) of a chunk, with room for pooling's whole-vector rows; the planes' room */
    size_t z_floats = (size_t)s.chunk * g.O * g.L + 2 * VL;
    s.thread_floats = (s.algo_floats + z_floats + 2 * plane_floats(&g) + 15) / 16 * 16;
    s.scratch = nn_arena_alloc(ctx, (size_t)s.threads * s.thread_floats * sizeof(float));
    if (s.algo == CONV_WINOGRAD) s.u = nn_arena_alloc(ctx, (size_t)WINO_POINTS * g.C * g.O * sizeof(float));
    bool recording = ctx->grad_enabled && y->grad;
    if (recording && epi == EPI_RELU_POOL) s.winner = nn_arena_alloc(ctx, y->size);

    size_t x_size = (size_t)g.C * g.H * g.W, out_plane = (size_t)out_shape[2] * out_shape[3];
#pragma omp parallel num_threads(s.threads)
    {
        float *scratch = s.scratch + (size_t)omp_get_thread_num() * s.thread_floats, *zbuf = scratch + s.algo_floats;
        float *plane = zbuf + z_floats;
        if (s.u) {
#pragma omp for schedule(static)
            for (int o = 0; o < g.O; o++) conv_winograd_weights(&g, w->data, o, s.u);
        }
#pragma omp for schedule(static)
        for (int p = 0; p < s.parts; p++) {
            int first = (int)((long)p * g.B / s.parts), end = (int)((long)(p + 1) * g.B / s.parts);
            for (int i = first; i < end; i += s.chunk) {
                int n = end - i < s.chunk ? end - i : s.chunk;
                float *yi = y->data + (size_t)i * g.O * out_plane;
                float *z = epi == EPI_NONE ? yi : zbuf;
                algo_forward(&s, w->data, x->data + i * x_size, n, z, scratch);
                epilogue(&s, b ? b->data : NULL, z, n, yi, s.winner ? s.winner + (size_t)i * g.O * out_plane : NULL,
                         plane);
            }
        }
    }
    nn_node *node = nn_record(ctx, ops[epi], y, in, n_in);
    if (node) {
        conv_saved *saved = nn_arena_alloc(ctx, sizeof *saved);
        *saved = s;
        saved->dw_size = s.algo == CONV_WINOGRAD ? (size_t)WINO_POINTS * g.C * g.O : (size_t)g.O * g.K;
        if (w->grad) saved->dw_parts = nn_arena_alloc(ctx, (size_t)s.parts * saved->dw_size * sizeof(float));
        if (b && b->grad) saved->db_parts = nn_arena_alloc(ctx, (size_t)s.parts * g.O * sizeof(float));
        node->saved = saved;
        node->iattr[0] = stride;
        node->iattr[1] = padding;
    }
    return y;
}

nn_tensor *nn_conv2d(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding) {
    return conv_op(ctx, x, w, b, stride, padding, EPI_NONE);
}

nn_tensor *nn_conv2d_relu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding,
                          bool maxpool) {
    return conv_op(ctx, x, w, b, stride, padding, maxpool ? EPI_RELU_POOL : EPI_RELU);
}

void nn_conv2d_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL, *y = n->out;
    const conv_saved *s = n->saved;
    const conv_geom *g = &s->g;
    size_t x_size = (size_t)g->C * g->H * g->W;
#pragma omp parallel num_threads(s->threads)
    {
        float *scratch = s->scratch + (size_t)omp_get_thread_num() * s->thread_floats, *zbuf = scratch + s->algo_floats;
        float *plane = zbuf + (size_t)s->chunk * g->O * g->L + 2 * VL;
#pragma omp for schedule(static)
        for (int p = 0; p < s->parts; p++) {
            float *dw = s->dw_parts ? s->dw_parts + (size_t)p * s->dw_size : NULL;
            float *db = s->db_parts ? s->db_parts + (size_t)p * g->O : NULL;
            int first = (int)((long)p * g->B / s->parts), end = (int)((long)(p + 1) * g->B / s->parts);
            if (db) memset(db, 0, (size_t)g->O * sizeof(float));
            for (int i = first; i < end; i += s->chunk) {
                int cn = end - i < s->chunk ? end - i : s->chunk;
                const float *dz = epilogue_backward(s, y, i, cn, zbuf, db, plane);
                float *dx = x->grad ? x->grad + i * x_size : NULL;
                if (dw || dx) algo_backward(s, w->data, x->data + i * x_size, dz, cn, dw, i > first, dx, scratch);
            }
        }
        /* The parts, added in order of the batch. */
        if (s->dw_parts) {
            /* Winograd sums into part 0 (and transforms that); element by
             * element the parts add in order either way. */
            float *sum = s->algo == CONV_WINOGRAD ? s->dw_parts : w->grad;
            size_t blocks = (s->dw_size + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
#pragma omp for schedule(static)
            for (size_t k = 0; k < blocks; k++) {
                size_t lo = k * REDUCE_BLOCK, hi = lo + REDUCE_BLOCK < s->dw_size ? lo + REDUCE_BLOCK : s->dw_size;
                for (int p = s->algo == CONV_WINOGRAD ? 1 : 0; p < s->parts; p++) {
                    const float *restrict part = s->dw_parts + (size_t)p * s->dw_size;
                    for (size_t e = lo; e < hi; e++) sum[e] += part[e];
                }
            }
            if (s->algo == CONV_WINOGRAD) {
#pragma omp for schedule(static)
                for (int o = 0; o < g->O; o++) conv_winograd_weight_grad(g, s->dw_parts, o, w->grad);
            }
        }
        if (s->db_parts) {
#pragma omp for schedule(static)
            for (int o = 0; o < g->O; o++)
                for (int p = 0; p < s->parts; p++) b->grad[o] += s->db_parts[(size_t)p * g->O + o];
        }
    }
}
