/* The generator: jumping ahead gives the same draws as drawing one by one,
 * and dropout's mask, drawn in parallel chunks, is the one a single thread
 * drawing element i from the i-th draw would make. */
#include "check.h"
#include "nn/core.h"

static void test_advance_matches_drawing(void) {
    const uint64_t deltas[] = {0, 1, 2, 3, 17, 1000, 16384, 123457};
    for (size_t k = 0; k < sizeof deltas / sizeof *deltas; k++) {
        nn_rng a, b;
        nn_rng_seed(&a, 99, 5);
        b = a;
        for (uint64_t i = 0; i < deltas[k]; i++) nn_rng_u32(&a);
        nn_rng_advance(&b, deltas[k]);
        CHECKF(a.state == b.state && a.inc == b.inc, "advance by %llu differs from drawing",
               (unsigned long long)deltas[k]);
        CHECK(nn_rng_u32(&a) == nn_rng_u32(&b));
    }
}

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

TEST_MAIN(TEST(test_advance_matches_drawing), TEST(test_dropout_mask_is_the_sequential_one))
