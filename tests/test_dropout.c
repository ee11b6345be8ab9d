/* Dropout: the mask drawn in parallel chunks is the one a single thread
 * drawing element i from the generator's i-th draw would make; kept values
 * are scaled by 1 / (1 - p) so the expected output is the input; in
 * evaluation mode (and with p = 0) dropout is the identity. */
#include "check.h"
#include "nn/core.h"

static void test_dropout_mask_is_the_sequential_one(void) {
    enum { ROWS = 300, COLS = 999 }; /* several chunks, the last one short */
    const float p = 0.3f, keep = 1.0f / (1.0f - p);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 2, (int[]){ROWS, COLS});
    for (size_t i = 0; i < x->size; i++) x->data[i] = 1.0f + (float)(i % 13);
    nn_rng r, ref;
    nn_rng_seed(&r, 7, 3);
    ref = r;
    nn_tensor *y = nn_dropout(ctx, x, p, &r);
    uint32_t threshold = (uint32_t)(p * 16777216.0f);
    size_t wrong = 0, dropped = 0;
    for (size_t i = 0; i < x->size; i++) {
        bool kept = (nn_rng_u32(&ref) >> 8) >= threshold;
        float want = kept ? x->data[i] * keep : 0.0f;
        wrong += y->data[i] != want;
        dropped += !kept;
    }
    CHECKF(wrong == 0, "%zu of %zu elements differ from the sequential mask", wrong, x->size);
    CHECKF(r.state == ref.state, "the generator did not end %zu draws on", x->size);
    double rate = (double)dropped / x->size;
    CHECKF(rate > 0.29 && rate < 0.31, "dropped %.4f, want about %.2f", rate, p);
    nn_ctx_free(ctx);
}

static void test_expected_scale(void) {
    enum { N = 200000 };
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 1, (int[]){N});
    for (size_t i = 0; i < x->size; i++) x->data[i] = 2.0f;
    nn_rng r;
    nn_rng_seed(&r, 1, 1);
    const float ps[] = {0.1f, 0.5f, 0.8f};
    for (int k = 0; k < 3; k++) {
        nn_tensor *y = nn_dropout(ctx, x, ps[k], &r);
        double sum = 0.0;
        for (size_t i = 0; i < y->size; i++) sum += y->data[i];
        /* mean 2; the standard error of the mean is 2 sqrt(p / (1 - p) / N) */
        double mean = sum / N, se = 2.0 * sqrt(ps[k] / (1.0 - ps[k]) / N);
        CHECKF(fabs(mean - 2.0) < 5 * se, "p = %g: mean %g, want 2 +- %g", ps[k], mean, 5 * se);
    }
    nn_ctx_free(ctx);
}

static void test_identity_in_eval_and_at_zero(void) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 2, (int[]){4, 5});
    for (size_t i = 0; i < x->size; i++) x->data[i] = (float)i - 7.5f;
    nn_rng r;
    nn_rng_seed(&r, 3, 3);
    nn_rng before = r;
    CHECK(nn_dropout(ctx, x, 0.0f, &r) == x);
    nn_set_training(ctx, false);
    CHECK(nn_dropout(ctx, x, 0.5f, &r) == x);
    CHECK(nn_dropout(ctx, x, 0.5f, NULL) == x); /* no generator needed */
    CHECK(r.state == before.state);             /* and none used */
    nn_ctx_free(ctx);
}

TEST_MAIN(TEST(test_dropout_mask_is_the_sequential_one), TEST(test_expected_scale),
          TEST(test_identity_in_eval_and_at_zero))
