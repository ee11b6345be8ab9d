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
 * A padded batch (nn_recurrent_padded) runs each sequence to its own
 * length: the step-wide arrays (xp and the gates, the cell, the gradients,
 * h_prev) hold the real steps' rows only, sequence b's step t at row
 * off[b] + t, and a step's product takes the rows of the sequences still
 * running (rnn_gemm reads rows through pointers); the outputs past a
 * sequence's end are 0. Without lengths every sequence runs T steps and
 * off[b] = b T.
 *
 * No gradient flows into the initial state. Each OpenMP thread runs whole
 * sequences; every float is written by one thread and the sums over rows
 * run in order, so the results do not depend on the thread count. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "ops/fastmath.h"
#include "ops/ops.h"
#include "ops/vec16.h"

/* Gate floats per step (B * G * H) worth waking the threads for: each
 * takes an exp or tanh, ten times an add's work. */
#define RNN_PARALLEL_MIN 4096
/* Columns per task of the bias gradients. */
#define RNN_COLS 64


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

/* C[r][c] = base + sum_k A[r][k] B[k, c] for the mr rows A[r] and C[r]
 * (pointers: the rows need not be evenly spaced, so a step's live
 * sequences go as they are) and the n (<= RNN_NB) columns of B from c0;
 * base is C itself (accumulate), the bias row (bias), or 0. mr is a
 * constant where this is inlined, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void rnn_tile(int mr, int n, int K, const float *const *A,
                                                           const float *restrict B, int ldb, float *const *C, int c0,
                                                           const float *bias, bool accumulate) {
    int len[RNN_NV];
    for (int v = 0; v < RNN_NV; v++) len[v] = n - v * VL < 0 ? 0 : n - v * VL > VL ? VL : n - v * VL;
    const float *a_row[RNN_MR];
    for (int r = 0; r < mr; r++) a_row[r] = A[r];
    v16 acc[RNN_MR][RNN_NV];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < RNN_NV; v++) acc[r][v] = (v16){0};
    if (n == RNN_NB) {
        for (int k = 0; k < K; k++) {
            v16 b[RNN_NV];
            for (int v = 0; v < RNN_NV; v++) b[v] = v16_load(B + (size_t)k * ldb + v * VL);
            for (int r = 0; r < mr; r++) {
                v16 a = (v16){0} + a_row[r][k];
                for (int v = 0; v < RNN_NV; v++) acc[r][v] = v16_fma(a, b[v], acc[r][v]);
            }
        }
    } else {
        for (int k = 0; k < K; k++) {
            v16 b[RNN_NV];
            for (int v = 0; v < RNN_NV; v++) b[v] = load_upto(B + (size_t)k * ldb + v * VL, len[v]);
            for (int r = 0; r < mr; r++) {
                v16 a = (v16){0} + a_row[r][k];
                for (int v = 0; v < RNN_NV; v++) acc[r][v] = v16_fma(a, b[v], acc[r][v]);
            }
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < RNN_NV; v++) {
            if (len[v] == 0) continue;
            float *c = C[r] + c0 + v * VL;
            v16 out = acc[r][v];
            if (accumulate) out = load_upto(c, len[v]) + out;
            else if (bias) out = load_upto(bias + c0 + v * VL, len[v]) + out;
            if (len[v] == VL) v16_store(c, out);
            else v16_store_n(c, out, len[v]);
        }
}

/* C [M rows, N] = base + A [M rows, K] B [K, N] (B row-major with leading
 * dimension ldb; A and C by their rows' pointers), base as rnn_tile's
 * (bias: [N]). Column blocks outside, so a block of B stays in cache while
 * every row goes through it. */
