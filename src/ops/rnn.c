/* The recurrent layers over a whole sequence, as PyTorch's nn.RNN (tanh),
 * nn.LSTM and nn.GRU with batch_first=True, one layer, one direction, and
 * their backward through time. Shapes (G gates of H units each):
 *   x [B,T,D], w_ih [G*H, D], w_hh [G*H, H], b_ih, b_hh [G*H] -> h [B,T,H]
 * with PyTorch's gate order (LSTM i,f,g,o; GRU r,z,n) and tensors, so
 * weight_ih_l0 ... load as they are.
 *
 * Forward: one GEMM projects every step's input at once,
 *   xp = x W_ih^T + b_ih                              [B*T, G*H]
 * then per step one GEMM for the recurrence and one fused pass over the
 * gates,
 *   hp = h_{t-1} W_hh^T + b_hh                        [B, G*H]
 *   h_t = cell(xp_t, hp, h_{t-1}, c_{t-1})
 * h_{t-1} is read in place from the output (row stride T*H). The pass keeps
 * the activated gates (and the LSTM's cell, the GRU's hp_n) for the backward.
 *
 * Backward, from the last step to the first: the pass turns dh_t (from
 * above plus from step t+1) into the gates' pre-activation gradients
 * dxp_t (and, for the GRU, whose hp_n is scaled by r, a separate dhp_t;
 * elsewhere dhp = dxp), and one GEMM per step carries the gradient back:
 *   dh_{t-1} = dhp_t W_hh (+ the direct term of the GRU)
 * Then every step's gate gradients at once, three GEMMs and two sums:
 *   dW_ih += dxp^T x,  dW_hh += dhp^T h_prev,  dx += dxp W_ih,
 *   db_ih += sum dxp,  db_hh += sum dhp
 * where h_prev [B,T,H] is the output shifted one step (h_0 first).
 *
 * No gradient flows into the initial state. The gate passes run the batch's
 * rows on OpenMP threads; every float is written by one thread and the
 * sums over rows run in order, so the results do not depend on the thread
 * count. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops/fastmath.h"
#include "ops/ops.h"
#include "ops/vec16.h"

/* Gate floats per step (B * G * H) worth waking the threads for: each
 * takes an exp or tanh, ten times an add's work. */
#define RNN_PARALLEL_MIN 4096
/* Columns per task of the bias gradients. */
#define RNN_COLS 64

typedef struct rnn_saved {
    nn_ctx *ctx; /* whose scratch the backward works in */
    int G, B, T, D, H;
    float *gates; /* [B,T,G*H] activated: LSTM i,f,g,o; GRU r,z,n; RNN unused */
    float *cell;  /* [B,T,H] LSTM: c_t; GRU: hp_n = W_hn h_{t-1} + b_hn */
    float *tanh_cell; /* [B,T,H] LSTM: tanh(c_t) */
    float *h0, *c0;   /* [B,H] the initial state (zeros without one) */
} rnn_saved;

/* The gates' sigmoid and tanh, written so that GCC vectorises the gate
 * passes (libm's expf and tanhf are scalar calls, and they were most of
 * the LSTM's time). nn_expf is within 2 ulp and clamps its argument, so
 * nothing overflows; tanh takes its Taylor polynomial to x^11 near 0
 * (the next term is below 6e-8 relative for |x| < 0.4), where
 * 1 - 2 / (e^2x + 1) would cancel. Both are within 2e-7 relative of the
 * exact values (measured over [-120, 120]; below -87 the sigmoid stops at
 * 6e-39). */
static inline float sigm(float x) { return 1.0f / (1.0f + nn_expf(-x)); }

static inline float tanh_fast(float x) {
    float ax = fabsf(x), x2 = x * x;
    float poly = x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835 +
                                                                                          x2 * (-1382.0f / 155925))))));
    float big = 1.0f - 2.0f / (nn_expf(2.0f * ax) + 1.0f);
    return ax < 0.4f ? poly : copysignf(big, x);
}

