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
 * thread's scratch (im2col columns, Winograd tiles, z of a chunk) is the
 * context's shared scratch (nn_ctx_scratch): nothing in it outlives a call. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "ops/batchnorm_relu.h"
#include "ops/conv_internal.h"
#include "ops/vec16.h"

#define CONV_PARTS 16
#define REDUCE_BLOCK 1024 /* weight-gradient elements a thread sums over the parts at a time */

/* EPI_BN: batch_norm + ReLU (+ pooling) after the convolution (bn_relu):
 * z is kept (batch norm's backward needs it) but has no gradient buffer;
 * the backward makes dz a chunk at a time. */
typedef enum conv_epilogue { EPI_NONE, EPI_RELU, EPI_RELU_POOL, EPI_BN } conv_epilogue;

/* The batch norm of EPI_BN: its parameters and running statistics. */
typedef struct conv_bn {
    nn_tensor *w, *b;
    float *running_mean, *running_var, momentum, eps;
    bool pool;
} conv_bn;

/* What the backward needs besides the inputs, allocated by the forward. */
typedef struct conv_saved {
    conv_geom g;
    conv_algo algo;
    conv_epilogue epi;
    int threads, parts, chunk;
    size_t algo_floats, thread_floats; /* scratch per thread: the algorithm's, and with z (and Winograd's dU) */
    nn_ctx *ctx;                       /* whose scratch holds threads x thread_floats */
    float *u;                          /* Winograd-domain weights [36, C, O] (NULL otherwise) */
    uint8_t *winner;                   /* pooling: 0..3 per output, the window's first maximum */
    nn_tensor *bias;                   /* the convolution's (or NULL) */
    nn_tensor *bn_w, *bn_b;            /* EPI_BN: the batch norm's parameters, */
    bn_relu *bn;                       /* its saved state */
    float *z;                          /* and the convolution's output [B, O, OH, OW] */
    float *dw_parts;                   /* parts x dw_size: [O, K], or [C, 3, 3, O] for Winograd
                                        * (NULL without a weight gradient) */
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
    /* pooling reads the last plane's rows whole vectors at a time, into z's
     * room: those lanes are discarded, but defined (valgrind) */
    if (s->epi == EPI_RELU_POOL) memset(z + (size_t)n * g->O * g->L, 0, 2 * VL * sizeof(float));
    for (int c = 0; c < n * g->O; c++) { /* c: one (image, channel) plane */
        float bo = bias ? bias[c % g->O] : 0.0f;
        float *restrict zp = z + (size_t)c * g->L;
        if (s->epi == EPI_NONE || s->epi == EPI_BN) {
            for (int l = 0; l < g->L; l++) zp[l] += bo;
        } else if (s->epi == EPI_RELU) {
            float *restrict yc = y + (size_t)c * g->L;
            for (int l = 0; l < g->L; l++) yc[l] = relu(zp[l] + bo);
        } else {
            for (int ph = 0; ph < PH; ph++) {
                const float *r0 = zp + (size_t)2 * ph * g->OW;
                nn_relu_pool2_row(r0, r0 + g->OW, 1.0f, bo, PW, yp + ph * PW, wp + ph * PW);
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
    if (g->OH % 2 || g->OW % 2) memset(dz, 0, (size_t)n * g->O * g->L * sizeof(float)); /* uncovered edges */
    for (int c = 0; c < n * g->O; c++) {
        /* the window's gradient: dy where the pooled ReLU output is positive */
        for (size_t e = 0; e < out_plane; e++) dyp[e] = yv[c * out_plane + e] > 0.0f ? dy[c * out_plane + e] : 0.0f;
        memcpy(wp, win + c * out_plane, out_plane);
        nn_relu_pool2_scatter(dyp, wp, PH, PW, g->OW, dz + (size_t)c * g->L);
        /* summed at full resolution, in the order the separate ops sum it */
        if (db) db[c % g->O] += sum_of(dz + (size_t)c * g->L, g->L);
    }
    return dz;
}

static nn_tensor *conv_op(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding,
                          conv_epilogue epi, const conv_bn *bn) {
    bool pool = epi == EPI_RELU_POOL || (epi == EPI_BN && bn->pool);
    static const nn_op ops[] = {NN_OP_CONV2D, NN_OP_CONV2D_RELU, NN_OP_CONV2D_RELU_MAXPOOL, NN_OP_CONV2D_BN_RELU,
                                NN_OP_CONV2D_BN_RELU_MAXPOOL};
    int kind = epi == EPI_BN ? 3 + pool : (int)epi;
    const char *name = nn_op_table[ops[kind]].name;
    char sx[64], sw[64], sb[64];
    nn_check_live(ctx, x, name);
    nn_check_live(ctx, w, name);
    NN_CHECK(x->ndim == 4 && w->ndim == 4 && x->shape[1] == w->shape[1],
             "%s: input %s does not match weight %s (expected input [B, C, H, W] and weight [O, C, KH, KW])", name,
             nn_shape_str(x, sx, sizeof sx), nn_shape_str(w, sw, sizeof sw));
    NN_CHECK(stride >= 1 && padding >= 0, "%s: stride %d must be >= 1 and padding %d >= 0", name, stride, padding);
    conv_geom g = {.B = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3], .O = w->shape[0],
                   .KH = w->shape[2], .KW = w->shape[3], .S = stride, .P = padding};
    NN_CHECK(g.H + 2 * g.P >= g.KH && g.W + 2 * g.P >= g.KW,
             "%s: kernel of weight %s is larger than input %s with padding %d", name, nn_shape_str(w, sw, sizeof sw),
             nn_shape_str(x, sx, sizeof sx), padding);
    if (b) {
        nn_check_live(ctx, b, name);
        NN_CHECK(b->ndim == 1 && b->shape[0] == g.O, "%s: bias %s does not match weight %s", name,
                 nn_shape_str(b, sb, sizeof sb), nn_shape_str(w, sw, sizeof sw));
    }
    g.OH = (g.H + 2 * g.P - g.KH) / g.S + 1;
    g.OW = (g.W + 2 * g.P - g.KW) / g.S + 1;
    g.K = g.C * g.KH * g.KW;
    g.L = g.OH * g.OW;
    NN_CHECK(!pool || (g.OH >= 2 && g.OW >= 2), "%s: output %dx%d is smaller than the 2x2 window", name, g.OH, g.OW);

    /* the inputs: x, w[, b], or x, w, the batch norm's w and b[, b] */
    nn_tensor *in[5] = {x, w};
    int n_in = 2;
    if (epi == EPI_BN) in[n_in++] = bn->w, in[n_in++] = bn->b;
    if (b) in[n_in++] = b;
    int out_shape[] = {g.B, g.O, g.OH, g.OW};
    if (pool) out_shape[2] = g.OH / 2, out_shape[3] = g.OW / 2;
    nn_tensor *y = nn_op_output(ctx, 4, out_shape, in, n_in);
    bool recording = ctx->grad_enabled && y->grad;

    conv_saved s = {.g = g, .algo = conv_choose_algo(&g), .epi = epi, .bias = b, .ctx = ctx};
    s.parts = g.B < CONV_PARTS ? g.B : CONV_PARTS;
    s.threads = omp_get_max_threads() < s.parts ? omp_get_max_threads() : s.parts;
    s.chunk = s.algo == CONV_WINOGRAD ? conv_winograd_chunk(&g) : 1;
    s.algo_floats = algo_scratch(&g, s.algo, s.chunk);
    size_t bn_floats = 0;
    if (epi == EPI_BN) {
        s.bn_w = bn->w, s.bn_b = bn->b;
        s.z = nn_arena_alloc(ctx, (size_t)g.B * g.O * g.L * sizeof(float));
        nn_tensor z = {.data = s.z, .ndim = 4, .shape = {g.B, g.O, g.OH, g.OW}, .size = (size_t)g.B * g.O * g.L,
                       .role = NN_ACTIVATION, .node = -1, .step = ctx->step};
        s.bn = nn_arena_alloc(ctx, sizeof *s.bn);
        bn_relu_init(s.bn, ctx, name, &z, bn->w, bn->b, bn->running_mean, bn->running_var, bn->pool, recording);
        bn_floats = bn_relu_plane_floats(s.bn); /* the backward's planes of g */
    }
    /* z (or dz) of a chunk, with room for pooling's whole-vector rows; the planes' room */
    size_t z_floats = (size_t)s.chunk * g.O * g.L + 2 * VL;
    size_t du_floats = s.algo == CONV_WINOGRAD ? (size_t)WINO_POINTS * g.C * g.O : 0; /* a part's dU */
    s.thread_floats = (s.algo_floats + z_floats + 2 * plane_floats(&g) + du_floats + bn_floats + 15) / 16 * 16;
    float *scratch_all = nn_ctx_scratch(ctx, (size_t)s.threads * s.thread_floats * sizeof(float));
    if (s.algo == CONV_WINOGRAD) s.u = nn_arena_alloc(ctx, (size_t)WINO_POINTS * g.C * g.O * sizeof(float));
    if (recording && epi == EPI_RELU_POOL) s.winner = nn_arena_alloc(ctx, y->size);

    size_t x_size = (size_t)g.C * g.H * g.W, out_plane = (size_t)out_shape[2] * out_shape[3];
#pragma omp parallel num_threads(s.threads)
    {
        float *scratch = scratch_all + (size_t)omp_get_thread_num() * s.thread_floats, *zbuf = scratch + s.algo_floats;
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
                float *z = epi == EPI_NONE ? yi : epi == EPI_BN ? s.z + (size_t)i * g.O * g.L : zbuf;
                algo_forward(&s, w->data, x->data + i * x_size, n, z, scratch);
                epilogue(&s, b ? b->data : NULL, z, n, yi, s.winner ? s.winner + (size_t)i * g.O * out_plane : NULL,
                         plane);
            }
        }
    }
    if (epi == EPI_BN)
        bn_relu_forward(s.bn, s.z, bn->w, bn->b, bn->running_mean, bn->running_var, bn->momentum, bn->eps, y->data);
    nn_node *node = nn_record(ctx, ops[kind], y, in, n_in);
    if (node) {
        conv_saved *saved = nn_arena_alloc(ctx, sizeof *saved);
        *saved = s;
        saved->dw_size = (size_t)g.O * g.K;
        if (w->grad) saved->dw_parts = nn_arena_alloc(ctx, (size_t)s.parts * saved->dw_size * sizeof(float));
        if (b && b->grad) saved->db_parts = nn_arena_alloc(ctx, (size_t)s.parts * g.O * sizeof(float));
        node->saved = saved;
        node->iattr[0] = stride;
        node->iattr[1] = padding;
    }
    return y;
}

