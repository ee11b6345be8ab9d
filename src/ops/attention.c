/* Multi-head self-attention, one fused op: the scaled dot products, the
 * mask, the softmax and the weighted sum of the values, and the backward
 * through all of them.
 *
 * Shapes: x [B, T, 3D] is the QKV projection's output, q | k | v along the
 * last dimension, each D = H heads of hd = D / H; head h reads columns
 * h*hd .. (h+1)*hd - 1 of each (as torch.nn.MultiheadAttention and nanoGPT
 * split them). y [B, T, D] holds the heads' outputs side by side, head h in
 * the same columns, for the output projection to mix.
 *
 * Forward, per sequence b and head h (Q, K, V [T, hd], s = 1 / sqrt(hd)):
 *   S = s Q K^T                        [T, T]
 *   S[i, j] = -inf where key j is masked: j > i (causal), j >= len_b (padding)
 *   P = softmax(S) by rows             [T, T]
 *   Y = P V                            [T, hd]
 * The forward makes S and P one row at a time (the row stays in L1) and
 * keeps of each row only m_i + log sum_j e^(S_ij - m_i), its log-sum-exp
 * ([B, H, T] in all): the backward recomputes P from Q, K and it, so no
 * [T, T] block goes out to memory between the two.
 *
 * Backward, with dY [T, hd]:
 *   P  = exp(s Q K^T - lse)            [T, T]    recomputed, row by row
 *   dP = dY V^T                        [T, T]
 *   dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik)   (the softmax's Jacobian; masked
 *                                              entries have P = 0, so dS = 0)
 *   dQ = s dS K                        [T, hd]   row by row, as dS's rows are made
 *   dK = s dS^T Q,  dV = P^T dY        [T, hd]   from the P and dS blocks, kept
 *                                                in the thread's scratch (cache)
 *
 * Each (b, h) is one task on an OpenMP thread, with its head's Q, K^T, V
 * (and in the backward Q^T, K, V^T, dY^T) copied into the thread's scratch,
 * where the products run along contiguous padded rows with their sums in
 * registers; no two tasks write one float of y or dx, and each sums in a
 * fixed order, so the results do not depend on the thread count. Query rows
 * past a sequence's length still attend (to its real keys), as PyTorch's
 * key_padding_mask has them. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops/fastmath.h"
#include "ops/ops.h"
#include "ops/vec16.h"

typedef struct attention_saved {
    nn_ctx *ctx; /* whose scratch the backward works in */
    int heads;
    bool causal;
    int *lengths; /* [B], each in [1, T] */
    float *lse;   /* [B, H, T] each score row's log-sum-exp */
} attention_saved;

/* Floats rounded up to whole vectors: the scratch's rows are padded so that
 * every 16-float load of a row stays inside it. */
static int round16(int n) { return (n + VL - 1) / VL * VL; }

/* The keys query i sees: j < keys_seen(i). */
static inline int keys_seen(int i, int len, bool causal) { return causal && i + 1 < len ? i + 1 : len; }

/* ---- the two products, a few rows at a time ----
 * Both keep their sums in registers over the whole reduction, one chain of
 * FMAs per output vector, and add in a fixed order (d or j ascending): an
 * entry's bits depend only on its operands, not on the rows beside it. Up to
 * ROWS rows go at once, so that each vector of the other operand, loaded
 * once, serves them all, and ROWS x 4 (or x 2) independent chains keep the
 * FMA units busy where one row's few chains waited on each other. */
#define ROWS 4

/* out[r][0..n) = sum_{d < m} (c A[r][d]) B[d][0..n) for r < R <= ROWS: A's
 * rows lda apart, B's ldb (a multiple of 16), out's ldo. Score rows (A = Q,
 * B = K^T, c = 1 / sqrt(hd)) and dP's rows (A = dY, B = V^T, c = 1). Writes
 * out up to n rounded up to 16. R and NV (vectors of out, at most 4) are
 * constants where rows_times calls it, so that the sums stay in registers. */