/* ---- the per-step product ----
 * hp = h_{t-1} W_hh^T and dh_{t-1} = dhp_t W_hh are [B, H] x [H, G*H] and
 * [B, G*H] x [G*H, H] products, T of each per sequence. OpenBLAS's sgemm
 * packs its operands on every call (the whole W_hh, once per step), and
 * the bits it gives a row depend on how many rows it is given. rnn_gemm
 * reads W_hh (forward: its transpose, packed once per call of the op) as
 * it lies, and adds each output's products in k order with one rounding
 * each (FMA): a row's result is the same whichever rows go with it, so the
 * batch's sequences can be split over threads with the same bits as one. */

/* Register tile: RNN_MR rows x RNN_NV vectors of 16 columns (AVX-512: 24
 * accumulators of 32 registers; elsewhere a v16 is two or four registers). */
#ifdef __AVX512F__
#define RNN_MR 6
#define RNN_NV 4
#else
#define RNN_MR 4
#define RNN_NV 1
#endif
#define RNN_NB (RNN_NV * VL) /* columns per tile */

/* The first n (0..16) floats at p, the rest 0. */
static inline v16 load_upto(const float *p, int n) {
    return n >= VL ? v16_load(p) : n > 0 ? v16_load_n(p, n) : (v16){0};
}

/* C[r, c] = base[r, c] + sum_k A[r, k] B[k, c] for the mr rows of A and C
 * and the n (<= RNN_NB) columns of B and C; base is C itself (accumulate),
 * the bias row (bias), or 0. mr is a constant where this is inlined, so the
 * accumulators live in registers. */
static inline __attribute__((always_inline)) void rnn_tile(int mr, int n, int K, const float *restrict A, int lda,
                                                           const float *restrict B, int ldb, float *restrict C,
                                                           int ldc, const float *bias, bool accumulate) {
    int len[RNN_NV];
    for (int v = 0; v < RNN_NV; v++) len[v] = n - v * VL < 0 ? 0 : n - v * VL > VL ? VL : n - v * VL;
    v16 acc[RNN_MR][RNN_NV];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < RNN_NV; v++) acc[r][v] = (v16){0};
    if (n == RNN_NB) {
        for (int k = 0; k < K; k++) {
            v16 b[RNN_NV];
            for (int v = 0; v < RNN_NV; v++) b[v] = v16_load(B + (size_t)k * ldb + v * VL);
            for (int r = 0; r < mr; r++) {
                v16 a = (v16){0} + A[(size_t)r * lda + k];
                for (int v = 0; v < RNN_NV; v++) acc[r][v] = v16_fma(a, b[v], acc[r][v]);
            }
        }
    } else {
        for (int k = 0; k < K; k++) {
            v16 b[RNN_NV];
            for (int v = 0; v < RNN_NV; v++) b[v] = load_upto(B + (size_t)k * ldb + v * VL, len[v]);
            for (int r = 0; r < mr; r++) {
                v16 a = (v16){0} + A[(size_t)r * lda + k];
                for (int v = 0; v < RNN_NV; v++) acc[r][v] = v16_fma(a, b[v], acc[r][v]);
            }
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < RNN_NV; v++) {
            if (len[v] == 0) continue;
            float *c = C + (size_t)r * ldc + v * VL;
            v16 out = acc[r][v];
            if (accumulate) out = load_upto(c, len[v]) + out;
            else if (bias) out = load_upto(bias + v * VL, len[v]) + out;
            if (len[v] == VL) v16_store(c, out);
            else v16_store_n(c, out, len[v]);
        }
}

/* C [M, N] = base + A [M, K] B [K, N] (row-major, leading dimensions lda,
 * ldb, ldc), base as rnn_tile's (bias: [N]). Column blocks outside, so a
 * block of B stays in cache while every row goes through it. */