static void rnn_gemm(int M, int N, int K, const float *const *A, const float *B, int ldb, float *const *C,
                     const float *bias, bool accumulate) {
    for (int c0 = 0; c0 < N; c0 += RNN_NB) {
        int n = N - c0 < RNN_NB ? N - c0 : RNN_NB;
        int r0 = 0;
        for (; r0 + RNN_MR <= M; r0 += RNN_MR) rnn_tile(RNN_MR, n, K, A + r0, B + c0, ldb, C + r0, c0, bias, accumulate);
        const float *const *Ar = A + r0;
        float *const *Cr = C + r0;
        switch (M - r0) { /* the last rows, each count its own inlined tile */
#if RNN_MR > 5
        case 5: rnn_tile(5, n, K, Ar, B + c0, ldb, Cr, c0, bias, accumulate); break;
        case 4: rnn_tile(4, n, K, Ar, B + c0, ldb, Cr, c0, bias, accumulate); break;
#endif
        case 3: rnn_tile(3, n, K, Ar, B + c0, ldb, Cr, c0, bias, accumulate); break;
        case 2: rnn_tile(2, n, K, Ar, B + c0, ldb, Cr, c0, bias, accumulate); break;
        case 1: rnn_tile(1, n, K, Ar, B + c0, ldb, Cr, c0, bias, accumulate); break;
        default: break;
        }
    }
}

/* y [N] = base + W [N, K] x [K] (W row-major as it lies, base the bias
 * or 0): the product of a single sequence (generation, one step a call),
 * where rnn_gemm would need W transposed and sgemm packs the whole of W on
 * every call. Four rows at a time, each summed in 16 lanes over k in order
 * and the lanes in v16_sum's fixed order: the same bits on every call. */
static void rnn_matvec(int N, int K, const float *restrict W, const float *restrict x, const float *bias,
                       float *restrict y) {
    int k_full = K - K % VL, tail = K % VL;
    int n = 0;
    for (; n + 4 <= N; n += 4) {
        const float *w0 = W + (size_t)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int k = 0; k < k_full; k += VL) {
            v16 xv = v16_load(x + k);
            a0 = v16_fma(v16_load(w0 + k), xv, a0);
            a1 = v16_fma(v16_load(w1 + k), xv, a1);
            a2 = v16_fma(v16_load(w2 + k), xv, a2);
            a3 = v16_fma(v16_load(w3 + k), xv, a3);
        }
        if (tail) {
            v16 xv = v16_load_n(x + k_full, tail);
            a0 = v16_fma(v16_load_n(w0 + k_full, tail), xv, a0);
            a1 = v16_fma(v16_load_n(w1 + k_full, tail), xv, a1);
            a2 = v16_fma(v16_load_n(w2 + k_full, tail), xv, a2);
            a3 = v16_fma(v16_load_n(w3 + k_full, tail), xv, a3);
        }
        y[n] = (bias ? bias[n] : 0.0f) + v16_sum(a0);
        y[n + 1] = (bias ? bias[n + 1] : 0.0f) + v16_sum(a1);
        y[n + 2] = (bias ? bias[n + 2] : 0.0f) + v16_sum(a2);
        y[n + 3] = (bias ? bias[n + 3] : 0.0f) + v16_sum(a3);
    }
    for (; n < N; n++) {
        const float *w = W + (size_t)n * K;
        v16 a = {0};
        for (int k = 0; k < k_full; k += VL) a = v16_fma(v16_load(w + k), v16_load(x + k), a);
        if (tail) a = v16_fma(v16_load_n(w + k_full, tail), v16_load_n(x + k_full, tail), a);
        y[n] = (bias ? bias[n] : 0.0f) + v16_sum(a);
    }
}

/* Threads to split a batch of B sequences over (G*H gate units each):
 * each thread runs whole sequences, so a step's recurrence product and gate
 * pass need no barrier; one thread for batches too small to be worth it. */
static int rnn_team(int B, int GH) {
    if ((size_t)B * GH < RNN_PARALLEL_MIN) return 1;
    int threads = omp_get_max_threads();
    return threads < B ? threads : B;
}

/* Where the sequences lie: sequence b runs len[b] steps, and its step t is
 * row off[b] + t of the compact arrays (the input projection and gates,
 * the cell, the backward's gradients), rows = the sum of the lengths;
 * without lengths every sequence runs T steps and off[b] = b T. */
typedef struct rnn_layout {
    int *len;
    size_t *off; /* [B + 1] */
    size_t rows;
    bool padded; /* some sequence stops before T: rows < B T */
} rnn_layout;

