/* Layer normalisation over the last dimension (Ba et al. 2016), as PyTorch's
 * nn.LayerNorm: biased variance, eps inside the square root.
 *   mu = mean(x), rstd = 1 / sqrt(var(x) + eps), xhat = (x - mu) rstd
 *   y = xhat * w + b
 * Backward, per row of N elements, with g = dy * w:
 *   dw += dy * xhat,  db += dy
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 * The forward saves mu and rstd per row; xhat is recomputed from the input.
 *
 * Also here: layer_norm -> exact GELU [-> dropout] as one op, the sequence
 * of a transformer-style MLP block. One pass over each row instead of three
 * over the whole batch, no tensors between them, and the forward saves
 * GELU's derivative so the backward computes no erf or exp. The row
 * helpers below are shared by both ops, so the fused op does exactly the
 * separate ops' arithmetic in their order: the same bits. */
#include <math.h>

#include "ops/fastmath.h"
#include "ops/ops.h"

static void check_shapes(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, const char *op) {
    char sx[64], sw[64], sb[64];
    int N = x->ndim ? x->shape[x->ndim - 1] : 0;
    NN_CHECK(x->ndim >= 1 && w->ndim == 1 && w->shape[0] == N && nn_same_shape(w, b),
             "%s: weight %s and bias %s must both be [%d] for input %s", op, nn_shape_str(w, sw, sizeof sw),
             nn_shape_str(b, sb, sizeof sb), N, nn_shape_str(x, sx, sizeof sx));
}

/* mu and rstd of one row; sums in double, vectorised (omp simd permits
 * reordering the sum). */
static inline void row_stats(const float *xr, int N, float eps, float *mu, float *rstd) {
    double mean = 0.0, var = 0.0;
#pragma omp simd reduction(+ : mean)
    for (int j = 0; j < N; j++) mean += xr[j];
    mean /= N;
#pragma omp simd reduction(+ : var)
    for (int j = 0; j < N; j++) var += ((double)xr[j] - mean) * ((double)xr[j] - mean);
    var /= N;
    *mu = (float)mean;
    *rstd = (float)(1.0 / sqrt(var + eps));
}

/* One normalised, scaled and shifted value: the plain op's output and the
 * fused op's GELU input, written once so that both round alike. */
static inline float ln_value(float x, float mu, float rstd, float w, float b) { return (x - mu) * rstd * w + b; }

/* Columns per task of the weight and bias gradients: each task sums its
 * columns over all rows in row order, so the result does not depend on how
 * many threads share the work. */
#define LN_COLS 128

/* dw += sum over rows of dy * xhat, db += sum of dy (either may be NULL). */
static void param_grads(const float *x, const float *dy, const float *stats, size_t rows, int N, float *dw,
                        float *db) {
#pragma omp parallel for if (rows * N > NN_PARALLEL_MIN)
    for (int j0 = 0; j0 < N; j0 += LN_COLS) {
        int j1 = j0 + LN_COLS < N ? j0 + LN_COLS : N;
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * N, *dyr = dy + r * N;
            float mu = stats[2 * r], rstd = stats[2 * r + 1];
            if (dw)
                for (int j = j0; j < j1; j++) dw[j] += dyr[j] * (xr[j] - mu) * rstd;
            if (db)
                for (int j = j0; j < j1; j++) db[j] += dyr[j];
        }
    }
}

/* dx += rstd * (g - mean(g) - xhat * mean(g * xhat)) of one row (with
 * store, dx = that: dx was unwritten). */
static inline void row_input_grad(const float *xr, const float *dy, const float *w, int N, float mu, float rstd,
                                  bool store, float *dx) {
    double mean_g = 0.0, mean_gx = 0.0;
#pragma omp simd reduction(+ : mean_g, mean_gx)
    for (int j = 0; j < N; j++) {
        float g = dy[j] * w[j];
        mean_g += g;
        mean_gx += (double)g * (xr[j] - mu) * rstd;
    }
    mean_g /= N;
    mean_gx /= N;
    for (int j = 0; j < N; j++) {
        float xhat = (xr[j] - mu) * rstd;
        float g = rstd * (dy[j] * w[j] - (float)mean_g - xhat * (float)mean_gx);
        dx[j] = store ? g : dx[j] + g;
    }
}

nn_tensor *nn_layer_norm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float eps) {
    nn_check_live(ctx, x, "layer_norm");
    nn_check_live(ctx, w, "layer_norm");
    nn_check_live(ctx, b, "layer_norm");
    check_shapes(x, w, b, "layer_norm");
    int N = w->shape[0];
    nn_tensor *in[] = {x, w, b};
    nn_tensor *y = nn_op_output(ctx, x->ndim, x->shape, in, 3);
    size_t rows = x->size / (size_t)N;
    bool keep = ctx->grad_enabled && y->grad;
    float *stats = keep ? nn_arena_alloc(ctx, 2 * rows * sizeof(float)) : NULL;
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * N;
        float *yr = y->data + r * N;
        float mu, rstd;
        row_stats(xr, N, eps, &mu, &rstd);
        for (int j = 0; j < N; j++) yr[j] = ln_value(xr[j], mu, rstd, w->data[j], b->data[j]);
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

void nn_layer_norm_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    const float *stats = n->saved;
    int N = w->shape[0];
    size_t rows = x->size / (size_t)N;
    if (w->grad || b->grad) param_grads(x->data, y->grad, stats, rows, N, w->grad, b->grad);
    if (!x->grad) return;
    bool store = nn_node_fresh(n, 0);
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * N;
        row_input_grad(xr, y->grad + r * N, w->data, N, stats[2 * r], stats[2 * r + 1], store, x->grad + r * N);
    }
}