static void rnn_gemm(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                     const float *bias, bool accumulate) {
    for (int c0 = 0; c0 < N; c0 += RNN_NB) {
        int n = N - c0 < RNN_NB ? N - c0 : RNN_NB;
        const float *Bc = B + c0, *bc = bias ? bias + c0 : NULL;
        int r0 = 0;
        for (; r0 + RNN_MR <= M; r0 += RNN_MR)
            rnn_tile(RNN_MR, n, K, A + (size_t)r0 * lda, lda, Bc, ldb, C + (size_t)r0 * ldc + c0, ldc, bc, accumulate);
        const float *Ar = A + (size_t)r0 * lda;
        float *Cr = C + (size_t)r0 * ldc + c0;
        switch (M - r0) { /* the last rows, each count its own inlined tile */
#if RNN_MR > 5
        case 5: rnn_tile(5, n, K, Ar, lda, Bc, ldb, Cr, ldc, bc, accumulate); break;
        case 4: rnn_tile(4, n, K, Ar, lda, Bc, ldb, Cr, ldc, bc, accumulate); break;
#endif
        case 3: rnn_tile(3, n, K, Ar, lda, Bc, ldb, Cr, ldc, bc, accumulate); break;
        case 2: rnn_tile(2, n, K, Ar, lda, Bc, ldb, Cr, ldc, bc, accumulate); break;
        case 1: rnn_tile(1, n, K, Ar, lda, Bc, ldb, Cr, ldc, bc, accumulate); break;
        default: break;
        }
    }
}

/* Threads to split a batch of B sequences over (G*H gate units each):
 * each thread runs whole sequences, so a step's recurrence GEMM and gate
 * pass need no barrier; one thread for batches too small to be worth it.
 * Inside the team OpenBLAS keeps each thread's GEMM on that thread. */
static int rnn_team(int B, int GH) {
    if ((size_t)B * GH < RNN_PARALLEL_MIN) return 1;
    int threads = omp_get_max_threads();
    return threads < B ? threads : B;
}

/* This thread's rows [*b0, *b1) of B: contiguous, in thread order. */
static void rnn_rows(int B, int *b0, int *b1) {
    int k = omp_get_thread_num(), n = omp_get_num_threads();
    *b0 = (int)((long)B * k / n);
    *b1 = (int)((long)B * (k + 1) / n);
}

static void check_args(const char *op, int G, const nn_tensor *x, const nn_tensor *w_ih, const nn_tensor *w_hh,
                       const nn_tensor *b_ih, const nn_tensor *b_hh, const nn_rnn_state *state) {
    char sx[64], si[64], sh[64], sb[64];
    NN_CHECK(x->ndim == 3, "%s: input %s must be [B, T, D]", op, nn_shape_str(x, sx, sizeof sx));
    NN_CHECK(w_hh->ndim == 2 && w_hh->shape[0] == G * w_hh->shape[1],
             "%s: w_hh %s must be [%d*H, H]", op, nn_shape_str(w_hh, sh, sizeof sh), G);
    int H = w_hh->shape[1];
    NN_CHECK(w_ih->ndim == 2 && w_ih->shape[0] == G * H && w_ih->shape[1] == x->shape[2],
             "%s: w_ih %s must be [%d, %d] for input %s and w_hh %s", op, nn_shape_str(w_ih, si, sizeof si), G * H,
             x->shape[2], nn_shape_str(x, sx, sizeof sx), nn_shape_str(w_hh, sh, sizeof sh));
    NN_CHECK((b_ih == NULL) == (b_hh == NULL), "%s: give both biases or neither", op);
    if (b_ih) {
        NN_CHECK(b_ih->ndim == 1 && b_ih->shape[0] == G * H, "%s: b_ih %s must be [%d]", op,
                 nn_shape_str(b_ih, sb, sizeof sb), G * H);
        NN_CHECK(b_hh->ndim == 1 && b_hh->shape[0] == G * H, "%s: b_hh %s must be [%d]", op,
                 nn_shape_str(b_hh, sb, sizeof sb), G * H);
    }
    if (state) {
        NN_CHECK(state->h != NULL, "%s: state->h is NULL (pass state = NULL to start from zeros)", op);
        NN_CHECK(G != 4 || state->c != NULL, "%s: state->c is NULL (the LSTM's state needs h and c)", op);
    }
}

/* The gate pass of step t for batch row b; g holds x_t W_ih^T on entry
 * and the activated gates on exit, bx is b_ih, hp the recurrence
 * h_{t-1} W_hh^T + b_hh; xp = x_t W_ih^T + b_ih.
 *   i, f, o = s(xp + hp),  g = tanh(xp + hp),  c = f c_prev + i g,  h = o tanh(c) */
