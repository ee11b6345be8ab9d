/* Finite-difference gradient checks: for every op, the gradient that
 * nn_backward computes must match central differences
 *   dL/dx_i ~ (L(x + h e_i) - L(x - h e_i)) / 2h
 * of the scalar L = sum(op(inputs) * R), with R a fixed random tensor so that
 * every output element matters with a different weight. Shapes are random
 * (seeded). Each check also asserts that the gradient is not all zeros, so a
 * backward that does nothing cannot pass. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "nn/core.h"
#include "core/util.h"

#define MAX_INPUTS 11

typedef nn_tensor *(*build_fn)(nn_ctx *ctx, nn_tensor **in, void *arg);

typedef struct gradcheck {
    const char *name;
    int n_inputs;
    int ndim[MAX_INPUTS];
    int shape[MAX_INPUTS][NN_MAX_DIMS];
    float h, rtol, atol;
    float kink_margin; /* keep inputs at least this far from 0 (ReLU-like kinks) */
    float spacing;     /* > 0: each input is a shuffled ramp of this spacing instead,
                        * so no two elements are closer than the step h (max pooling) */
    bool kinks;        /* inside a network, ReLU and max pooling kinks cannot be kept away
                        * from the step: skip the elements whose one-sided differences
                        * disagree (a kink lies within h), at most 1 in 8 */
    build_fn build;
    void *arg;
} gradcheck;

/* Seeded on first use, so each test can also run alone (NN_TEST=name). */
static nn_rng *rng(void) {
    static nn_rng r;
    static int seeded;
    if (!seeded) nn_rng_seed(&r, 1234, 1), seeded = 1;
    return &r;
}

/* Forward pass plus the weighting by R; returns L. */
static double eval_loss(nn_ctx *ctx, const gradcheck *g, nn_tensor **in, const float *r, nn_tensor **loss_out) {
    nn_tensor *out = g->build(ctx, in, g->arg);
    nn_tensor *loss = out;
    if (out->size != 1) {
        nn_tensor *rt = nn_input(ctx, "R", out->ndim, out->shape);
        memcpy(rt->data, r, out->size * sizeof(float));
        loss = nn_sum(ctx, nn_mul(ctx, out, rt));
    }
    if (loss_out) *loss_out = loss;
    return loss->data[0];
}

static void run_gradcheck(const gradcheck *g) {
    nn_params params;
    nn_params_init(&params);
    nn_tensor *in[MAX_INPUTS];
    for (int k = 0; k < g->n_inputs; k++) {
        char name[16];
        snprintf(name, sizeof name, "in%d", k);
        in[k] = nn_params_add(&params, name, g->ndim[k], g->shape[k], true);
    }
    for (int k = 0; k < g->n_inputs; k++)
        for (size_t i = 0; i < in[k]->size; i++) {
            float v = 2.0f * nn_rng_uniform(rng()) - 1.0f;
            if (g->kink_margin > 0) v = (v < 0 ? -1.0f : 1.0f) * (g->kink_margin + fabsf(v));
            in[k]->data[i] = v;
        }
    if (g->spacing > 0)
        for (int k = 0; k < g->n_inputs; k++) {
            float *v = in[k]->data;
            size_t n = in[k]->size;
            for (size_t i = 0; i < n; i++) v[i] = g->spacing * ((float)i - 0.5f * (float)n);
            for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
                size_t j = nn_rng_below(rng(), (uint32_t)(i + 1));
                float t = v[i];
                v[i] = v[j], v[j] = t;
            }
        }
    nn_ctx *ctx = nn_ctx_new(1 << 20);
    /* R has the output's shape; learn it from one forward pass. */
    nn_set_grad_enabled(ctx, false);
    nn_tensor *probe = g->build(ctx, in, g->arg);
    size_t out_size = probe->size;
    float *r = nn_xmalloc(out_size * sizeof(float));
    for (size_t i = 0; i < out_size; i++) r[i] = 2.0f * nn_rng_uniform(rng()) - 1.0f;
    nn_ctx_reset(ctx);

    nn_set_grad_enabled(ctx, true);
    nn_tensor *loss;
    eval_loss(ctx, g, in, r, &loss);
    nn_params_zero_grad(&params);
    nn_backward(ctx, loss);
    float *analytic = nn_xmalloc(params.count * sizeof(float));
    memcpy(analytic, params.grad, params.count * sizeof(float));
    nn_ctx_reset(ctx);

    nn_set_grad_enabled(ctx, false);
    double l0 = eval_loss(ctx, g, in, r, NULL);
    nn_ctx_reset(ctx);
    double worst = 0.0, max_abs = 0.0;
    int failures = 0, checked = 0, skipped = 0;
    size_t offset = 0;
    for (int k = 0; k < g->n_inputs; k++) {
        /* Check every element of small inputs, an even sample of large ones. */
        size_t stride = in[k]->size > 64 ? in[k]->size / 64 : 1;
        for (size_t i = 0; i < in[k]->size; i += stride) {
            float saved = in[k]->data[i];
            in[k]->data[i] = saved + g->h;
            double lp = eval_loss(ctx, g, in, r, NULL);
            nn_ctx_reset(ctx);
            in[k]->data[i] = saved - g->h;
            double lm = eval_loss(ctx, g, in, r, NULL);
            nn_ctx_reset(ctx);
            in[k]->data[i] = saved;
            double numeric = (lp - lm) / (2.0 * g->h);
            double a = analytic[offset + i];
            double err = fabs(a - numeric);
            double allowed = g->atol + g->rtol * fabs(numeric);
            checked++;
            if (g->kinks && fabs((lp - l0) - (l0 - lm)) / g->h > allowed) {
                skipped++;
                continue;
            }
            if (err > allowed && failures++ < 3)
                fprintf(stderr, "  %s: input %d element %zu: analytic %.6g, numeric %.6g\n", g->name, k, i, a,
                        numeric);
            if (err / (allowed > 0 ? allowed : 1) > worst) worst = err / allowed;
            if (fabs(a) > max_abs) max_abs = fabs(a);
        }
        offset += in[k]->size;
    }
    CHECKF(failures == 0, "%s: %d gradient elements outside tolerance", g->name, failures);
    CHECKF(skipped * 8 <= checked, "%s: %d of %d elements skipped at kinks", g->name, skipped, checked);
    if (skipped) printf("  %s: %d of %d elements skipped at kinks\n", g->name, skipped, checked);
    CHECKF(max_abs > 1e-4, "%s: gradient is all zeros", g->name);
    free(analytic);
    free(r);
    nn_ctx_free(ctx);
    nn_params_free(&params);
}

