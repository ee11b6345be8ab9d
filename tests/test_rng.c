/* The generator: jumping ahead gives the same draws as drawing one by one
 * (what lets dropout draw its mask in parallel: see test_dropout.c). */
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

TEST_MAIN(TEST(test_advance_matches_drawing))
