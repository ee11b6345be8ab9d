/* The three convolution algorithms (im2col, direct, Winograd F(4x4, 3x3);
 * src/ops/conv_internal.h) against an independent float64 convolution
 * written out here: output, input, weight and bias gradients of
 * L = sum(conv(x, w, b) * R) on shapes chosen to reach each algorithm, with
 * partial tiles, channel counts that are not multiples of 16, padding, and
 * batches above and below the 16 parts of a batch. Then the fused forms
 * (conv + ReLU, conv + ReLU + 2x2 max pooling, conv + batch norm + ReLU
 * [+ pooling]) against the separate ops, bit for bit, and every result
 * against itself on 1, 2 and 3 threads.
 *
 * Tolerances, as max |nn - exact| / max |exact| per tensor: 1e-6 for the
 * direct and im2col sums (float32 is 6e-8 relative; sums of up to ~1,000
 * products grow that to ~1e-7); 2e-5 for Winograd, whose transforms' constants
 * (up to 8 and 1/24) grow rounding error (Lavin & Gray report ~1e-5 of the
 * scale in float32 for F(4x4, 3x3)). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "check.h"
#include "nn/core.h"
#include "ops/conv_internal.h"
#include "core/util.h"

typedef struct conv_case {
    const char *name;
    int B, C, H, W, O, k, S, P;
    conv_algo algo; /* what nn_conv2d must choose for it */
    bool bias;
} conv_case;

static const conv_case cases[] = {
    /* the MNIST convnets' layers */
    {"first layer 1x28x28 -> 32", 3, 1, 28, 28, 32, 3, 1, 0, CONV_DIRECT, true},
    {"keras conv2 32x13x13 -> 64", 3, 32, 13, 13, 64, 3, 1, 0, CONV_WINOGRAD, true},
    {"examples conv2 32x26x26 -> 64", 2, 32, 26, 26, 64, 3, 1, 0, CONV_WINOGRAD, true},
    /* odd corners */
    {"winograd 8 -> 12, padding 1", 2, 8, 10, 9, 12, 3, 1, 1, CONV_WINOGRAD, true},
    {"winograd 20 images, padding 2", 20, 9, 6, 5, 8, 3, 1, 2, CONV_WINOGRAD, false},
    {"winograd 17 -> 33, one partial tile", 1, 17, 5, 7, 33, 3, 1, 0, CONV_WINOGRAD, true},
    {"direct 3 channels, rows over 32", 2, 3, 9, 40, 5, 3, 1, 1, CONV_DIRECT, true},
    {"direct 5x5, padding 2", 17, 1, 8, 7, 3, 5, 1, 2, CONV_DIRECT, false},
    {"im2col stride 2", 2, 4, 9, 9, 6, 3, 2, 1, CONV_IM2COL, true},
    {"im2col 3 channels 5x5", 3, 3, 9, 8, 4, 5, 1, 0, CONV_IM2COL, true},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

static conv_geom geom(const conv_case *c) {
    conv_geom g = {.B = c->B, .C = c->C, .H = c->H, .W = c->W, .O = c->O, .KH = c->k, .KW = c->k, .S = c->S,
                   .P = c->P};
    g.OH = (g.H + 2 * g.P - g.KH) / g.S + 1;
    g.OW = (g.W + 2 * g.P - g.KW) / g.S + 1;
    g.K = g.C * g.KH * g.KW;
    g.L = g.OH * g.OW;
    return g;
}

/* The exact (float64) forward and the gradients of sum(y * R). */
static void reference(const conv_geom *g, const float *x, const float *w, const float *b, const float *R,
                      double *y, double *dx, double *dw, double *db) {
    size_t xs = (size_t)g->C * g->H * g->W;
    memset(dx, 0, (size_t)g->B * xs * sizeof(double));
    memset(dw, 0, (size_t)g->O * g->K * sizeof(double));
    memset(db, 0, (size_t)g->O * sizeof(double));
    for (int n = 0; n < g->B; n++)
        for (int o = 0; o < g->O; o++)
            for (int oh = 0; oh < g->OH; oh++)
                for (int ow = 0; ow < g->OW; ow++) {
                    size_t at = (((size_t)n * g->O + o) * g->OH + oh) * g->OW + ow;
                    double sum = b ? b[o] : 0.0, r = R[at];
                    for (int c = 0; c < g->C; c++)
                        for (int i = 0; i < g->KH; i++)
                            for (int j = 0; j < g->KW; j++) {
                                int h = oh * g->S - g->P + i, v = ow * g->S - g->P + j;
                                if (h < 0 || h >= g->H || v < 0 || v >= g->W) continue;
                                size_t xi = n * xs + ((size_t)c * g->H + h) * g->W + v;
                                size_t wi = ((size_t)(o * g->C + c) * g->KH + i) * g->KW + j;
                                sum += (double)w[wi] * x[xi];
                                dx[xi] += (double)w[wi] * r;
                                dw[wi] += (double)x[xi] * r;
                            }
                    y[at] = sum;
                    db[o] += r;
                }
}

static double rel_error(const float *got, const double *want, size_t n) {
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        err = fmax(err, fabs(got[i] - want[i]));
        scale = fmax(scale, fabs(want[i]));
    }
    return scale > 0.0 ? err / scale : err;
}