static int rand_dim(int lo, int hi) { return lo + (int)nn_rng_below(rng(), (uint32_t)(hi - lo + 1)); }

/* ---- the ops under test ---- */

static nn_tensor *b_matmul(nn_ctx *c, nn_tensor **in, void *a) { return nn_matmul(c, in[0], in[1]); }
static nn_tensor *b_linear(nn_ctx *c, nn_tensor **in, void *a) { return nn_linear(c, in[0], in[1], in[2]); }
static nn_tensor *b_linear_nobias(nn_ctx *c, nn_tensor **in, void *a) { return nn_linear(c, in[0], in[1], NULL); }
static nn_tensor *b_add(nn_ctx *c, nn_tensor **in, void *a) { return nn_add(c, in[0], in[1]); }
static nn_tensor *b_sub(nn_ctx *c, nn_tensor **in, void *a) { return nn_sub(c, in[0], in[1]); }
static nn_tensor *b_mul(nn_ctx *c, nn_tensor **in, void *a) { return nn_mul(c, in[0], in[1]); }
static nn_tensor *b_add_bias(nn_ctx *c, nn_tensor **in, void *a) { return nn_add_bias(c, in[0], in[1]); }
static nn_tensor *b_scale(nn_ctx *c, nn_tensor **in, void *a) { return nn_scale(c, in[0], -1.7f); }
static nn_tensor *b_sum(nn_ctx *c, nn_tensor **in, void *a) { return nn_sum(c, nn_mul(c, in[0], in[0])); }
static nn_tensor *b_mean(nn_ctx *c, nn_tensor **in, void *a) { return nn_mean(c, nn_mul(c, in[0], in[0])); }
static nn_tensor *b_reshape(nn_ctx *c, nn_tensor **in, void *a) {
    nn_tensor *x = nn_reshape(c, in[0], 2, (int[]){-1, in[0]->shape[2]});
    return nn_mul(c, x, x);
}
static nn_tensor *b_flatten(nn_ctx *c, nn_tensor **in, void *a) { return nn_tanh(c, nn_flatten(c, in[0])); }
static nn_tensor *b_relu(nn_ctx *c, nn_tensor **in, void *a) { return nn_relu(c, in[0]); }
static nn_tensor *b_leaky(nn_ctx *c, nn_tensor **in, void *a) { return nn_leaky_relu(c, in[0], 0.1f); }
static nn_tensor *b_sigmoid(nn_ctx *c, nn_tensor **in, void *a) { return nn_sigmoid(c, nn_scale(c, in[0], 3.0f)); }
static nn_tensor *b_tanh(nn_ctx *c, nn_tensor **in, void *a) { return nn_tanh(c, nn_scale(c, in[0], 2.0f)); }
static nn_tensor *b_gelu(nn_ctx *c, nn_tensor **in, void *a) { return nn_gelu(c, nn_scale(c, in[0], 3.0f), false); }
static nn_tensor *b_gelu_tanh(nn_ctx *c, nn_tensor **in, void *a) { return nn_gelu(c, nn_scale(c, in[0], 3.0f), true); }
static nn_tensor *b_softmax(nn_ctx *c, nn_tensor **in, void *a) { return nn_softmax(c, nn_scale(c, in[0], 3.0f)); }
static nn_tensor *b_log_softmax(nn_ctx *c, nn_tensor **in, void *a) { return nn_log_softmax(c, nn_scale(c, in[0], 3.0f)); }