nn_tensor *nn_conv2d(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding) {
    return conv_op(ctx, x, w, b, stride, padding, EPI_NONE, NULL);
}

nn_tensor *nn_conv2d_relu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding,
                          bool maxpool) {
    return conv_op(ctx, x, w, b, stride, padding, maxpool ? EPI_RELU_POOL : EPI_RELU, NULL);
}

nn_tensor *nn_conv2d_bn_relu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding,
                             nn_tensor *bn_w, nn_tensor *bn_b, float *running_mean, float *running_var, float momentum,
                             float eps, bool maxpool) {
    conv_bn bn = {.w = bn_w, .b = bn_b, .running_mean = running_mean, .running_var = running_var,
                  .momentum = momentum, .eps = eps, .pool = maxpool};
    return conv_op(ctx, x, w, b, stride, padding, EPI_BN, &bn);
}

void nn_conv2d_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    const conv_saved *s = n->saved;
    nn_tensor *b = s->bias;
    const conv_geom *g = &s->g;
    size_t x_size = (size_t)g->C * g->H * g->W;
    bool wino = s->algo == CONV_WINOGRAD;
    /* EPI_BN: the batch norm's sums (and its parameters' gradients) first;
     * each chunk's dz then comes from them. */
    if (s->epi == EPI_BN) bn_relu_gradient_sums(s->bn, s->z, y->data, y->grad, s->bn_w, s->bn_b, s->bn->coef);
    float *scratch_all = nn_ctx_scratch(s->ctx, (size_t)s->threads * s->thread_floats * sizeof(float));