static void fill(float *v, size_t n, nn_rng *r, float scale) {
    for (size_t i = 0; i < n; i++) v[i] = scale * nn_rng_normal(r);
}

typedef struct run {
    nn_params params;
    nn_tensor *x, *w, *b;
    float *R;
} run;

static void setup(run *r, const conv_case *c, const conv_geom *g) {
    nn_rng rng;
    nn_rng_seed(&rng, 42, (uint64_t)(c - cases));
    nn_params_init(&r->params);
    r->x = nn_params_add(&r->params, "x", 4, (int[]){g->B, g->C, g->H, g->W}, false);
    r->w = nn_params_add(&r->params, "w", 4, (int[]){g->O, g->C, g->KH, g->KW}, true);
    r->b = c->bias ? nn_params_add(&r->params, "b", 1, (int[]){g->O}, false) : NULL;
    fill(r->x->data, r->x->size, &rng, 1.0f);
    fill(r->w->data, r->w->size, &rng, 1.0f / sqrtf((float)g->K));
    if (r->b) fill(r->b->data, r->b->size, &rng, 0.1f);
    size_t ys = (size_t)g->B * g->O * g->L;
    r->R = nn_xmalloc(ys * sizeof(float));
    fill(r->R, ys, &rng, 1.0f);
}

static void teardown(run *r) {
    nn_params_free(&r->params);
    free(r->R);
}

/* sum(y * R) for an R of y's size (the first elements of r->R). */
static nn_tensor *weighted_sum(nn_ctx *ctx, nn_tensor *y, const float *R) {
    nn_tensor *rt = nn_input(ctx, "R", y->ndim, y->shape);
    memcpy(rt->data, R, y->size * sizeof(float));
    return nn_sum(ctx, nn_mul(ctx, y, rt));
}

static void test_against_float64(void) {
    for (int k = 0; k < N_CASES; k++) {
        const conv_case *c = &cases[k];
        conv_geom g = geom(c);
        CHECKF(conv_choose_algo(&g) == c->algo, "%s: algorithm %d, expected %d", c->name, conv_choose_algo(&g),
               c->algo);
        run r;
        setup(&r, c, &g);
        size_t ys = (size_t)g.B * g.O * g.L;
        double *y = nn_xmalloc(ys * sizeof(double)), *dx = nn_xmalloc(r.x->size * sizeof(double)),
               *dw = nn_xmalloc(r.w->size * sizeof(double)), *db = nn_xmalloc((size_t)g.O * sizeof(double));
        reference(&g, r.x->data, r.w->data, r.b ? r.b->data : NULL, r.R, y, dx, dw, db);

        nn_ctx *ctx = nn_ctx_new(0);
        nn_params_zero_grad(&r.params);
        nn_tensor *out = nn_conv2d(ctx, r.x, r.w, r.b, c->S, c->P);
        nn_backward(ctx, weighted_sum(ctx, out, r.R));
        double tol = c->algo == CONV_WINOGRAD ? 2e-5 : 1e-6;
        double e[4] = {rel_error(out->data, y, ys), rel_error(r.x->grad, dx, r.x->size),
                       rel_error(r.w->grad, dw, r.w->size), r.b ? rel_error(r.b->grad, db, (size_t)g.O) : 0.0};
        printf("  %-36s y %.1e  dx %.1e  dw %.1e  db %.1e  (tol %g)\n", c->name, e[0], e[1], e[2], e[3], tol);
        for (int t = 0; t < 4; t++) CHECKF(e[t] <= tol, "%s: tensor %d off by %.2e of its scale", c->name, t, e[t]);
        nn_ctx_free(ctx);
        free(y), free(dx), free(dw), free(db);
        teardown(&r);
    }
}