static int labels[64];
static nn_tensor *b_cross_entropy(nn_ctx *c, nn_tensor **in, void *a) {
    return nn_cross_entropy(c, nn_scale(c, in[0], 3.0f), labels, *(float *)a);
}
static nn_tensor *b_mse(nn_ctx *c, nn_tensor **in, void *a) { return nn_mse(c, in[0], in[1]); }

static nn_rng dropout_rng;
static nn_tensor *b_dropout(nn_ctx *c, nn_tensor **in, void *a) {
    /* The same mask on every evaluation: reseed before each forward. */
    nn_rng_seed(&dropout_rng, 42, 7);
    return nn_dropout(c, in[0], 0.3f, &dropout_rng);
}
static nn_tensor *b_layer_norm(nn_ctx *c, nn_tensor **in, void *a) {
    return nn_layer_norm(c, in[0], in[1], in[2], 1e-5f);
}

typedef struct conv_arg {
    int stride, padding;
} conv_arg;
static nn_tensor *b_conv(nn_ctx *c, nn_tensor **in, void *a) {
    const conv_arg *ca = a;
    return nn_conv2d(c, in[0], in[1], in[2], ca->stride, ca->padding);
}
static nn_tensor *b_conv_nobias(nn_ctx *c, nn_tensor **in, void *a) {
    const conv_arg *ca = a;
    return nn_conv2d(c, in[0], in[1], NULL, ca->stride, ca->padding);
}
typedef struct pool_arg {
    int k, stride;
} pool_arg;
static nn_tensor *b_max_pool(nn_ctx *c, nn_tensor **in, void *a) {
    const pool_arg *pa = a;
    return nn_max_pool2d(c, in[0], pa->k, pa->stride);
}
static nn_tensor *b_avg_pool(nn_ctx *c, nn_tensor **in, void *a) {
    const pool_arg *pa = a;
    return nn_avg_pool2d(c, in[0], pa->k, pa->stride);
}
/* Running statistics: updated by every training-mode forward (which does not
 * read them), fixed in evaluation mode. */
static float bn_mean[8], bn_var[8];
static nn_tensor *b_batch_norm(nn_ctx *c, nn_tensor **in, void *a) {
    return nn_batch_norm(c, in[0], in[1], in[2], bn_mean, bn_var, 0.1f, 1e-5f);
}
static nn_tensor *b_batch_norm_eval(nn_ctx *c, nn_tensor **in, void *a) {
    bool was = nn_set_training(c, false);
    nn_tensor *y = nn_batch_norm(c, in[0], in[1], in[2], bn_mean, bn_var, 0.1f, 1e-5f);
    nn_set_training(c, was);
    return y;
}

static gradcheck unary(const char *name, build_fn fn, int rows, int cols) {
    gradcheck g = {.name = name, .n_inputs = 1, .ndim = {2}, .h = 1e-2f, .rtol = 1e-2f, .atol = 2e-3f, .build = fn};
    g.shape[0][0] = rows;
    g.shape[0][1] = cols;
    return g;
}

static gradcheck binary(const char *name, build_fn fn, int rows, int cols) {
    gradcheck g = unary(name, fn, rows, cols);
    g.n_inputs = 2;
    g.ndim[1] = 2;
    g.shape[1][0] = rows;
    g.shape[1][1] = cols;
    return g;
}