static inline __attribute__((always_inline)) void rows_times_fixed(const float *restrict A, int lda, const int R,
                                                                   int m, float c, const float *restrict B,
                                                                   int ldb, int j0, const int NV,
                                                                   float *restrict out, int ldo) {
    v16 acc[ROWS][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (v16){0};
    for (int d = 0; d < m; d++) {
        v16 bv[4];
        for (int v = 0; v < NV; v++) bv[v] = v16_load(B + (size_t)d * ldb + j0 + v * VL);
        for (int r = 0; r < R; r++) {
            v16 ar = (v16){0} + c * A[(size_t)r * lda + d];
            for (int v = 0; v < NV; v++) acc[r][v] = v16_fma(ar, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) v16_store(out + (size_t)r * ldo + j0 + v * VL, acc[r][v]);
}

static void rows_times(const float *restrict A, int lda, int R, int m, float c, const float *restrict B, int ldb,
                       int n, float *restrict out, int ldo) {
#define ROWS_TIMES(r, nv) rows_times_fixed(A, lda, r, m, c, B, ldb, j0, nv, out, ldo)
#define ROWS_TIMES_R(nv)                                                                                           \
    switch (R) {                                                                                                   \
    case 1: ROWS_TIMES(1, nv); break;                                                                              \
    case 2: ROWS_TIMES(2, nv); break;                                                                              \
    case 3: ROWS_TIMES(3, nv); break;                                                                              \
    default: ROWS_TIMES(4, nv); break;                                                                             \
    }
    for (int j0 = 0; j0 < n; j0 += 4 * VL) {
        int nv = (n - j0 + VL - 1) / VL;
        switch (nv) {
        case 1: ROWS_TIMES_R(1); break;
        case 2: ROWS_TIMES_R(2); break;
        case 3: ROWS_TIMES_R(3); break;
        default: ROWS_TIMES_R(4); break;
        }
    }
#undef ROWS_TIMES_R
#undef ROWS_TIMES
}

/* out[r][0..m) (+)= c[r] sum_{j < n} W[r wr + j wj] M[j][0..m) for r < R <=
 * ROWS: M's rows ldm apart (a multiple of 16: a row's padding is read, and
 * must be finite), out's ldo; c NULL for 1; with add, out's values plus the
 * sums. The heads' outputs (W = P's rows, M = V, c = 1 / the softmax's
 * sums), dQ's rows (W = dS's rows, M = K), and dK's and dV's rows (W = dS
 * and P read down their columns, wr = 1 and wj = their row length; M = Q,
 * dY). Writes exactly m floats of each row: out may be a tensor's. R and
 * NV (vectors of out per pass, at most 2) are constants, as above. */
static inline __attribute__((always_inline)) void weights_times_fixed(const float *restrict W, int wr, int wj,
                                                                      const int R, int n, const float *restrict M,
                                                                      int ldm, int m, int d0, const int NV,
                                                                      const float *c, bool add, float *out,
                                                                      int ldo) {
    v16 acc[ROWS][2];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (v16){0};
    for (int j = 0; j < n; j++) {
        v16 mv[2];
        for (int v = 0; v < NV; v++) mv[v] = v16_load(M + (size_t)j * ldm + d0 + v * VL);
        for (int r = 0; r < R; r++) {
            v16 w = (v16){0} + W[(size_t)r * wr + (size_t)j * wj];
            for (int v = 0; v < NV; v++) acc[r][v] = v16_fma(w, mv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) {
            int at = d0 + v * VL, w = m - at < VL ? m - at : VL;
            float *o = out + (size_t)r * ldo + at;
            v16 sum = c ? acc[r][v] * c[r] : acc[r][v];
            v16_store_n(o, add ? v16_load_n(o, w) + sum : sum, w);
        }
}

static void weights_times(const float *restrict W, int wr, int wj, int R, int n, const float *restrict M, int ldm,
                          int m, const float *c, bool add, float *out, int ldo) {
#define WEIGHTS_TIMES(r, nv) weights_times_fixed(W, wr, wj, r, n, M, ldm, m, d0, nv, c, add, out, ldo)
#define WEIGHTS_TIMES_R(nv)                                                                                        \
    switch (R) {                                                                                                   \
    case 1: WEIGHTS_TIMES(1, nv); break;                                                                           \
    case 2: WEIGHTS_TIMES(2, nv); break;                                                                           \
    case 3: WEIGHTS_TIMES(3, nv); break;                                                                           \
    default: WEIGHTS_TIMES(4, nv); break;                                                                          \
    }
    for (int d0 = 0; d0 < m; d0 += 2 * VL) {
        if (m - d0 > VL) {
            WEIGHTS_TIMES_R(2);
        } else {
            WEIGHTS_TIMES_R(1);
        }
    }
#undef WEIGHTS_TIMES_R
#undef WEIGHTS_TIMES
}

/* A score row's max, sum and dot product, n >= 1 floats, sixteen lanes at a
 * time and the tail one by one, in a fixed order. Written out rather than as
 * "omp simd reduction": GCC's reduction goes through a stack array of
 * lanes stored one float at a time and loaded as a vector, a load that
 * cannot be forwarded from those stores and stalled every row. */
static inline float row_max(const float *s, int n) {
    v16 m = (v16){0} + s[0];
    int j = 0;
    for (; j + VL <= n; j += VL) {
        v16 v = v16_load(s + j);
        m = v16_select(v > m, v, m);
    }
    float r = m[0];
    for (int l = 1; l < VL; l++) r = m[l] > r ? m[l] : r;
    for (; j < n; j++) r = s[j] > r ? s[j] : r;
    return r;
}

static inline float row_dot(const float *a, const float *b, int n) {
    v16 acc = {0};
    int j = 0;
    for (; j + VL <= n; j += VL) acc = v16_fma(v16_load(a + j), v16_load(b + j), acc);
    if (j < n) acc = v16_fma(v16_load_n(a + j, n - j), v16_load_n(b + j, n - j), acc);
    return v16_sum(acc);
}

static inline float row_sum(const float *s, int n) {
    v16 acc = {0};
    int j = 0;
    for (; j + VL <= n; j += VL) acc += v16_load(s + j);
    if (j < n) acc += v16_load_n(s + j, n - j);
    return v16_sum(acc);
}

/* Work (multiply-adds) under which one thread does the whole op. */
#define ATTENTION_PARALLEL_MIN 65536

static int task_threads(long work) { return work >= ATTENTION_PARALLEL_MIN ? omp_get_max_threads() : 1; }

/* A thread's scratch: blocks that hold [T, hdp] or [hd, Tp] floats, and
 * rows that hold Tp or hdp (hdp = hd and Tp = T rounded up to whole vectors). */
typedef struct head_scratch {
    int T, hd, Tp, hdp;
    size_t block, row, floats; /* floats per block, per row, per thread */
} head_scratch;

static head_scratch scratch_layout(int T, int hd, int blocks, int rows) {
    head_scratch h = {.T = T, .hd = hd, .Tp = round16(T), .hdp = round16(hd)};
    h.block = (size_t)h.Tp * h.hdp;
    h.row = (size_t)(h.Tp > h.hdp ? h.Tp : h.hdp);
    h.floats = (size_t)blocks * h.block + (size_t)rows * h.row;
    return h;
}

/* Copies the head's queries (rows 0..T) into Q [T, hdp] and, of its L real
 * keys, K [L, hdp] (if K), K^T [hd, Tp], V [L, hdp] (if V) and V^T [hd, Tp] (if Vt). */
static void gather_head(const head_scratch *hs, const float *xb, int D, int h, int L, float *Q, float *K, float *Kt,
                        float *V, float *Vt) {
    int T = hs->T, hd = hs->hd, hdp = hs->hdp, Tp = hs->Tp;
    size_t row = 3 * (size_t)D;
    for (int t = 0; t < T; t++) memcpy(Q + (size_t)t * hdp, xb + t * row + h * hd, (size_t)hd * sizeof(float));
    for (int t = 0; t < L; t++) {
        const float *k = xb + t * row + D + h * hd, *v = k + D;
        if (K) memcpy(K + (size_t)t * hdp, k, (size_t)hd * sizeof(float));
        if (V) memcpy(V + (size_t)t * hdp, v, (size_t)hd * sizeof(float));
        for (int d = 0; d < hd; d++) {
            Kt[(size_t)d * Tp + t] = k[d];
            if (Vt) Vt[(size_t)d * Tp + t] = v[d];
        }
    }
}

nn_tensor *nn_attention(nn_ctx *ctx, nn_tensor *x, int heads, bool causal, const int *lengths) {
    char sx[64];
    nn_check_live(ctx, x, "attention");
    NN_CHECK(x->ndim == 3 && x->shape[2] % 3 == 0, "attention: input %s must be [B, T, 3D] (q, k, v)",
             nn_shape_str(x, sx, sizeof sx));
    int B = x->shape[0], T = x->shape[1], D = x->shape[2] / 3;
    NN_CHECK(heads >= 1 && D % heads == 0, "attention: %d features do not split into %d heads", D, heads);
    int H = heads, hd = D / H;
    int *len = nn_arena_alloc(ctx, (size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) {
        NN_CHECK(!lengths || (lengths[b] >= 1 && lengths[b] <= T),
                 "attention: lengths[%d] = %d is outside [1, %d] for input %s", b, lengths ? lengths[b] : 0, T,
                 nn_shape_str(x, sx, sizeof sx));
        len[b] = lengths ? lengths[b] : T;
    }
    nn_tensor *y = nn_op_output(ctx, 3, (int[]){B, T, D}, &x, 1);
    float *lse = nn_arena_alloc(ctx, (size_t)B * H * T * sizeof(float));
    float scale = 1.0f / sqrtf((float)hd);
    int threads = task_threads((long)B * T * T * D);
    /* Q [T, hdp], K^T [hd, Tp], V [T, hdp]; ROWS score rows */
    head_scratch hs = scratch_layout(T, hd, 3, ROWS);
    float *scratch = nn_ctx_scratch(ctx, (size_t)threads * hs.floats * sizeof(float));

#pragma omp parallel num_threads(threads)
    {
        float *Q = scratch + (size_t)omp_get_thread_num() * hs.floats;
        float *Kt = Q + hs.block, *V = Kt + hs.block, *S = V + hs.block;
        memset(Q, 0, hs.floats * sizeof(float)); /* the padding read past each row: zeros, not garbage */
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H, L = len[b];
            gather_head(&hs, x->data + (size_t)b * T * 3 * D, D, h, L, Q, NULL, Kt, V, NULL);
            for (int i0 = 0; i0 < T; i0 += ROWS) {
                int R = T - i0 < ROWS ? T - i0 : ROWS, widest = keys_seen(i0 + R - 1, L, causal);
                float inv[ROWS];
                rows_times(Q + (size_t)i0 * hs.hdp, hs.hdp, R, hd, scale, Kt, hs.Tp, widest, S, hs.Tp);
                for (int r = 0; r < R; r++) {
                    int n = keys_seen(i0 + r, L, causal);
                    float *s = S + (size_t)r * hs.Tp;
                    /* the exponentials sixteen at a time (one by one, they
                     * were a fifth of the forward's time) */
                    float m = row_max(s, n);
#pragma omp simd
                    for (int j = 0; j < n; j++) s[j] = nn_expf(s[j] - m);
                    for (int j = n; j < widest; j++) s[j] = 0.0f; /* masked */
                    float sum = row_sum(s, n);
                    inv[r] = 1.0f / sum; /* applied once, to the weighted sum */
                    lse[(size_t)bh * T + i0 + r] = m + logf(sum);
                }
                /* y_i = sum_j p_j v_j, head h's columns of rows i0 .. i0 + R - 1 */
                float *yi = y->data + ((size_t)b * T + i0) * D + h * hd;
                weights_times(S, hs.Tp, 1, R, widest, V, hs.hdp, hd, inv, false, yi, D);
            }
        }
    }
    nn_node *node = nn_record(ctx, NN_OP_ATTENTION, y, &x, 1);
    if (node) {
        attention_saved *sv = nn_arena_alloc(ctx, sizeof *sv);
        *sv = (attention_saved){.ctx = ctx, .heads = H, .causal = causal, .lengths = len, .lse = lse};
        node->saved = sv;
    }
    return y;
}

/* The backward keeps the head's P and dS blocks [T, Lp] (zeros where masked)
 * in the thread's scratch: ROWS rows of each at a time, and of dQ as soon
 * as they are made; then dK = s dS^T Q and dV = P^T dY, ROWS keys at a time,
 * reading dS and P down their columns. */
void nn_attention_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *y = n->out;
    if (!x->grad) return;
    const attention_saved *sv = n->saved;
    int B = x->shape[0], T = x->shape[1], D = x->shape[2] / 3, H = sv->heads, hd = D / H;
    float scale = 1.0f / sqrtf((float)hd);
    int threads = task_threads((long)B * T * T * D);
    /* dx unwritten: each of its floats is stored once (the padding's keys
     * and values, which get nothing, as zeros) instead of added to zeros */
    bool add = !nn_node_fresh(n, 0);
    /* Q, K, dY [T, hdp]; K^T, V^T [hd, Tp]; P, dS [T, Tp] */
    head_scratch hs = scratch_layout(T, hd, 5, 0);
    size_t square = (size_t)T * hs.Tp;
    size_t per_thread = hs.floats + 2 * square;
    float *scratch = nn_ctx_scratch(sv->ctx, (size_t)threads * per_thread * sizeof(float));
    size_t row = 3 * (size_t)D;

#pragma omp parallel num_threads(threads)
    {
        float *Q = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *K = Q + hs.block, *dY = K + hs.block, *Kt = dY + hs.block, *Vt = Kt + hs.block;
        float *P = Vt + hs.block, *dS = P + square;
        memset(Q, 0, per_thread * sizeof(float));
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H, L = sv->lengths[b], Lp = round16(L);
            const float *xb = x->data + (size_t)b * T * row;
            const float *dyb = y->grad + (size_t)b * T * D + h * hd;
            float *dxb = x->grad + (size_t)b * T * row;
            gather_head(&hs, xb, D, h, L, Q, K, Kt, NULL, Vt);
            for (int i = 0; i < T; i++) memcpy(dY + (size_t)i * hs.hdp, dyb + (size_t)i * D, (size_t)hd * sizeof(float));
            for (int i0 = 0; i0 < T; i0 += ROWS) {
                int R = T - i0 < ROWS ? T - i0 : ROWS, widest = keys_seen(i0 + R - 1, L, sv->causal);
                float *p0 = P + (size_t)i0 * hs.Tp, *ds0 = dS + (size_t)i0 * hs.Tp;
                /* P's rows again, from the scores and the saved log-sum-exp
                 * (the forward's bits: the same products), and dP's: dY V^T */
                rows_times(Q + (size_t)i0 * hs.hdp, hs.hdp, R, hd, scale, Kt, hs.Tp, widest, p0, hs.Tp);
                rows_times(dY + (size_t)i0 * hs.hdp, hs.hdp, R, hd, 1.0f, Vt, hs.Tp, widest, ds0, hs.Tp);
                for (int r = 0; r < R; r++) {
                    int i = i0 + r, nk = keys_seen(i, L, sv->causal);
                    float *p = p0 + (size_t)r * hs.Tp, *ds = ds0 + (size_t)r * hs.Tp;
                    float l = sv->lse[(size_t)bh * T + i];
#pragma omp simd
                    for (int j = 0; j < nk; j++) p[j] = nn_expf(p[j] - l);
                    float pdp = row_dot(p, ds, nk);
                    /* dS's row, with the scale folded in: s dS */
#pragma omp simd
                    for (int j = 0; j < nk; j++) ds[j] = scale * p[j] * (ds[j] - pdp);
                    for (int j = nk; j < Lp; j++) p[j] = ds[j] = 0.0f; /* masked: nothing flows */
                }
                /* dQ's rows: s dS K */
                weights_times(ds0, hs.Tp, 1, R, widest, K, hs.hdp, hd, NULL, add, dxb + i0 * row + h * hd, (int)row);
            }
            /* dK's rows j0 .. j0 + R - 1: sum_i s dS[i, j] Q[i, :], and dV's:
             * sum_i P[i, j] dY[i, :]; causal, the rows i < j0 are zeros there */
            for (int j0 = 0; j0 < L; j0 += ROWS) {
                int R = L - j0 < ROWS ? L - j0 : ROWS, i0 = sv->causal ? j0 : 0;
                float *dk = dxb + (size_t)j0 * row + D + h * hd;
                weights_times(dS + (size_t)i0 * hs.Tp + j0, 1, hs.Tp, R, T - i0, Q + (size_t)i0 * hs.hdp, hs.hdp, hd,
                              NULL, add, dk, (int)row);
                weights_times(P + (size_t)i0 * hs.Tp + j0, 1, hs.Tp, R, T - i0, dY + (size_t)i0 * hs.hdp, hs.hdp, hd,
                              NULL, add, dk + D, (int)row);
            }
            if (!add) /* the padding's keys and values get no gradient: zeros */
                for (int j = L; j < T; j++) {
                    memset(dxb + (size_t)j * row + D + h * hd, 0, (size_t)hd * sizeof(float));
                    memset(dxb + (size_t)j * row + 2 * D + h * hd, 0, (size_t)hd * sizeof(float));
                }
        }
    }
}

/* ---- with a KV cache (generation) ----
 * A language model generating one token at a time needs the attention of the
 * new position only: its query against the keys and values of every position
 * so far, which do not change once made (causal: position j never sees what
 * comes after it). So they are kept, [B, capacity, D] each (a row per
 * position, the heads side by side as in x), and for the new row at
 * position p = past + t, per head (q, k_j, v_j [hd]):
 *   s_j = q . k_j / sqrt(hd)           j = 0..p (its own key included)
 *   y   = sum_j softmax(s)_j v_j       [hd]
 * the forward above's row p without the other rows: O(p hd) per head
 * instead of recomputing the prefix, O(p^2 hd). Nothing is recorded (no
 * backward: generation does not learn). */

/* Head h of one sequence: xb its T new rows of q | k | v (3D apart), K and V
 * its cache (D apart) already holding the new keys and values, yb its T
 * output rows (D apart). s: room for past + T scores, q: for hd floats. */
static void cached_head(const float *xb, int T, int D, int h, int hd, const float *K, const float *V, int past,
                        float *s, float *q, float *yb) {
    float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < T; t++) {
        int n = past + t + 1;
        for (int d = 0; d < hd; d++) q[d] = xb[(size_t)t * 3 * D + h * hd + d] * scale;
        float m = -INFINITY;
        for (int j = 0; j < n; j++) {
            s[j] = row_dot(q, K + (size_t)j * D + h * hd, hd);
            m = s[j] > m ? s[j] : m;
        }
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            s[j] = nn_expf(s[j] - m);
            sum += s[j];
        }
        float inv = 1.0f / sum, *y = yb + (size_t)t * D + h * hd;
        for (int d0 = 0; d0 < hd; d0 += VL) {
            int w = hd - d0 < VL ? hd - d0 : VL;
            v16 acc = {0};
            for (int j = 0; j < n; j++)
                acc = v16_fma((v16){0} + s[j], v16_load_n(V + (size_t)j * D + h * hd + d0, w), acc);
            v16_store_n(y + d0, acc * inv, w);
        }
    }
}

nn_tensor *nn_attention_cached(nn_ctx *ctx, nn_tensor *x, int heads, float *keys, float *values, int capacity,
                               int past) {
    char sx[64];
    nn_check_live(ctx, x, "attention_cached");
    NN_CHECK(!nn_grad_enabled(ctx), "attention_cached: runs without gradients (nn_set_grad_enabled(ctx, false))");
    NN_CHECK(x->ndim == 3 && x->shape[2] % 3 == 0, "attention_cached: input %s must be [B, T, 3D] (q, k, v)",
             nn_shape_str(x, sx, sizeof sx));
    int B = x->shape[0], T = x->shape[1], D = x->shape[2] / 3;
    NN_CHECK(heads >= 1 && D % heads == 0, "attention_cached: %d features do not split into %d heads", D, heads);
    NN_CHECK(past >= 0 && past + T <= capacity, "attention_cached: %d positions cached and %d new, but room for %d",
             past, T, capacity);
    int H = heads, hd = D / H;
    /* The new positions' keys and values join the cache first: each new
     * query sees its own key (and the earlier new ones') there. */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *row = x->data + ((size_t)b * T + t) * 3 * D;
            size_t at = ((size_t)b * capacity + past + t) * D;
            memcpy(keys + at, row + D, (size_t)D * sizeof(float));
            memcpy(values + at, row + 2 * D, (size_t)D * sizeof(float));
        }
    nn_tensor *y = nn_op_output(ctx, 3, (int[]){B, T, D}, &x, 1);
    int threads = task_threads((long)B * T * (past + T) * D);
    size_t per_thread = (size_t)round16(past + T) + (size_t)round16(hd);
    float *scratch = nn_ctx_scratch(ctx, (size_t)threads * per_thread * sizeof(float));
    /* task bh: sequence bh / H, head bh % H, with the thread's score row and query */
    if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H;
            float *row = scratch + (size_t)omp_get_thread_num() * per_thread;
            cached_head(x->data + (size_t)b * T * 3 * D, T, D, bh % H, hd, keys + (size_t)b * capacity * D,
                        values + (size_t)b * capacity * D, past, row, row + round16(past + T),
                        y->data + (size_t)b * T * D);
        }
    } else { /* a token at batch 1: no OpenMP region (even if(false) costs libgomp a futex call) */
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H;
            cached_head(x->data + (size_t)b * T * 3 * D, T, D, bh % H, hd, keys + (size_t)b * capacity * D,
                        values + (size_t)b * capacity * D, past, scratch, scratch + round16(past + T),
                        y->data + (size_t)b * T * D);
        }
    }
    return y;
}