/* Everything a step gives: the output and the three gradients, as bytes. */
typedef struct result {
    float *y, *dx, *dw, *db;
    size_t ny;
} result;

static void result_free(result *s) { free(s->y), free(s->dx), free(s->dw), free(s->db); }

static float *copy(const float *v, size_t n) {
    if (!v) return NULL;
    float *c = nn_xmalloc(n * sizeof(float));
    memcpy(c, v, n * sizeof(float));
    return c;
}

/* epilogue 0: conv; 1: conv relu; 2: conv relu maxpool(2). fused: through
 * nn_conv2d_relu instead of nn_relu and nn_max_pool2d. */
static result step(run *r, const conv_case *c, int epilogue, bool fused) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_params_zero_grad(&r->params);
    nn_tensor *y;
    if (fused) {
        y = nn_conv2d_relu(ctx, r->x, r->w, r->b, c->S, c->P, epilogue == 2);
    } else {
        y = nn_conv2d(ctx, r->x, r->w, r->b, c->S, c->P);
        if (epilogue >= 1) y = nn_relu(ctx, y);
        if (epilogue == 2) y = nn_max_pool2d(ctx, y, 2, 2);
    }
    nn_backward(ctx, weighted_sum(ctx, y, r->R));
    result s = {copy(y->data, y->size), copy(r->x->grad, r->x->size), copy(r->w->grad, r->w->size),
                r->b ? copy(r->b->grad, r->b->size) : NULL, y->size};
    nn_ctx_free(ctx);
    return s;
}

static bool same(const result *a, const result *b, const run *r) {
    return a->ny == b->ny && memcmp(a->y, b->y, a->ny * sizeof(float)) == 0 &&
           memcmp(a->dx, b->dx, r->x->size * sizeof(float)) == 0 &&
           memcmp(a->dw, b->dw, r->w->size * sizeof(float)) == 0 &&
           (!r->b || memcmp(a->db, b->db, r->b->size * sizeof(float)) == 0);
}

static bool nonzero(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f) return true;
    return false;
}

static void test_fused_matches_separate_ops(void) {
    for (int k = 0; k < N_CASES; k++) {
        const conv_case *c = &cases[k];
        conv_geom g = geom(c);
        run r;
        setup(&r, c, &g);
        for (int epi = 1; epi <= 2; epi++) {
            if (epi == 2 && (g.OH < 2 || g.OW < 2)) continue;
            result a = step(&r, c, epi, false), b = step(&r, c, epi, true);
            CHECKF(same(&a, &b, &r), "%s: fused %s differs from the separate ops", c->name,
                   epi == 1 ? "relu" : "relu+maxpool");
            CHECKF(nonzero(b.dw, r.w->size) && nonzero(b.dx, r.x->size), "%s: fused gradient is all zeros", c->name);
            result_free(&a), result_free(&b);
        }
        teardown(&r);
    }
}

static void test_thread_count_does_not_matter(void) {
    int threads = omp_get_max_threads();
    for (int k = 0; k < N_CASES; k++) {
        const conv_case *c = &cases[k];
        conv_geom g = geom(c);
        run r;
        setup(&r, c, &g);
        for (int epi = 0; epi <= 2; epi++) {
            if (epi == 2 && (g.OH < 2 || g.OW < 2)) continue;
            omp_set_num_threads(1);
            result one = step(&r, c, epi, epi > 0);
            omp_set_num_threads(2);
            result two = step(&r, c, epi, epi > 0);
            omp_set_num_threads(3);
            result three = step(&r, c, epi, epi > 0);
            CHECKF(same(&one, &two, &r) && same(&one, &three, &r), "%s, epilogue %d: 1, 2 and 3 threads differ",
                   c->name, epi);
            result_free(&one), result_free(&two), result_free(&three);
        }
        teardown(&r);
    }
    omp_set_num_threads(threads);
}

/* A fused op where nothing needs a gradient (evaluation) records nothing
 * and gives the training-mode values. */
static void test_fused_without_gradients(void) {
    const conv_case *c = &cases[1];
    conv_geom g = geom(c);
    run r;
    setup(&r, c, &g);
    result want = step(&r, c, 2, true);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *y = nn_conv2d_relu(ctx, r.x, r.w, r.b, c->S, c->P, true);
    CHECK(y->grad == NULL && nn_graph_nodes(ctx) == 0);
    CHECK(y->size == want.ny && memcmp(y->data, want.y, y->size * sizeof(float)) == 0);
    nn_ctx_free(ctx);
    result_free(&want);
    teardown(&r);
}