static void test_matmul(void) {
    int M = rand_dim(2, 7), K = rand_dim(2, 9), N = rand_dim(2, 6);
    gradcheck g = {.name = "matmul", .n_inputs = 2, .ndim = {2, 2}, .shape = {{M, K}, {K, N}},
                   .h = 1e-2f, .rtol = 1e-2f, .atol = 2e-3f, .build = b_matmul};
    run_gradcheck(&g);
}

static void test_linear(void) {
    int B = rand_dim(2, 6), in_f = rand_dim(2, 9), out_f = rand_dim(2, 7);
    gradcheck g = {.name = "linear", .n_inputs = 3, .ndim = {2, 2, 1}, .shape = {{B, in_f}, {out_f, in_f}, {out_f}},
                   .h = 1e-2f, .rtol = 1e-2f, .atol = 2e-3f, .build = b_linear};
    run_gradcheck(&g);
    g.name = "linear (no bias)";
    g.n_inputs = 2;
    g.build = b_linear_nobias;
    run_gradcheck(&g);
}

static void test_add(void) {
    gradcheck g = binary("add", b_add, rand_dim(1, 5), rand_dim(2, 8));
    run_gradcheck(&g);
}
static void test_sub(void) {
    gradcheck g = binary("sub", b_sub, rand_dim(1, 5), rand_dim(2, 8));
    run_gradcheck(&g);
}
static void test_mul(void) {
    gradcheck g = binary("mul", b_mul, rand_dim(1, 5), rand_dim(2, 8));
    run_gradcheck(&g);
}

static void test_add_bias(void) {
    int rows = rand_dim(2, 6), cols = rand_dim(2, 8);
    gradcheck g = {.name = "add_bias", .n_inputs = 2, .ndim = {2, 1}, .shape = {{rows, cols}, {cols}},
                   .h = 1e-2f, .rtol = 1e-2f, .atol = 2e-3f, .build = b_add_bias};
    run_gradcheck(&g);
}

static void test_scale(void) {
    gradcheck g = unary("scale", b_scale, rand_dim(1, 5), rand_dim(2, 8));
    run_gradcheck(&g);
}

static void test_sum_mean(void) {
    gradcheck g = unary("sum", b_sum, rand_dim(1, 5), rand_dim(2, 8));
    run_gradcheck(&g);
    g = unary("mean", b_mean, rand_dim(1, 5), rand_dim(2, 8));
    run_gradcheck(&g);
}

static void test_reshape_flatten(void) {
    gradcheck g = {.name = "reshape", .n_inputs = 1, .ndim = {3}, .shape = {{2, 3, 4}},
                   .h = 1e-2f, .rtol = 1e-2f, .atol = 2e-3f, .build = b_reshape};
    run_gradcheck(&g);
    g.name = "flatten";
    g.ndim[0] = 4;
    g.shape[0][0] = 2, g.shape[0][1] = 2, g.shape[0][2] = 3, g.shape[0][3] = 2;
    g.build = b_flatten;
    run_gradcheck(&g);
}

static void test_activations(void) {
    gradcheck g = unary("relu", b_relu, rand_dim(2, 6), rand_dim(2, 9));
    g.kink_margin = 0.05f;
    run_gradcheck(&g);
    g = unary("leaky_relu", b_leaky, rand_dim(2, 6), rand_dim(2, 9));
    g.kink_margin = 0.05f;
    run_gradcheck(&g);
    g = unary("sigmoid", b_sigmoid, rand_dim(2, 6), rand_dim(2, 9));
    run_gradcheck(&g);
    g = unary("tanh", b_tanh, rand_dim(2, 6), rand_dim(2, 9));
    run_gradcheck(&g);
    g = unary("gelu", b_gelu, rand_dim(2, 6), rand_dim(2, 9));
    run_gradcheck(&g);
    g = unary("gelu (tanh)", b_gelu_tanh, rand_dim(2, 6), rand_dim(2, 9));
    run_gradcheck(&g);
}

static void test_softmax(void) {
    gradcheck g = unary("softmax", b_softmax, rand_dim(2, 5), rand_dim(2, 9));
    run_gradcheck(&g);
    g = unary("log_softmax", b_log_softmax, rand_dim(2, 5), rand_dim(2, 9));
    run_gradcheck(&g);
}

static void test_cross_entropy(void) {
    int B = rand_dim(2, 8), C = rand_dim(2, 10);
    for (int b = 0; b < B; b++) labels[b] = (int)nn_rng_below(rng(), (uint32_t)C);
    float smoothing = 0.0f;
    gradcheck g = unary("cross_entropy", b_cross_entropy, B, C);
    g.arg = &smoothing;
    run_gradcheck(&g);
    smoothing = 0.1f;
    g.name = "cross_entropy (label smoothing 0.1)";
    run_gradcheck(&g);
}