/* y = gelu(layer norm of one row), and dg = gelu' there unless NULL. */
static inline void gelu_row(const float *restrict xr, const float *restrict w, const float *restrict b, int N,
                            float mu, float rstd, float *restrict yr, float *restrict dg) {
    if (dg) {
#pragma omp simd
        for (int j = 0; j < N; j++) {
            float z = ln_value(xr[j], mu, rstd, w[j], b[j]);
            float g, e = nn_erff_exp(z * NN_INV_SQRT_2, &g);
            yr[j] = nn_gelu_from_erf(z, e);
            dg[j] = nn_gelu_derivative(z, e, g);
        }
    } else {
#pragma omp simd
        for (int j = 0; j < N; j++) {
            float z = ln_value(xr[j], mu, rstd, w[j], b[j]);
            yr[j] = nn_gelu_from_erf(z, nn_erff(z * NN_INV_SQRT_2));
        }
    }
}

/* nn_dropout's y = mask ? x * keep_scale : 0, in place on a row. */
static inline void dropout_row(const uint8_t *restrict m, int N, float keep_scale, float *restrict yr) {
#pragma omp simd
    for (int j = 0; j < N; j++) yr[j] = m[j] ? yr[j] * keep_scale : 0.0f;
}

/* The fused op's saved state. */
typedef struct ln_gelu_saved {
    float *stats;  /* mu, rstd per row */
    float *dgelu;  /* GELU's derivative at each normalised value; the backward
                      overwrites it with the layer norm's output gradient */
    uint8_t *mask; /* dropout's kept elements, or NULL without dropout */
} ln_gelu_saved;

nn_tensor *nn_layer_norm_gelu(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float eps, float p,
                              nn_rng *rng) {
    nn_check_live(ctx, x, "layer_norm+gelu");
    nn_check_live(ctx, w, "layer_norm+gelu");
    nn_check_live(ctx, b, "layer_norm+gelu");
    check_shapes(x, w, b, "layer_norm+gelu");
    NN_CHECK(p >= 0.0f && p < 1.0f, "dropout: probability %g not in [0, 1)", p);
    bool dropout = ctx->training && p > 0.0f;
    NN_CHECK(!dropout || rng != NULL, "dropout: training mode needs a random generator");
    int N = w->shape[0];
    nn_tensor *in[] = {x, w, b};
    nn_tensor *y = nn_op_output(ctx, x->ndim, x->shape, in, 3);
    size_t rows = x->size / (size_t)N;
    ln_gelu_saved *s = NULL;
    if (ctx->grad_enabled && y->grad) {
        s = nn_arena_alloc(ctx, sizeof *s);
        s->stats = nn_arena_alloc(ctx, 2 * rows * sizeof(float));
        s->dgelu = nn_arena_alloc(ctx, x->size * sizeof(float));
    }
    uint8_t *mask = NULL;
    float keep_scale = 1.0f;
    if (dropout) {
        mask = nn_arena_alloc(ctx, x->size);
        keep_scale = 1.0f / (1.0f - p);
        nn_dropout_mask(mask, x->size, p, rng);
    }
    if (s) s->mask = mask;
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * N;
        float *yr = y->data + r * N;
        float mu, rstd;
        row_stats(xr, N, eps, &mu, &rstd);
        if (s) {
            s->stats[2 * r] = mu;
            s->stats[2 * r + 1] = rstd;
        }
        gelu_row(xr, w->data, b->data, N, mu, rstd, yr, s ? s->dgelu + r * N : NULL);
        if (mask) dropout_row(mask + r * N, N, keep_scale, yr);
    }
    nn_node *node = nn_record(ctx, dropout ? NN_OP_LAYER_NORM_GELU_DROPOUT : NN_OP_LAYER_NORM_GELU, y, in, 3);
    if (node) {
        node->saved = s;
        node->attr = keep_scale;
    }
    return y;
}

/* dz = 0 + (mask ? dy * scale : 0) * dz (dz holding gelu'): dropout's
 * backward, then GELU's, each into a zeroed gradient as the separate ops do
 * (the + 0 turns -0 into 0 as that does). */
static inline void dz_row(const float *restrict dy, const uint8_t *restrict m, float scale, int N,
                          float *restrict dz) {
    if (m) {
#pragma omp simd
        for (int j = 0; j < N; j++) dz[j] = 0.0f + (m[j] ? dy[j] * scale : 0.0f) * dz[j];
    } else {
#pragma omp simd
        for (int j = 0; j < N; j++) dz[j] = 0.0f + dy[j] * dz[j];
    }
}

void nn_layer_norm_gelu_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    const ln_gelu_saved *s = n->saved;
    int N = w->shape[0];
    size_t rows = x->size / (size_t)N;
    float scale = n->attr;
    float *dz = s->dgelu; /* becomes the layer norm's output gradient */
#pragma omp parallel for if (x->size > NN_PARALLEL_MIN)
    for (size_t r = 0; r < rows; r++) {
        float *dzr = dz + r * N;
        dz_row(y->grad + r * N, s->mask ? s->mask + r * N : NULL, scale, N, dzr);
        if (x->grad)
            row_input_grad(x->data + r * N, dzr, w->data, N, s->stats[2 * r], s->stats[2 * r + 1], false,
                           x->grad + r * N);
    }
    if (w->grad || b->grad) param_grads(x->data, dz, s->stats, rows, N, w->grad, b->grad);
}