static rnn_layout layout(nn_ctx *ctx, int B, int T, const int *lengths) {
    rnn_layout L = {.len = nn_arena_alloc(ctx, (size_t)B * sizeof(int)),
                    .off = nn_arena_alloc(ctx, (size_t)(B + 1) * sizeof(size_t))};
    L.off[0] = 0;
    for (int b = 0; b < B; b++) {
        L.len[b] = lengths ? lengths[b] : T;
        L.off[b + 1] = L.off[b] + (size_t)L.len[b];
    }
    L.rows = L.off[B];
    L.padded = L.rows < (size_t)B * T;
    return L;
}

/* Thread k of n's sequences [*b0, *b1): contiguous, in thread order, about
 * an even share of the steps each (the split changes no bits: each row's
 * sums are its own). */
static void rnn_rows(const rnn_layout *L, int B, int k, int n, int *b0, int *b1) {
    int lo = 0, hi = 0;
    while (lo < B && L->off[lo] * (size_t)n < L->rows * (size_t)k) lo++;
    hi = lo;
    while (hi < B && L->off[hi] * (size_t)n < L->rows * (size_t)(k + 1)) hi++;
    *b0 = lo;
    *b1 = k == n - 1 ? B : hi;
}

/* x's rows [B*T, D] of the real steps, compact [rows, D] (from the arena's
 * scratch `to`). */
static void gather_rows(const rnn_layout *L, int B, int T, int D, const float *x, float *to) {
    for (int b = 0; b < B; b++)
        memcpy(to + L->off[b] * D, x + (size_t)b * T * D, (size_t)L->len[b] * D * sizeof(float));
}