static void test_mse(void) {
    gradcheck g = binary("mse", b_mse, rand_dim(1, 6), rand_dim(1, 6));
    run_gradcheck(&g);
}

static void test_dropout(void) {
    gradcheck g = unary("dropout", b_dropout, rand_dim(3, 6), rand_dim(4, 9));
    run_gradcheck(&g);
}

static void test_layer_norm(void) {
    int rows = rand_dim(2, 5), N = rand_dim(3, 9);
    gradcheck g = {.name = "layer_norm", .n_inputs = 3, .ndim = {2, 1, 1}, .shape = {{rows, N}, {N}, {N}},
                   .h = 1e-2f, .rtol = 2e-2f, .atol = 3e-3f, .build = b_layer_norm};
    run_gradcheck(&g);
}

/* Convolutions of random shapes, each padding/stride with and without bias
 * (a 1x1 kernel with stride 1 and no padding takes the path without im2col). */
static void test_conv2d(void) {
    static const struct {
        int stride, padding, kmin, kmax;
    } cases[] = {{1, 0, 1, 3}, {2, 0, 1, 3}, {1, 1, 2, 3}, {2, 1, 3, 3}, {3, 2, 2, 4}, {1, 0, 1, 1}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int B = rand_dim(1, 3), C = rand_dim(1, 3), O = rand_dim(1, 4);
        int KH = rand_dim(cases[t].kmin, cases[t].kmax), KW = rand_dim(cases[t].kmin, cases[t].kmax);
        int H = rand_dim(KH > 3 ? KH : 3, 7), W = rand_dim(KW > 3 ? KW : 3, 7);
        conv_arg arg = {cases[t].stride, cases[t].padding};
        char name[128];
        snprintf(name, sizeof name, "conv2d x[%d,%d,%d,%d] w[%d,%d,%d,%d] stride %d padding %d", B, C, H, W, O, C,
                 KH, KW, arg.stride, arg.padding);
        gradcheck g = {.name = name, .n_inputs = 3, .ndim = {4, 4, 1}, .shape = {{B, C, H, W}, {O, C, KH, KW}, {O}},
                       .h = 1e-2f, .rtol = 1e-2f, .atol = 2e-3f, .build = b_conv, .arg = &arg};
        run_gradcheck(&g);
        strcat(name, " no bias");
        g.n_inputs = 2;
        g.build = b_conv_nobias;
        run_gradcheck(&g);
    }
    /* More images than the backward's partial sums: several images per part. */
    conv_arg arg = {1, 1};
    gradcheck g = {.name = "conv2d x[37,2,4,3] w[3,2,3,3] stride 1 padding 1", .n_inputs = 3, .ndim = {4, 4, 1},
                   .shape = {{37, 2, 4, 3}, {3, 2, 3, 3}, {3}}, .h = 1e-2f, .rtol = 1e-2f, .atol = 2e-3f,
                   .build = b_conv, .arg = &arg};
    run_gradcheck(&g);
}

static void test_pool2d(void) {
    static const pool_arg cases[] = {{2, 2}, {3, 2}, {2, 1}, {3, 3}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        int k = cases[t].k, B = rand_dim(1, 3), C = rand_dim(1, 3), H = rand_dim(k, 7), W = rand_dim(k, 7);
        char name[64];
        snprintf(name, sizeof name, "max_pool2d x[%d,%d,%d,%d] k %d stride %d", B, C, H, W, k, cases[t].stride);
        /* Values 0.05 apart: the step h = 0.01 never changes a window's maximum. */
        gradcheck g = {.name = name, .n_inputs = 1, .ndim = {4}, .shape = {{B, C, H, W}}, .h = 1e-2f,
                       .rtol = 1e-2f, .atol = 2e-3f, .spacing = 0.05f, .build = b_max_pool, .arg = (void *)&cases[t]};
        run_gradcheck(&g);
        snprintf(name, sizeof name, "avg_pool2d x[%d,%d,%d,%d] k %d stride %d", B, C, H, W, k, cases[t].stride);
        g.spacing = 0.0f;
        g.build = b_avg_pool;
        run_gradcheck(&g);
    }
}