/* ---- conv + batch norm + ReLU (+ pooling) ----------------------------------------- */

/* Everything one step of conv -> batch norm -> ReLU [-> max pool 2] gives,
 * through the four ops or the one (fused), in training or evaluation. */
static float *bn_step(run *r, const conv_case *c, bool pool, bool training, bool fused, size_t *n_out) {
    nn_rng rng;
    nn_rng_seed(&rng, 5, (uint64_t)(c - cases));
    nn_params bn;
    nn_params_init(&bn);
    nn_tensor *gamma = nn_params_add(&bn, "bn.weight", 1, (int[]){c->O}, false);
    nn_tensor *beta = nn_params_add(&bn, "bn.bias", 1, (int[]){c->O}, false);
    float mean[64], var[64];
    for (int o = 0; o < c->O; o++) {
        gamma->data[o] = 1.0f + 0.3f * nn_rng_normal(&rng), beta->data[o] = 0.2f * nn_rng_normal(&rng);
        mean[o] = 0.1f * nn_rng_normal(&rng), var[o] = 1.0f + 0.3f * nn_rng_uniform(&rng);
    }
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, training);
    nn_params_zero_grad(&r->params);
    nn_params_zero_grad(&bn);
    nn_tensor *y;
    if (fused) {
        y = nn_conv2d_bn_relu(ctx, r->x, r->w, r->b, c->S, c->P, gamma, beta, mean, var, 0.1f, 1e-5f, pool);
    } else {
        y = nn_relu(ctx, nn_batch_norm(ctx, nn_conv2d(ctx, r->x, r->w, r->b, c->S, c->P), gamma, beta, mean, var,
                                       0.1f, 1e-5f));
        if (pool) y = nn_max_pool2d(ctx, y, 2, 2);
    }
    nn_backward(ctx, weighted_sum(ctx, y, r->R));
    /* y, dx, dw, db, dgamma, dbeta, running mean and variance, one after the other */
    size_t sizes[] = {y->size, r->x->size, r->w->size, r->b ? r->b->size : 0, (size_t)c->O, (size_t)c->O,
                      (size_t)c->O, (size_t)c->O};
    const float *parts[] = {y->data, r->x->grad, r->w->grad, r->b ? r->b->grad : NULL, gamma->grad, beta->grad, mean,
                            var};
    size_t total = 0;
    for (int k = 0; k < 8; k++) total += sizes[k];
    float *out = nn_xmalloc(total * sizeof(float)), *at = out;
    for (int k = 0; k < 8; k++) {
        if (sizes[k]) memcpy(at, parts[k], sizes[k] * sizeof(float));
        at += sizes[k];
    }
    nn_ctx_free(ctx);
    nn_params_free(&bn);
    *n_out = total;
    return out;
}

static void test_conv_bn_relu(void) {
    int threads = omp_get_max_threads();
    for (int k = 0; k < N_CASES; k++) {
        const conv_case *c = &cases[k];
        conv_geom g = geom(c);
        run r;
        setup(&r, c, &g);
        for (int pool = 0; pool <= 1; pool++)
            for (int training = 0; training <= 1; training++) {
                if (pool && (g.OH < 2 || g.OW < 2)) continue;
                size_t na, nb;
                float *a = bn_step(&r, c, pool, training, false, &na), *b = bn_step(&r, c, pool, training, true, &nb);
                CHECKF(na == nb && memcmp(a, b, na * sizeof(float)) == 0,
                       "%s: conv+batchnorm+relu%s (%s) differs from the separate ops", c->name, pool ? "+maxpool" : "",
                       training ? "training" : "evaluation");
                CHECKF(nonzero(b + nb - 4 * c->O, (size_t)c->O), "%s: all-zero batch norm gradient", c->name);
                free(b);
                for (int t = 1; t <= 3 && training; t += 2) { /* 1 and 3 threads against the default */
                    omp_set_num_threads(t);
                    b = bn_step(&r, c, pool, true, true, &nb);
                    omp_set_num_threads(threads);
                    CHECKF(memcmp(a, b, na * sizeof(float)) == 0, "%s: %d threads differ", c->name, t);
                    free(b);
                }
                free(a);
            }
        teardown(&r);
    }
}

TEST_MAIN(TEST(test_against_float64), TEST(test_fused_matches_separate_ops), TEST(test_thread_count_does_not_matter),
          TEST(test_fused_without_gradients), TEST(test_conv_bn_relu))