static void check_args(const char *op, int G, const nn_tensor *x, const nn_tensor *w_ih, const nn_tensor *w_hh,
                       const nn_tensor *b_ih, const nn_tensor *b_hh, const nn_rnn_state *state,
                       const int *lengths) {
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
    for (int b = 0; lengths && b < x->shape[0]; b++)
        NN_CHECK(lengths[b] >= 1 && lengths[b] <= x->shape[1], "%s: lengths[%d] = %d is outside [1, %d] for input %s",
                 op, b, lengths[b], x->shape[1], nn_shape_str(x, sx, sizeof sx));
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

typedef struct rnn_saved {
    nn_ctx *ctx; /* whose scratch the backward works in */
    int G, B, T, D, H;
    rnn_layout L; /* rows below are compact: sequence b's step t at L.off[b] + t */
    float *gates; /* [rows,G*H] activated: LSTM i,f,g,o; GRU r,z,n; RNN unused */
    float *cell;  /* [rows,H] LSTM: c_t; GRU: hp_n = W_hn h_{t-1} + b_hn */
    float *tanh_cell; /* [rows,H] LSTM: tanh(c_t) */
    float *h0, *c0;   /* [B,H] the initial state (zeros without one) */
} rnn_saved;

/* What a thread's share of the forward needs. */
typedef struct rnn_fwd {
    int G, T, H;
    const rnn_layout *L;
    const float *w_t, *w_hh, *bx, *bias_hh, *h0, *c0;
    float *gates, *cell, *tanh_cell, *hp, *y;
    const float **a_rows; /* [B] a thread's slots from its b0: h_{t-1} of its live rows */
    float **c_rows;       /* [B] their hp rows */
    int *live;            /* [B] their sequences */
} rnn_fwd;

/* Sequences [b0, b1) through every step: the steps past a sequence's end
 * are skipped (their outputs are 0). */
static void forward_rows(const rnn_fwd *f, int b0, int b1) {
    const rnn_layout *L = f->L;
    int G = f->G, T = f->T, H = f->H, GH = G * H;
    const float **A = f->a_rows + b0;
    float **C = f->c_rows + b0;
    int *live = f->live + b0;
    for (int b = b0; b < b1; b++)
        memset(f->y + ((size_t)b * T + L->len[b]) * H, 0, (size_t)(T - L->len[b]) * H * sizeof(float));
    for (int t = 0; t < T; t++) {
        /* hp = h_{t-1} W_hh^T + b_hh for the sequences still running;
         * h_{t-1} is row b of h0, or y[b, t-1] */
        int m = 0;
        for (int b = b0; b < b1; b++)
            if (L->len[b] > t) {
                live[m] = b;
                A[m] = t ? f->y + ((size_t)b * T + t - 1) * H : f->h0 + (size_t)b * H;
                C[m] = f->hp + (size_t)b * GH;
                m++;
            }
        if (m == 0) break;
        if (f->w_t) rnn_gemm(m, GH, H, A, f->w_t, GH, C, f->bias_hh, false);
        else
            for (int i = 0; i < m; i++) rnn_matvec(GH, H, f->w_hh, A[i], f->bias_hh, C[i]);
        for (int i = 0; i < m; i++) {
            int b = live[i];
            size_t at = L->off[b] + t; /* compact row of step t of sequence b */
            float *g = f->gates + at * GH, *h = f->y + ((size_t)b * T + t) * H;
            const float *hpb = C[i];
            if (G == 4) {
                const float *c_prev = t ? f->cell + (at - 1) * H : f->c0 + (size_t)b * H;
                lstm_cell(H, f->bx, hpb, g, c_prev, f->cell + at * H, f->tanh_cell + at * H, h);
            } else if (G == 3) {
                gru_cell(H, f->bx, hpb, g, A[i], f->cell + at * H, h);
            } else {
#pragma omp simd
                for (int j = 0; j < H; j++) h[j] = tanh_fast(g[j] + f->bx[j] + hpb[j]);
            }
        }
    }
}

static nn_tensor *recurrent(nn_ctx *ctx, nn_op op, int G, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh,
                            nn_tensor *b_ih, nn_tensor *b_hh, nn_rnn_state *state, const int *lengths) {
    const char *name = nn_op_table[op].name;
    nn_tensor *in[] = {x, w_ih, w_hh, b_ih, b_hh};
    int n_in = b_ih ? 5 : 3;
    for (int k = 0; k < n_in; k++) nn_check_live(ctx, in[k], name);
    check_args(name, G, x, w_ih, w_hh, b_ih, b_hh, state, lengths);
    int B = x->shape[0], T = x->shape[1], D = x->shape[2], H = w_hh->shape[1], GH = G * H;
    size_t bh = (size_t)B * H;
    rnn_layout L = layout(ctx, B, T, lengths);
    size_t rows = L.rows;
    nn_tensor *y = nn_op_output(ctx, 3, (int[]){B, T, H}, in, n_in);
    bool keep = ctx->grad_enabled && y->grad;

    /* gates [rows,G*H] | cell, tanh_cell [rows,H] (as the kind needs) | h0, c0 [B,H] | hp [B,G*H]
     * | x's real rows [rows,D] (padded) */
    size_t n_cell = G == 4 ? 2 : G == 3 ? 1 : 0;
    size_t saved = rows * GH + n_cell * rows * H + 2 * bh;
    float *mem = keep ? nn_arena_alloc(ctx, saved * sizeof(float)) : NULL;
    float *work = nn_ctx_scratch(ctx, ((keep ? 0 : saved) + (size_t)B * GH + (L.padded ? rows * D : 0)) *
                                          sizeof(float));
    if (!keep) mem = work, work += saved;
    float *gates = mem, *cell = gates + rows * GH, *tanh_cell = cell + (n_cell > 0 ? rows * H : 0);
    float *h0 = tanh_cell + (n_cell > 1 ? rows * H : 0), *c0 = h0 + bh, *hp = work;
    if (state) {
        memcpy(h0, state->h, bh * sizeof(float));
        if (G == 4) memcpy(c0, state->c, bh * sizeof(float));
        else memset(c0, 0, bh * sizeof(float));
    } else {
        memset(h0, 0, 2 * bh * sizeof(float));
    }

    /* xp = x W_ih^T, every real step at once (b_ih is added in the gate
     * pass); a single row (generation) by rnn_matvec, which reads W_ih as
     * it lies */
    const float *xr = x->data;
    if (L.padded) {
        float *xc = hp + (size_t)B * GH;
        gather_rows(&L, B, T, D, x->data, xc);
        xr = xc;
    }
    if (rows == 1)
        rnn_matvec(GH, D, w_ih->data, xr, NULL, gates);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, GH, D, 1.0f, xr, D, w_ih->data, D, 0.0f,
                    gates, GH);
    /* W_hh^T [H, G*H] for rnn_gemm; a single sequence (generation, one
     * step a call) goes through rnn_matvec on W_hh as it is instead */
    rnn_fwd f = {.G = G, .T = T, .H = H, .L = &L, .w_t = B > 1 ? transpose(ctx, w_hh->data, GH, H) : NULL,
                 .w_hh = w_hh->data, .bx = b_ih ? b_ih->data : zeros(ctx, GH), .bias_hh = b_hh ? b_hh->data : NULL,
                 .h0 = h0, .c0 = c0, .gates = gates, .cell = cell, .tanh_cell = tanh_cell, .hp = hp, .y = y->data,
                 .a_rows = nn_arena_alloc(ctx, (size_t)B * sizeof(float *)),
                 .c_rows = nn_arena_alloc(ctx, (size_t)B * sizeof(float *)),
                 .live = nn_arena_alloc(ctx, (size_t)B * sizeof(int))};

    /* The sequences of the batch are independent: each thread runs its
     * share through every step, with no barrier between steps. A team of
     * one runs here (an OpenMP region costs a system call even then). */
    int team = rnn_team(B, GH);
    if (team == 1) {
        forward_rows(&f, 0, B);
    } else {
#pragma omp parallel num_threads(team)
        {
            int b0, b1;
            rnn_rows(&L, B, omp_get_thread_num(), omp_get_num_threads(), &b0, &b1);
            forward_rows(&f, b0, b1);
        }
    }
    if (state)
        for (int b = 0; b < B; b++) {
            int last = L.len[b] - 1;
            memcpy(state->h + (size_t)b * H, y->data + ((size_t)b * T + last) * H, (size_t)H * sizeof(float));
            if (G == 4) memcpy(state->c + (size_t)b * H, cell + (L.off[b] + last) * H, (size_t)H * sizeof(float));
        }

    nn_node *node = nn_record(ctx, op, y, in, n_in);
    if (node && keep) {
        rnn_saved *sv = nn_arena_alloc(ctx, sizeof *sv);
        *sv = (rnn_saved){.ctx = ctx, .G = G, .B = B, .T = T, .D = D, .H = H, .L = L, .gates = gates, .cell = cell,
                          .tanh_cell = tanh_cell, .h0 = h0, .c0 = c0};
        node->saved = sv;
    }
    return y;
}