static void test_batch_norm(void) {
    /* A small step: with few values per channel, rstd and the curvature can be large. */
    int B = rand_dim(3, 6), C = rand_dim(2, 5);
    gradcheck g = {.name = "batch_norm [B,C] training", .n_inputs = 3, .ndim = {2, 1, 1},
                   .shape = {{B, C}, {C}, {C}}, .h = 1e-3f, .rtol = 2e-2f, .atol = 3e-3f, .build = b_batch_norm};
    run_gradcheck(&g);
    B = rand_dim(2, 3), C = rand_dim(2, 4);
    int H = rand_dim(2, 4), W = rand_dim(2, 4);
    g.name = "batch_norm [B,C,H,W] training";
    g.ndim[0] = 4;
    g.shape[0][0] = B, g.shape[0][1] = C, g.shape[0][2] = H, g.shape[0][3] = W;
    g.shape[1][0] = g.shape[2][0] = C;
    run_gradcheck(&g);
    for (int c = 0; c < C; c++) {
        bn_mean[c] = nn_rng_uniform(rng()) - 0.5f;
        bn_var[c] = 0.5f + nn_rng_uniform(rng());
    }
    g.name = "batch_norm [B,C,H,W] evaluation";
    g.build = b_batch_norm_eval;
    run_gradcheck(&g);
    g.name = "batch_norm [B,C] evaluation";
    g.ndim[0] = 2;
    g.shape[0][0] = B, g.shape[0][1] = C;
    run_gradcheck(&g);
}

/* A 2-hidden-layer MLP with LayerNorm, GELU and cross-entropy, checked as one
 * function of its input and all ten of its parameters. */
static nn_tensor *b_mlp(nn_ctx *c, nn_tensor **in, void *a) {
    nn_tensor *h = nn_gelu(c, nn_layer_norm(c, nn_linear(c, in[0], in[1], in[2]), in[3], in[4], 1e-5f), false);
    h = nn_gelu(c, nn_layer_norm(c, nn_linear(c, h, in[5], in[6]), in[7], in[8], 1e-5f), false);
    return nn_cross_entropy(c, nn_linear(c, h, in[9], in[10]), labels, 0.0f);
}

static void test_mlp_composed(void) {
    enum { B = 5, IN = 6, H1 = 7, H2 = 5, OUT = 4 };
    for (int b = 0; b < B; b++) labels[b] = b % OUT;
    gradcheck g = {.name = "mlp", .n_inputs = 11, .ndim = {2, 2, 1, 1, 1, 2, 1, 1, 1, 2, 1},
                   .shape = {{B, IN}, {H1, IN}, {H1}, {H1}, {H1}, {H2, H1}, {H2}, {H2}, {H2}, {OUT, H2}, {OUT}},
                   .h = 1e-2f, .rtol = 3e-2f, .atol = 3e-3f, .build = b_mlp};
    run_gradcheck(&g);
}

/* conv -> batch norm -> ReLU -> max pool -> flatten -> linear -> cross-entropy,
 * checked as one function of its input and all six of its parameters. */
static nn_tensor *b_cnn(nn_ctx *c, nn_tensor **in, void *a) {
    nn_tensor *h = nn_conv2d(c, in[0], in[1], in[2], 1, 1);
    h = nn_relu(c, nn_batch_norm(c, h, in[3], in[4], NULL, NULL, 0.1f, 1e-5f));
    h = nn_flatten(c, nn_max_pool2d(c, h, 2, 2));
    return nn_cross_entropy(c, nn_linear(c, h, in[5], in[6]), labels, 0.0f);
}

static void test_cnn_composed(void) {
    enum { B = 3, C = 2, H = 6, W = 6, O = 3, OUT = 4 };
    for (int b = 0; b < B; b++) labels[b] = b % OUT;
    gradcheck g = {.name = "cnn", .n_inputs = 7, .ndim = {4, 4, 1, 1, 1, 2, 1},
                   .shape = {{B, C, H, W}, {O, C, 3, 3}, {O}, {O}, {O}, {OUT, O * (H / 2) * (W / 2)}, {OUT}},
                   .h = 1e-3f, .rtol = 3e-2f, .atol = 3e-3f, .kinks = true, .build = b_cnn};
    run_gradcheck(&g);
}

/* ---- sequences ---- */

/* ids with repeats: a table of V rows read B*T >= 2V times. */
static int seq_ids[64], seq_lengths[8];
typedef struct seq_arg {
    int B, T;
    bool state; /* start from a fixed nonzero state */
} seq_arg;