#pragma omp parallel num_threads(s->threads)
    {
        float *scratch = scratch_all + (size_t)omp_get_thread_num() * s->thread_floats, *zbuf = scratch + s->algo_floats;
        float *plane = zbuf + (size_t)s->chunk * g->O * g->L + 2 * VL;
        float *du = plane + 2 * plane_floats(g); /* Winograd: the part's gradient before its transform */
        float *bn_planes = du + (wino ? (size_t)WINO_POINTS * g->C * g->O : 0);
#pragma omp for schedule(static)
        for (int p = 0; p < s->parts; p++) {
            float *dw_part = s->dw_parts ? s->dw_parts + (size_t)p * s->dw_size : NULL;
            float *dw = dw_part && wino ? du : dw_part;
            float *db = s->db_parts ? s->db_parts + (size_t)p * g->O : NULL;
            int first = (int)((long)p * g->B / s->parts), end = (int)((long)(p + 1) * g->B / s->parts);
            if (db) memset(db, 0, (size_t)g->O * sizeof(float));
            for (int i = first; i < end; i += s->chunk) {
                int cn = end - i < s->chunk ? end - i : s->chunk;
                const float *dz;
                if (s->epi == EPI_BN) {
                    bn_relu_input_grad(s->bn, s->z, y->data, y->grad, s->bn->coef, i, cn, zbuf, false, bn_planes);
                    if (db)
                        for (int c = 0; c < cn * g->O; c++) db[c % g->O] += sum_of(zbuf + (size_t)c * g->L, g->L);
                    dz = zbuf;
                } else {
                    dz = epilogue_backward(s, y, i, cn, zbuf, db, plane);
                }
                float *dx = x->grad ? x->grad + i * x_size : NULL;
                if (dw || dx) algo_backward(s, w->data, x->data + i * x_size, dz, cn, dw, i > first, dx, scratch);
            }
            if (dw_part && wino) conv_winograd_weight_grad(g, du, dw_part);
        }
        /* The parts, added in order of the batch: into w->grad, or for
         * Winograd ([C, 3, 3, O]) into part 0 and from there into w->grad. */
        if (s->dw_parts) {
            float *sum = wino ? s->dw_parts : w->grad;
            size_t blocks = (s->dw_size + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
#pragma omp for schedule(static)
            for (size_t k = 0; k < blocks; k++) {
                size_t lo = k * REDUCE_BLOCK, hi = lo + REDUCE_BLOCK < s->dw_size ? lo + REDUCE_BLOCK : s->dw_size;
                for (int p = wino ? 1 : 0; p < s->parts; p++) {
                    const float *restrict part = s->dw_parts + (size_t)p * s->dw_size;
                    for (size_t e = lo; e < hi; e++) sum[e] += part[e];
                }
            }
            if (wino) {
#pragma omp for schedule(static)
                for (int o = 0; o < g->O; o++)
                    for (int e = 0; e < g->K; e++) w->grad[(size_t)o * g->K + e] += sum[(size_t)e * g->O + o];
            }
        }
        if (s->db_parts) {
#pragma omp for schedule(static)
            for (int o = 0; o < g->O; o++)
                for (int p = 0; p < s->parts; p++) b->grad[o] += s->db_parts[(size_t)p * g->O + o];
        }
    }
}