static inline void lstm_cell(int H, const float *restrict bx, const float *restrict hp, float *restrict g,
                             const float *restrict c_prev, float *restrict c, float *restrict tc, float *restrict h) {
#pragma omp simd
    for (int j = 0; j < H; j++) {
        float i = sigm(g[j] + bx[j] + hp[j]);
        float f = sigm(g[H + j] + bx[H + j] + hp[H + j]);
        float gg = tanh_fast(g[2 * H + j] + bx[2 * H + j] + hp[2 * H + j]);
        float o = sigm(g[3 * H + j] + bx[3 * H + j] + hp[3 * H + j]);
        float cj = f * c_prev[j] + i * gg;
        float t = tanh_fast(cj);
        g[j] = i, g[H + j] = f, g[2 * H + j] = gg, g[3 * H + j] = o;
        c[j] = cj, tc[j] = t;
        h[j] = o * t;
    }
}

/* r = s(xp_r + hp_r), z = s(xp_z + hp_z), n = tanh(xp_n + r hp_n),
 * h = n + z (h_prev - n) (PyTorch's order of operations). */
static inline void gru_cell(int H, const float *restrict bx, const float *restrict hp, float *restrict g,
                            const float *restrict h_prev, float *restrict hn_out, float *restrict h) {
#pragma omp simd
    for (int j = 0; j < H; j++) {
        float r = sigm(g[j] + bx[j] + hp[j]), z = sigm(g[H + j] + bx[H + j] + hp[H + j]);
        float n = tanh_fast(g[2 * H + j] + bx[2 * H + j] + r * hp[2 * H + j]);
        g[j] = r, g[H + j] = z, g[2 * H + j] = n;
        hn_out[j] = hp[2 * H + j];
        h[j] = n + z * (h_prev[j] - n);
    }
}

/* n zeros from the arena (the bias of a layer without one). */
static const float *zeros(nn_ctx *ctx, int n) {
    float *z = nn_arena_alloc(ctx, (size_t)n * sizeof(float));
    memset(z, 0, (size_t)n * sizeof(float));
    return z;
}

/* w [R, C] transposed into a new [C, R] from the arena. */
static float *transpose(nn_ctx *ctx, const float *w, int R, int C) {
    float *t = nn_arena_alloc(ctx, (size_t)R * C * sizeof(float));
    for (int r0 = 0; r0 < R; r0 += 16) /* 16 x 16 blocks: both sides' lines stay in cache */
        for (int c0 = 0; c0 < C; c0 += 16)
            for (int r = r0; r < R && r < r0 + 16; r++)
                for (int c = c0; c < C && c < c0 + 16; c++) t[(size_t)c * R + r] = w[(size_t)r * C + c];
    return t;
}