static nn_tensor *b_embedding(nn_ctx *c, nn_tensor **in, void *a) {
    const seq_arg *sa = a;
    return nn_embedding(c, in[0], seq_ids, sa->B, sa->T);
}

static void test_embedding(void) {
    int V = rand_dim(2, 5), D = rand_dim(2, 6), B = rand_dim(2, 4), T = rand_dim(V, 8);
    for (int i = 0; i < B * T; i++) seq_ids[i] = (int)nn_rng_below(rng(), (uint32_t)V);
    seq_ids[1] = seq_ids[0]; /* at least one repeat, whatever the draw */
    seq_arg arg = {B, T, false};
    gradcheck g = {.name = "embedding", .n_inputs = 1, .ndim = {2}, .shape = {{V, D}}, .h = 1e-2f, .rtol = 1e-2f,
                   .atol = 2e-3f, .build = b_embedding, .arg = &arg};
    run_gradcheck(&g);
}

/* x, w_ih, w_hh, b_ih, b_hh of a recurrent layer; the weights scaled by 0.5
 * so that 20 steps keep the gates out of saturation. */
typedef nn_tensor *(*recurrent_fn)(nn_ctx *, nn_tensor *, nn_tensor *, nn_tensor *, nn_tensor *, nn_tensor *,
                                   nn_rnn_state *);
static recurrent_fn seq_cell;
static float seq_h0[64], seq_c0[64];
static nn_tensor *b_recurrent(nn_ctx *c, nn_tensor **in, void *a) {
    const seq_arg *sa = a;
    nn_rnn_state st, *state = NULL;
    float h[64], cc[64];
    if (sa->state) { /* a copy: the op writes the final state back */
        memcpy(h, seq_h0, sizeof h);
        memcpy(cc, seq_c0, sizeof cc);
        st = (nn_rnn_state){h, cc};
        state = &st;
    }
    return seq_cell(c, in[0], nn_scale(c, in[1], 0.5f), nn_scale(c, in[2], 0.5f), in[3], in[4], state);
}

static void check_recurrent(const char *kind, recurrent_fn fn, int G) {
    static const struct {
        int T;
        bool state;
    } cases[] = {{1, false}, {5, true}, {20, false}, {20, true}};
    seq_cell = fn;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int B = rand_dim(1, 3), T = cases[k].T, D = rand_dim(2, 4), H = rand_dim(2, 5);
        for (int i = 0; i < 64; i++) seq_h0[i] = nn_rng_uniform(rng()) - 0.5f, seq_c0[i] = nn_rng_uniform(rng()) - 0.5f;
        seq_arg arg = {B, T, cases[k].state};
        char name[96];
        snprintf(name, sizeof name, "%s B %d T %d D %d H %d%s", kind, B, T, D, H,
                 cases[k].state ? " from a state" : "");
        gradcheck g = {.name = name, .n_inputs = 5, .ndim = {3, 2, 2, 1, 1},
                       .shape = {{B, T, D}, {G * H, D}, {G * H, H}, {G * H}, {G * H}}, .h = 1e-2f, .rtol = 1e-2f,
                       .atol = 2e-3f, .build = b_recurrent, .arg = &arg};
        run_gradcheck(&g);
    }
}

static void test_rnn(void) { check_recurrent("rnn", nn_rnn, 1); }
static void test_lstm(void) { check_recurrent("lstm", nn_lstm, 4); }
static void test_gru(void) { check_recurrent("gru", nn_gru, 3); }

static nn_tensor *b_last_step(nn_ctx *c, nn_tensor **in, void *a) { return nn_last_step(c, in[0], seq_lengths); }

static void test_last_step(void) {
    int B = 4, T = rand_dim(3, 7), H = rand_dim(2, 5);
    for (int b = 0; b < B; b++) seq_lengths[b] = 1 + (int)nn_rng_below(rng(), (uint32_t)T);
    seq_lengths[0] = T, seq_lengths[1] = 1; /* the ends, and lengths that differ */
    gradcheck g = {.name = "last_step", .n_inputs = 1, .ndim = {3}, .shape = {{B, T, H}}, .h = 1e-2f,
                   .rtol = 1e-2f, .atol = 2e-3f, .build = b_last_step};
    run_gradcheck(&g);
}

/* A character model as one function of its six parameters: embedding ->
 * LSTM -> per-position logits ([B*T,H] by reshape) -> cross-entropy over
 * every position; and a classifier reading each sequence's last real step. */
