/* batch_norm + ReLU (+ 2x2 max pooling) as one op (src/ops/batchnorm.c)
 * against nn_batch_norm, nn_relu and nn_max_pool2d one after the other: the
 * output, the gradients of x, weight and bias of L = sum(y * R), and the
 * running statistics must have the same bits, in training and in
 * evaluation mode, on odd sizes (rows and columns no window covers), 1-D
 * input, batches over and under a thread's share, and on 1, 2 and 3
 * threads. (The separate ops have their own gradient checks and PyTorch
 * reference values.) */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "nn/core.h"
#include "ops/ops.h"
#include "core/util.h"

typedef struct bn_case {
    const char *name;
    int ndim, B, C, H, W;
    bool pool;
} bn_case;

static const bn_case cases[] = {
    {"preset block 32x26x26", 4, 6, 32, 26, 26, false},
    {"preset block + pool 32x24x24", 4, 4, 32, 24, 24, true},
    {"odd 7x9 + pool", 4, 5, 3, 7, 9, true},
    {"40 images 6x5 + pool", 4, 40, 4, 6, 5, true},
    {"1-D features", 2, 8, 5, 0, 0, false},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

typedef struct result {
    float *y, *dx, *dw, *db, *mean, *var;
    size_t ny;
} result;

static float *copy(const float *v, size_t n) {
    float *c = nn_xmalloc(n * sizeof(float));
    memcpy(c, v, n * sizeof(float));
    return c;
}

static void result_free(result *r) { free(r->y), free(r->dx), free(r->dw), free(r->db), free(r->mean), free(r->var); }

/* One step from the same starting point: the parameters and statistics seeded per case. */
static result step(const bn_case *c, int k, bool training, bool fused) {
    nn_rng rng;
    nn_rng_seed(&rng, 9, (uint64_t)k);
    nn_params p;
    nn_params_init(&p);
    int shape[4] = {c->B, c->C, c->H, c->W};
    nn_tensor *x = nn_params_add(&p, "x", c->ndim, shape, false);
    nn_tensor *w = nn_params_add(&p, "w", 1, (int[]){c->C}, false);
    nn_tensor *b = nn_params_add(&p, "b", 1, (int[]){c->C}, false);
    for (size_t i = 0; i < x->size; i++) x->data[i] = 2.0f * nn_rng_normal(&rng) + 0.5f;
    for (int i = 0; i < c->C; i++) w->data[i] = 1.0f + 0.3f * nn_rng_normal(&rng), b->data[i] = 0.3f * nn_rng_normal(&rng);
    float mean[64], var[64];
    for (int i = 0; i < c->C; i++) mean[i] = 0.1f * nn_rng_normal(&rng), var[i] = 1.0f + 0.2f * nn_rng_uniform(&rng);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, training);
    nn_params_zero_grad(&p);
    nn_tensor *y;
    if (fused) {
        y = nn_batch_norm_relu(ctx, x, w, b, mean, var, 0.1f, 1e-5f, c->pool);
    } else {
        y = nn_relu(ctx, nn_batch_norm(ctx, x, w, b, mean, var, 0.1f, 1e-5f));
        if (c->pool) y = nn_max_pool2d(ctx, y, 2, 2);
    }
    nn_tensor *R = nn_input(ctx, "R", y->ndim, y->shape);
    for (size_t i = 0; i < R->size; i++) R->data[i] = nn_rng_normal(&rng);
    nn_backward(ctx, nn_sum(ctx, nn_mul(ctx, y, R)));
    result r = {copy(y->data, y->size), copy(x->grad, x->size), copy(w->grad, w->size), copy(b->grad, b->size),
                copy(mean, (size_t)c->C), copy(var, (size_t)c->C), y->size};
    nn_ctx_free(ctx);
    nn_params_free(&p);
    return r;
}

static bool same(const result *a, const result *b, const bn_case *c) {
    size_t nx = (size_t)c->B * c->C * (c->ndim == 4 ? (size_t)c->H * c->W : 1), C = (size_t)c->C;
    return a->ny == b->ny && !memcmp(a->y, b->y, a->ny * sizeof(float)) && !memcmp(a->dx, b->dx, nx * sizeof(float)) &&
           !memcmp(a->dw, b->dw, C * sizeof(float)) && !memcmp(a->db, b->db, C * sizeof(float)) &&
           !memcmp(a->mean, b->mean, C * sizeof(float)) && !memcmp(a->var, b->var, C * sizeof(float));
}

static bool nonzero(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f) return true;
    return false;
}

static void test_matches_separate_ops(void) {
    for (int k = 0; k < N_CASES; k++)
        for (int training = 0; training <= 1; training++) {
            const bn_case *c = &cases[k];
            result a = step(c, k, training, false), b = step(c, k, training, true);
            CHECKF(same(&a, &b, c), "%s (%s): fused differs from the separate ops", c->name,
                   training ? "training" : "evaluation");
            CHECKF(nonzero(b.dx, (size_t)c->B * c->C) && nonzero(b.dw, (size_t)c->C), "%s: all-zero gradient", c->name);
            result_free(&a), result_free(&b);
        }
}

static void test_thread_count_does_not_matter(void) {
    int threads = omp_get_max_threads();
    for (int k = 0; k < N_CASES; k++) {
        const bn_case *c = &cases[k];
        omp_set_num_threads(1);
        result one = step(c, k, true, true);
        omp_set_num_threads(2);
        result two = step(c, k, true, true);
        omp_set_num_threads(3);
        result three = step(c, k, true, true);
        CHECKF(same(&one, &two, c) && same(&one, &three, c), "%s: 1, 2 and 3 threads differ", c->name);
        result_free(&one), result_free(&two), result_free(&three);
    }
    omp_set_num_threads(threads);
}

TEST_MAIN(TEST(test_matches_separate_ops), TEST(test_thread_count_does_not_matter))