static nn_tensor *recurrent(nn_ctx *ctx, nn_op op, int G, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh,
                            nn_tensor *b_ih, nn_tensor *b_hh, nn_rnn_state *state) {
    const char *name = nn_op_table[op].name;
    nn_tensor *in[] = {x, w_ih, w_hh, b_ih, b_hh};
    int n_in = b_ih ? 5 : 3;
    for (int k = 0; k < n_in; k++) nn_check_live(ctx, in[k], name);
    check_args(name, G, x, w_ih, w_hh, b_ih, b_hh, state);
    int B = x->shape[0], T = x->shape[1], D = x->shape[2], H = w_hh->shape[1], GH = G * H;
    size_t rows = (size_t)B * T, bh = (size_t)B * H;
    nn_tensor *y = nn_op_output(ctx, 3, (int[]){B, T, H}, in, n_in);
    bool keep = ctx->grad_enabled && y->grad;

    /* gates [B,T,G*H] | cell, tanh_cell [B,T,H] (as the kind needs) | h0, c0 [B,H] | hp [B,G*H] */
    size_t n_cell = G == 4 ? 2 : G == 3 ? 1 : 0;
    size_t floats = rows * GH + n_cell * rows * H + 2 * bh + (size_t)B * GH;
    float *mem = keep ? nn_arena_alloc(ctx, floats * sizeof(float)) : nn_ctx_scratch(ctx, floats * sizeof(float));
    float *gates = mem, *cell = gates + rows * GH, *tanh_cell = cell + (n_cell > 0 ? rows * H : 0);
    float *h0 = tanh_cell + (n_cell > 1 ? rows * H : 0), *c0 = h0 + bh, *hp = c0 + bh;
    if (state) {
        memcpy(h0, state->h, bh * sizeof(float));
        if (G == 4) memcpy(c0, state->c, bh * sizeof(float));
        else memset(c0, 0, bh * sizeof(float));
    } else {
        memset(h0, 0, 2 * bh * sizeof(float));
    }

    /* xp = x W_ih^T, every step at once (b_ih is added in the gate pass) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, GH, D, 1.0f, x->data, D, w_ih->data, D, 0.0f,
                gates, GH);
    const float *bx = b_ih ? b_ih->data : zeros(ctx, GH), *bias_hh = b_hh ? b_hh->data : NULL;
    /* W_hh^T [H, G*H] for rnn_gemm; a single sequence (generation, one
     * step a call) calls sgemm on W_hh as it is instead */
    float *w_t = B > 1 ? transpose(ctx, w_hh->data, GH, H) : NULL;

    /* The sequences of the batch are independent: each thread runs its
     * rows through every step, with no barrier between steps. */
    int team = rnn_team(B, GH);
#pragma omp parallel num_threads(team) if (team > 1)
    {
        int b0, b1;
        rnn_rows(B, &b0, &b1);
        for (int t = 0; t < T; t++) {
            /* hp = h_{t-1} W_hh^T + b_hh; h_{t-1} is row b of h0, or y[b, t-1] */
            int ld_prev = t ? T * H : H;
            const float *h_prev = t ? y->data + (size_t)(t - 1) * H : h0;
            if (w_t) {
                rnn_gemm(b1 - b0, GH, H, h_prev + (size_t)b0 * ld_prev, ld_prev, w_t, GH, hp + (size_t)b0 * GH, GH,
                         bias_hh, false);
            } else {
                if (bias_hh) memcpy(hp, bias_hh, (size_t)GH * sizeof(float));
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, GH, H, 1.0f, h_prev, ld_prev, w_hh->data, H,
                            bias_hh ? 1.0f : 0.0f, hp, GH);
            }
            for (int b = b0; b < b1; b++) {
                size_t at = (size_t)b * T + t; /* row of step t of sequence b */
                float *g = gates + at * GH, *h = y->data + at * H;
                const float *hpb = hp + (size_t)b * GH, *hprev = h_prev + (size_t)b * ld_prev;
                if (G == 4) {
                    const float *c_prev = t ? cell + (at - 1) * H : c0 + (size_t)b * H;
                    lstm_cell(H, bx, hpb, g, c_prev, cell + at * H, tanh_cell + at * H, h);
                } else if (G == 3) {
                    gru_cell(H, bx, hpb, g, hprev, cell + at * H, h);
                } else {
#pragma omp simd
                    for (int j = 0; j < H; j++) h[j] = tanh_fast(g[j] + bx[j] + hpb[j]);
                }
            }
        }
    }
    if (state)
        for (int b = 0; b < B; b++) {
            size_t last = (size_t)b * T + (T - 1);
            memcpy(state->h + (size_t)b * H, y->data + last * H, (size_t)H * sizeof(float));
            if (G == 4) memcpy(state->c + (size_t)b * H, cell + last * H, (size_t)H * sizeof(float));
        }

    nn_node *node = nn_record(ctx, op, y, in, n_in);
    if (node && keep) {
        rnn_saved *s = nn_arena_alloc(ctx, sizeof *s);
        *s = (rnn_saved){.ctx = ctx, .G = G, .B = B, .T = T, .D = D, .H = H, .gates = gates, .cell = cell,
                         .tanh_cell = tanh_cell, .h0 = h0, .c0 = c0};
        node->saved = s;
    }
    return y;
}

nn_tensor *nn_rnn(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                  nn_rnn_state *state) {
    return recurrent(ctx, NN_OP_RNN, 1, x, w_ih, w_hh, b_ih, b_hh, state);
}

nn_tensor *nn_lstm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                   nn_rnn_state *state) {
    return recurrent(ctx, NN_OP_LSTM, 4, x, w_ih, w_hh, b_ih, b_hh, state);
}

nn_tensor *nn_gru(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                  nn_rnn_state *state) {
    return recurrent(ctx, NN_OP_GRU, 3, x, w_ih, w_hh, b_ih, b_hh, state);
}