nn_tensor *nn_rnn(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                  nn_rnn_state *state) {
    return recurrent(ctx, NN_OP_RNN, 1, x, w_ih, w_hh, b_ih, b_hh, state, NULL);
}

nn_tensor *nn_lstm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                   nn_rnn_state *state) {
    return recurrent(ctx, NN_OP_LSTM, 4, x, w_ih, w_hh, b_ih, b_hh, state, NULL);
}

nn_tensor *nn_gru(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                  nn_rnn_state *state) {
    return recurrent(ctx, NN_OP_GRU, 3, x, w_ih, w_hh, b_ih, b_hh, state, NULL);
}

nn_tensor *nn_recurrent_padded(nn_ctx *ctx, int gates, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh,
                               nn_tensor *b_ih, nn_tensor *b_hh, nn_rnn_state *state, const int *lengths) {
    NN_CHECK(gates == 1 || gates == 3 || gates == 4,
             "nn_recurrent_padded: %d gates (1: tanh RNN, 3: GRU, 4: LSTM)", gates);
    nn_op op = gates == 4 ? NN_OP_LSTM : gates == 3 ? NN_OP_GRU : NN_OP_RNN;
    return recurrent(ctx, op, gates, x, w_ih, w_hh, b_ih, b_hh, state, lengths);
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

/* The biases' gradients in one pass: db_ih += the column sums of dxp
 * [rows, G*H], db_hh += those of dhp, which is dxp but in the GRU's last H
 * columns. sum [G*H (+ H)] holds dxp's sums, then the GRU's dhp_n's; each
 * column's rows are added in order from 0, so the bits do not depend on
 * the threads, which share the columns in blocks only when there is much
 * to add (names GRU: one thread, no OpenMP region). */
#define RNN_BIAS_PARALLEL_MIN (1 << 20)

static void bias_cols(const float *dxp, const float *dhp, size_t rows, int G, int H, int j0, int j1, float *sum) {
    int GH = G * H, a1 = j1 < GH ? j1 : GH, c0 = j0 > GH ? j0 : GH;
    for (int j = j0; j < j1; j++) sum[j] = 0.0f;
    for (size_t r = 0; r < rows; r++) {
        const float *dx = dxp + r * GH, *dh = dhp + r * GH + 2 * H - GH;
        for (int j = j0; j < a1; j++) sum[j] += dx[j];
        for (int j = c0; j < j1; j++) sum[j] += dh[j];
    }
}

static void bias_grads(const float *dxp, const float *dhp, size_t rows, int G, int H, float *sum, float *db_ih,
                       float *db_hh) {
    int GH = G * H, N = GH + (G == 3 ? H : 0);
    if (rows * (size_t)N >= RNN_BIAS_PARALLEL_MIN) {
#pragma omp parallel for
        for (int j0 = 0; j0 < N; j0 += RNN_COLS) bias_cols(dxp, dhp, rows, G, H, j0, j0 + RNN_COLS < N ? j0 + RNN_COLS : N, sum);
    } else {
        for (int j0 = 0; j0 < N; j0 += RNN_COLS) bias_cols(dxp, dhp, rows, G, H, j0, j0 + RNN_COLS < N ? j0 + RNN_COLS : N, sum);
    }
    for (int j = 0; db_ih && j < GH; j++) db_ih[j] += sum[j];
    for (int j = 0; db_hh && j < GH; j++) db_hh[j] += G == 3 && j >= 2 * H ? sum[j + H] : sum[j];
}

/* What a thread's share of the backward needs. */
typedef struct rnn_bwd {
    const rnn_saved *s;
    const float *w_hh, *y, *dy, *h_prev;
    float *dxp, *dhp, *dh_next, *dc_next;
    const float **a_rows;
    float **c_rows;
    int *live;
} rnn_bwd;

/* Sequences [b0, b1) back through their steps, from the last real one. */
static void backward_rows(const rnn_bwd *k, int b0, int b1) {
    const rnn_saved *s = k->s;
    const rnn_layout *L = &s->L;
    int G = s->G, T = s->T, H = s->H, GH = G * H;
    const float **A = k->a_rows + b0;
    float **C = k->c_rows + b0;
    int *live = k->live + b0;
    for (int t = T - 1; t >= 0; t--) {
        int m = 0;
        for (int b = b0; b < b1; b++)
            if (L->len[b] > t) live[m++] = b;
        for (int i = 0; i < m; i++) {
            int b = live[i];
            size_t at = L->off[b] + t;
            const float *g = s->gates + at * GH, *dy = k->dy + ((size_t)b * T + t) * H;
            float *dhn = k->dh_next + (size_t)b * H;
            if (G == 4) {
                const float *c_prev = t ? s->cell + (at - 1) * H : s->c0 + (size_t)b * H;
                lstm_cell_backward(H, g, s->tanh_cell + at * H, c_prev, dy, dhn, k->dc_next + (size_t)b * H,
                                   k->dxp + at * GH);
            } else if (G == 3) {
                gru_cell_backward(H, g, s->cell + at * H, k->h_prev + at * H, dy, dhn, k->dxp + at * GH,
                                  k->dhp + at * GH);
            } else { /* h = tanh(a): da = dh (1 - h^2) */
                const float *h = k->y + ((size_t)b * T + t) * H;
                float *da = k->dxp + at * GH;
                for (int j = 0; j < H; j++) da[j] = (dy[j] + dhn[j]) * (1.0f - h[j] * h[j]);
            }
            A[i] = k->dhp + at * GH;
            C[i] = dhn;
        }
        /* dh_{t-1} = dhp_t W_hh (added to the GRU's direct term) */
        if (t > 0 && m > 0) rnn_gemm(m, H, GH, A, k->w_hh, H, C, NULL, G == 3);
    }
}

void nn_recurrent_backward(nn_node *n) {
    const rnn_saved *s = n->saved;
    const rnn_layout *L = &s->L;
    nn_tensor *x = n->in[0], *w_ih = n->in[1], *w_hh = n->in[2], *y = n->out;
    nn_tensor *b_ih = n->n_in > 3 ? n->in[3] : NULL, *b_hh = n->n_in > 3 ? n->in[4] : NULL;
    int G = s->G, B = s->B, T = s->T, D = s->D, H = s->H, GH = G * H;
    size_t rows = L->rows, bh = (size_t)B * H;

    /* dxp [rows,G*H] | dhp (GRU) | h_prev [rows,H] | dh_next, dc_next [B,H] | x's real rows and
     * their gradient [rows,D] (padded) | the bias sums [G*H + H] | row pointers */
    size_t floats = rows * GH * (G == 3 ? 2 : 1) + rows * H + 2 * bh + (L->padded ? 2 * rows * D : 0) + GH + H;
    size_t ptr_bytes = 2 * (size_t)B * sizeof(float *) + (size_t)B * sizeof(int);
    float *dxp = nn_ctx_scratch(s->ctx, floats * sizeof(float) + ptr_bytes + 64);
    float *dhp = G == 3 ? dxp + rows * GH : dxp;
    float *h_prev = dhp + rows * GH, *dh_next = h_prev + rows * H, *dc_next = dh_next + bh;
    float *xc = dc_next + bh, *dxc = xc + (L->padded ? rows * D : 0), *bias_sum = dxc + (L->padded ? rows * D : 0);
    char *ptrs = (char *)(dxp + floats);
    ptrs += (64 - (uintptr_t)ptrs % 64) % 64;
    memset(dh_next, 0, 2 * bh * sizeof(float));
    /* h_prev[b, t] = h_{t-1}: h0 first, then the output one step behind */
    for (int b = 0; b < B; b++) {
        float *hp_b = h_prev + L->off[b] * H;
        memcpy(hp_b, s->h0 + (size_t)b * H, (size_t)H * sizeof(float));
        memcpy(hp_b + H, y->data + (size_t)b * T * H, (size_t)(L->len[b] - 1) * H * sizeof(float));
    }
    rnn_bwd k = {.s = s, .w_hh = w_hh->data, .y = y->data, .dy = y->grad, .h_prev = h_prev, .dxp = dxp,
                 .dhp = dhp, .dh_next = dh_next, .dc_next = dc_next, .a_rows = (const float **)ptrs,
                 .c_rows = (float **)(ptrs + (size_t)B * sizeof(float *)),
                 .live = (int *)(ptrs + 2 * (size_t)B * sizeof(float *))};

    /* Each thread carries its sequences back through every step, as forward. */
    int team = rnn_team(B, GH);
    if (team == 1) {
        backward_rows(&k, 0, B);
    } else {
#pragma omp parallel num_threads(team)
        {
            int b0, b1;
            rnn_rows(L, B, omp_get_thread_num(), omp_get_num_threads(), &b0, &b1);
            backward_rows(&k, b0, b1);
        }
    }

    /* The products over every real step at once (the steps past a
     * sequence's end have no gradient and are not in the rows) */
    const float *xr = x->data;
    if (L->padded && (w_ih->grad || x->grad)) {
        gather_rows(L, B, T, D, x->data, xc);
        xr = xc;
    }
    if (w_hh->grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, H, (int)rows, 1.0f, dhp, GH, h_prev, H, 1.0f,
                    w_hh->grad, H);
    if (w_ih->grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, GH, D, (int)rows, 1.0f, dxp, GH, xr, D, 1.0f,
                    w_ih->grad, D);
    if (x->grad && !L->padded) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, D, GH, 1.0f, dxp, GH, w_ih->data, D, 1.0f,
                    x->grad, D);
    } else if (x->grad) { /* into the real steps' rows of x->grad */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, D, GH, 1.0f, dxp, GH, w_ih->data, D, 0.0f,
                    dxc, D);
        for (int b = 0; b < B; b++) {
            float *dx = x->grad + (size_t)b * T * D;
            const float *d = dxc + L->off[b] * D;
            for (size_t j = 0; j < (size_t)L->len[b] * D; j++) dx[j] += d[j];
        }
    }
    float *db_ih = b_ih ? b_ih->grad : NULL, *db_hh = b_hh ? b_hh->grad : NULL;
    if (db_ih || db_hh) bias_grads(dxp, dhp, rows, G, H, bias_sum, db_ih, db_hh);
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
