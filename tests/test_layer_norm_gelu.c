/* layer_norm -> GELU [-> dropout] as one op (src/ops/layernorm.c) against
 * nn_layer_norm, nn_gelu and nn_dropout one after the other: the output,
 * the gradients of x, weight and bias of L = sum(y * R), and the random
 * generator's state afterwards (the same numbers drawn) must have the same
 * bits, in training and evaluation mode, with and without dropout, on odd
 * row lengths, 3-D input, batches over and under a thread's share, and on
 * 1, 2 and 3 threads. (The separate ops have their own gradient checks and
 * PyTorch reference values.) */
#include <omp.h>
#include <string.h>

#include "check.h"
#include "nn/core.h"
#include "ops/ops.h"
#include "core/util.h"

typedef struct ln_case {
    const char *name;
    int ndim, shape[3];
    float p;
} ln_case;

static const ln_case cases[] = {
    {"advanced block 256x1024, dropout 0.1", 2, {256, 1024}, 0.1f},
    {"odd 7x37, dropout 0.5", 2, {7, 37}, 0.5f},
    {"no dropout 300x200", 2, {300, 200}, 0.0f},
    {"3-D 4x5x24, dropout 0.2", 3, {4, 5, 24}, 0.2f},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

typedef struct result {
    float *y, *dx, *dw, *db;
    size_t n, N;
    nn_rng after;
} result;

static float *copy(const float *v, size_t n) {
    float *c = nn_xmalloc(n * sizeof(float));
    memcpy(c, v, n * sizeof(float));
    return c;
}

static void result_free(result *r) { free(r->y), free(r->dx), free(r->dw), free(r->db); }

/* One step from the same starting point, seeded per case. */
static result step(const ln_case *c, int k, bool training, bool fused) {
    nn_rng rng, drop;
    nn_rng_seed(&rng, 11, (uint64_t)k);
    nn_rng_seed(&drop, 12, (uint64_t)k);
    int N = c->shape[c->ndim - 1];
    nn_params p;
    nn_params_init(&p);
    nn_tensor *x = nn_params_add(&p, "x", c->ndim, c->shape, false);
    nn_tensor *w = nn_params_add(&p, "w", 1, &N, false);
    nn_tensor *b = nn_params_add(&p, "b", 1, &N, false);
    for (size_t i = 0; i < x->size; i++) x->data[i] = 2.0f * nn_rng_normal(&rng) + 0.5f;
    for (int i = 0; i < N; i++) w->data[i] = 1.0f + 0.3f * nn_rng_normal(&rng), b->data[i] = 0.3f * nn_rng_normal(&rng);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, training);
    nn_params_zero_grad(&p);
    nn_tensor *y;
    if (fused) {
        y = nn_layer_norm_gelu(ctx, x, w, b, 1e-5f, c->p, &drop);
    } else {
        y = nn_gelu(ctx, nn_layer_norm(ctx, x, w, b, 1e-5f), false);
        if (c->p > 0.0f) y = nn_dropout(ctx, y, c->p, &drop);
    }
    nn_tensor *R = nn_input(ctx, "R", y->ndim, y->shape);
    for (size_t i = 0; i < R->size; i++) R->data[i] = nn_rng_normal(&rng);
    nn_backward(ctx, nn_sum(ctx, nn_mul(ctx, y, R)));
    result r = {copy(y->data, y->size), copy(x->grad, x->size), copy(w->grad, w->size), copy(b->grad, b->size),
                y->size, (size_t)N, drop};
    nn_ctx_free(ctx);
    nn_params_free(&p);
    return r;
}

static size_t n_elements(const ln_case *c) {
    size_t n = 1;
    for (int d = 0; d < c->ndim; d++) n *= (size_t)c->shape[d];
    return n;
}

static bool same(const result *a, const result *b) {
    return a->n == b->n && !memcmp(a->y, b->y, a->n * sizeof(float)) && !memcmp(a->dx, b->dx, a->n * sizeof(float)) &&
           !memcmp(a->dw, b->dw, a->N * sizeof(float)) && !memcmp(a->db, b->db, a->N * sizeof(float)) &&
           !memcmp(&a->after, &b->after, sizeof a->after);
}

static size_t zeros(const float *v, size_t n) {
    size_t z = 0;
    for (size_t i = 0; i < n; i++) z += v[i] == 0.0f;
    return z;
}

static void test_matches_separate_ops(void) {
    for (int k = 0; k < N_CASES; k++) {
        const ln_case *c = &cases[k];
        size_t zero_outputs[2];
        for (int training = 0; training <= 1; training++) {
            result a = step(c, k, training, false), b = step(c, k, training, true);
            CHECKF(same(&a, &b), "%s (%s): fused differs from the separate ops", c->name,
                   training ? "training" : "evaluation");
            CHECKF(zeros(b.dx, b.n) < b.n / 2 + 1 && zeros(b.dw, b.N) == 0, "%s: gradients mostly zero", c->name);
            zero_outputs[training] = zeros(b.y, b.n);
            result_free(&a), result_free(&b);
        }
        /* dropout ran in training only (GELU itself gives a few exact zeros) */
        size_t want = c->p > 0.0f ? zero_outputs[0] + (size_t)(n_elements(c) * c->p / 2) : zero_outputs[0];
        CHECKF(c->p > 0.0f ? zero_outputs[1] >= want : zero_outputs[1] == want,
               "%s: %zu zeros in training, %zu in evaluation", c->name, zero_outputs[1], zero_outputs[0]);
    }
}

static void test_thread_count_does_not_matter(void) {
    int threads = omp_get_max_threads();
    for (int k = 0; k < N_CASES; k++) {
        const ln_case *c = &cases[k];
        omp_set_num_threads(1);
        result one = step(c, k, true, true);
        omp_set_num_threads(2);
        result two = step(c, k, true, true);
        omp_set_num_threads(3);
        result three = step(c, k, true, true);
        CHECKF(same(&one, &two) && same(&one, &three), "%s: 1, 2 and 3 threads differ", c->name);
        result_free(&one), result_free(&two), result_free(&three);
    }
    omp_set_num_threads(threads);
}

TEST_MAIN(TEST(test_matches_separate_ops), TEST(test_thread_count_does_not_matter))