/* LSTM, per unit, with dh the gradient reaching h_t and dc_next the one
 * reaching c_t from step t+1:
 *   dc = dc_next + dh o (1 - tanh^2 c_t)
 *   da_i = dc g i (1-i),  da_f = dc c_{t-1} f (1-f),  da_g = dc i (1-g^2),
 *   da_o = dh tanh(c_t) o (1-o),  dc_next <- dc f */
static inline void lstm_cell_backward(int H, const float *restrict g, const float *restrict tc,
                                      const float *restrict c_prev, const float *restrict dy,
                                      const float *restrict dh_next, float *restrict dc_next, float *restrict da) {
    for (int j = 0; j < H; j++) {
        float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j], t = tc[j];
        float dh = dy[j] + dh_next[j];
        float dc = dc_next[j] + dh * o * (1.0f - t * t);
        da[j] = dc * gg * i * (1.0f - i);
        da[H + j] = dc * c_prev[j] * f * (1.0f - f);
        da[2 * H + j] = dc * i * (1.0f - gg * gg);
        da[3 * H + j] = dh * t * o * (1.0f - o);
        dc_next[j] = dc * f;
    }
}

/* GRU, per unit: h = n + z (h_prev - n)
 *   dn = dh (1-z),  dz = dh (h_prev - n),  da_n = dn (1-n^2)
 *   dxp = [da_n hp_n r (1-r),  dz z (1-z),  da_n],  dhp = the same with da_n r last
 *   dh_prev (direct) = dh z */
static inline void gru_cell_backward(int H, const float *restrict g, const float *restrict hn,
                                     const float *restrict h_prev, const float *restrict dy, float *restrict dh_next,
                                     float *restrict dxp, float *restrict dhp) {
    for (int j = 0; j < H; j++) {
        float r = g[j], z = g[H + j], n = g[2 * H + j];
        float dh = dy[j] + dh_next[j];
        float dan = dh * (1.0f - z) * (1.0f - n * n);
        float dar = dan * hn[j] * r * (1.0f - r);
        float daz = dh * (h_prev[j] - n) * z * (1.0f - z);
        dxp[j] = dhp[j] = dar;
        dxp[H + j] = dhp[H + j] = daz;
        dxp[2 * H + j] = dan;
        dhp[2 * H + j] = dan * r;
        dh_next[j] = dh * z;
    }
}

/* db[j] += sum over rows of d[r, j], columns in blocks, rows in order. */
static void bias_grad(const float *d, size_t rows, int N, float *db) {
#pragma omp parallel for if (rows * N >= NN_PARALLEL_MIN)
    for (int j0 = 0; j0 < N; j0 += RNN_COLS) {
        int j1 = j0 + RNN_COLS < N ? j0 + RNN_COLS : N;
        for (size_t r = 0; r < rows; r++)
            for (int j = j0; j < j1; j++) db[j] += d[r * N + j];
    }
}