static nn_tensor *b_char_lstm(nn_ctx *c, nn_tensor **in, void *a) {
    const seq_arg *sa = a;
    nn_tensor *h = nn_lstm(c, nn_embedding(c, in[0], seq_ids, sa->B, sa->T), in[1], in[2], in[3], in[4], NULL);
    nn_tensor *logits = nn_linear(c, nn_reshape(c, h, 2, (int[]){-1, h->shape[2]}), in[5], in[6]);
    return nn_cross_entropy(c, logits, labels, 0.0f);
}
static nn_tensor *b_gru_classifier(nn_ctx *c, nn_tensor **in, void *a) {
    const seq_arg *sa = a;
    nn_tensor *h = nn_gru(c, nn_embedding(c, in[0], seq_ids, sa->B, sa->T), in[1], in[2], in[3], in[4], NULL);
    return nn_cross_entropy(c, nn_linear(c, nn_last_step(c, h, seq_lengths), in[5], in[6]), labels, 0.0f);
}

static void test_sequence_models(void) {
    enum { V = 5, D = 3, H = 4, B = 3, T = 6 };
    for (int i = 0; i < B * T; i++) seq_ids[i] = (int)nn_rng_below(rng(), V), labels[i] = seq_ids[i];
    seq_arg arg = {B, T, false};
    gradcheck g = {.name = "char lstm", .n_inputs = 7, .ndim = {2, 2, 2, 1, 1, 2, 1},
                   .shape = {{V, D}, {4 * H, D}, {4 * H, H}, {4 * H}, {4 * H}, {V, H}, {V}}, .h = 1e-2f,
                   .rtol = 3e-2f, .atol = 3e-3f, .build = b_char_lstm, .arg = &arg};
    run_gradcheck(&g);
    int lengths[B] = {T, 2, 4};
    memcpy(seq_lengths, lengths, sizeof lengths);
    g.name = "gru classifier (lengths 6, 2, 4)";
    g.shape[1][0] = g.shape[2][0] = g.shape[3][0] = g.shape[4][0] = 3 * H;
    g.build = b_gru_classifier;
    run_gradcheck(&g);
}

/* Rows whose label is negative are ignored: no gradient, and the mean is
 * over the others (the denominator is PyTorch's, test_torch_reference). Every
 * third row is ignored, so both kinds are checked; with none counted the loss
 * is 0 and no gradient flows. Last in the list, so that the random draws of
 * the tests before it stay as they were. */
static void test_cross_entropy_ignored(void) {
    int B = rand_dim(4, 9), C = rand_dim(2, 10);
    for (int b = 0; b < B; b++) labels[b] = b % 3 == 1 ? NN_IGNORE_LABEL : (int)nn_rng_below(rng(), (uint32_t)C);
    float smoothing = 0.0f;
    gradcheck g = unary("cross_entropy (every third label ignored)", b_cross_entropy, B, C);
    g.arg = &smoothing;
    run_gradcheck(&g);
    smoothing = 0.1f;
    g.name = "cross_entropy (every third label ignored, label smoothing 0.1)";
    run_gradcheck(&g);

    for (int b = 0; b < B; b++) labels[b] = NN_IGNORE_LABEL;
    nn_params params;
    nn_params_init(&params);
    nn_tensor *x = nn_params_add(&params, "x", 2, (int[]){B, C}, true);
    for (size_t i = 0; i < x->size; i++) x->data[i] = (float)i;
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *loss = nn_cross_entropy(ctx, x, labels, 0.1f);
    CHECK(loss->data[0] == 0.0f);
    nn_params_zero_grad(&params);
    nn_backward(ctx, loss);
    bool zero = true;
    for (size_t i = 0; i < x->size; i++) zero = zero && x->grad[i] == 0.0f;
    CHECK(zero);
    nn_ctx_free(ctx);
    nn_params_free(&params);
}

TEST_MAIN(TEST(test_matmul), TEST(test_linear), TEST(test_add), TEST(test_sub), TEST(test_mul), TEST(test_add_bias),
          TEST(test_scale), TEST(test_sum_mean), TEST(test_reshape_flatten), TEST(test_activations),
          TEST(test_softmax), TEST(test_cross_entropy), TEST(test_mse), TEST(test_dropout), TEST(test_layer_norm),
          TEST(test_conv2d), TEST(test_pool2d), TEST(test_batch_norm), TEST(test_mlp_composed),
          TEST(test_cnn_composed), TEST(test_embedding), TEST(test_rnn), TEST(test_lstm), TEST(test_gru),
          TEST(test_last_step), TEST(test_sequence_models), TEST(test_cross_entropy_ignored))