void nn_recurrent_backward(nn_node *n) {
    const rnn_saved *s = n->saved;
    nn_tensor *x = n->in[0], *w_ih = n->in[1], *w_hh = n->in[2], *y = n->out;
    nn_tensor *b_ih = n->n_in > 3 ? n->in[3] : NULL, *b_hh = n->n_in > 3 ? n->in[4] : NULL;
    int G = s->G, B = s->B, T = s->T, D = s->D, H = s->H, GH = G * H;
    size_t rows = (size_t)B * T, bh = (size_t)B * H;

    /* dxp [B,T,G*H] | dhp (GRU) | h_prev [B,T,H] | dh_next, dc_next [B,H] */
    size_t floats = rows * GH * (G == 3 ? 2 : 1) + rows * H + 2 * bh;
    float *dxp = nn_ctx_scratch(s->ctx, floats * sizeof(float));
    float *dhp = G == 3 ? dxp + rows * GH : dxp;
    float *h_prev = dhp + rows * GH, *dh_next = h_prev + rows * H, *dc_next = dh_next + bh;
    memset(dh_next, 0, 2 * bh * sizeof(float));
    /* h_prev[b, t] = h_{t-1}: h0 first, then the output one step behind */
    for (int b = 0; b < B; b++) {
        memcpy(h_prev + (size_t)b * T * H, s->h0 + (size_t)b * H, (size_t)H * sizeof(float));
        memcpy(h_prev + ((size_t)b * T + 1) * H, y->data + (size_t)b * T * H, (size_t)(T - 1) * H * sizeof(float));
    }

    /* Each thread carries its rows back through every step, as forward. */
    int team = rnn_team(B, GH);
#pragma omp parallel num_threads(team) if (team > 1)
    {
        int b0, b1;
        rnn_rows(B, &b0, &b1);
        for (int t = T - 1; t >= 0; t--) {
            for (int b = b0; b < b1; b++) {
                size_t at = (size_t)b * T + t;
                const float *g = s->gates + at * GH, *dy = y->grad + at * H;
                float *dhn = dh_next + (size_t)b * H;
                if (G == 4) {
                    const float *c_prev = t ? s->cell + (at - 1) * H : s->c0 + (size_t)b * H;
                    lstm_cell_backward(H, g, s->tanh_cell + at * H, c_prev, dy, dhn, dc_next + (size_t)b * H,
                                       dxp + at * GH);
                } else if (G == 3) {
                    gru_cell_backward(H, g, s->cell + at * H, h_prev + at * H, dy, dhn, dxp + at * GH,
                                      dhp + at * GH);
                } else { /* h = tanh(a): da = dh (1 - h^2) */
                    const float *h = y->data + at * H;
                    float *da = dxp + at * GH;
                    for (int j = 0; j < H; j++) da[j] = (dy[j] + dhn[j]) * (1.0f - h[j] * h[j]);
                }
            }
            /* dh_{t-1} = dhp_t W_hh (added to the GRU's direct term) */
            if (t > 0)
                rnn_gemm(b1 - b0, H, GH, dhp + ((size_t)b0 * T + t) * GH, T * GH, w_hh->data, H,
                         dh_next + (size_t)b0 * H, H, NULL, G == 3);
        }
    }

    if (w_hh->grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, H, (int)rows, 1.0f, dhp, GH, h_prev, H, 1.0f,
                    w_hh->grad, H);
    if (w_ih->grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, D, (int)rows, 1.0f, dxp, GH, x->data, D, 1.0f,
                    w_ih->grad, D);
    if (x->grad)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, D, GH, 1.0f, dxp, GH, w_ih->data, D, 1.0f,
                    x->grad, D);
    if (b_ih && b_ih->grad) bias_grad(dxp, rows, GH, b_ih->grad);
    if (b_hh && b_hh->grad) bias_grad(dhp, rows, GH, b_hh->grad);
}

/* Each sequence's last real step:
 *   y[b,:] = x[b, len_b - 1, :]        x [B,T,H] -> y [B,H]
 *   dx[b, len_b - 1, :] += dy[b,:] */
nn_tensor *nn_last_step(nn_ctx *ctx, nn_tensor *x, const int *lengths) {
    char sx[64];
    nn_check_live(ctx, x, "last_step");
    NN_CHECK(x->ndim == 3, "last_step: input %s must be [B, T, H]", nn_shape_str(x, sx, sizeof sx));
    int B = x->shape[0], T = x->shape[1], H = x->shape[2];
    int *last = nn_arena_alloc(ctx, (size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) {
        NN_CHECK(!lengths || (lengths[b] >= 1 && lengths[b] <= T),
                 "last_step: lengths[%d] = %d is outside [1, %d] for input %s", b, lengths ? lengths[b] : 0, T,
                 nn_shape_str(x, sx, sizeof sx));
        last[b] = lengths ? lengths[b] - 1 : T - 1;
    }
    nn_tensor *y = nn_op_output(ctx, 2, (int[]){B, H}, &x, 1);
    for (int b = 0; b < B; b++)
        memcpy(y->data + (size_t)b * H, x->data + ((size_t)b * T + last[b]) * H, (size_t)H * sizeof(float));
    nn_node *node = nn_record(ctx, NN_OP_LAST_STEP, y, &x, 1);
    if (node) node->saved = last;
    return y;
}

void nn_last_step_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *y = n->out;
    if (!x->grad) return;
    const int *last = n->saved;
    int B = x->shape[0], T = x->shape[1], H = x->shape[2];
    for (int b = 0; b < B; b++) {
        float *dx = x->grad + ((size_t)b * T + last[b]) * H;
        const float *dy = y->grad + (size_t)b * H;
        for (int j = 0; j < H; j++) dx[j] += dy[j];
    }
}
