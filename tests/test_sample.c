/* nn_sample_token: greedy picks the largest score; with a temperature the
 * draws follow softmax(logits / T) (frequencies over 200,000 draws within 5
 * standard errors); top-k never draws outside the k best; same seed, same
 * tokens. */
#include <math.h>

#include "check.h"
#include "nn/model.h"

static const float logits[5] = {1.0f, 3.0f, -2.0f, 2.5f, 0.0f};

static void test_greedy(void) {
    nn_rng r;
    nn_rng_seed(&r, 1, 0);
    CHECK(nn_sample_token(logits, 5, 0.0f, 0, &r) == 1);
    CHECK(nn_sample_token(logits, 5, 1.0f, 1, &r) == 1);
    const float ties[3] = {2.0f, 5.0f, 5.0f};
    CHECK(nn_sample_token(ties, 3, 0.0f, 0, &r) == 1); /* the first of equals */
}

/* Frequencies of n draws against p_v = softmax(logits / t) over the k best. */
static void check_frequencies(float t, int k) {
    enum { N = 200000 };
    double p[5], total = 0;
    int order[5] = {1, 3, 0, 4, 2}; /* by score */
    for (int v = 0; v < 5; v++) p[v] = 0;
    for (int i = 0; i < (k ? k : 5); i++) total += p[order[i]] = exp(logits[order[i]] / t);
    long count[5] = {0};
    nn_rng r;
    nn_rng_seed(&r, 7, 1);
    for (int i = 0; i < N; i++) count[nn_sample_token(logits, 5, t, k, &r)]++;
    for (int v = 0; v < 5; v++) {
        double want = p[v] / total, got = (double)count[v] / N, se = sqrt(want * (1 - want) / N);
        CHECKF(fabs(got - want) <= 5 * se + 1e-12, "T %g top-k %d: token %d drawn %.4f of the time, expected %.4f", t,
               k, v, got, want);
    }
}

static void test_temperature_and_top_k(void) {
    check_frequencies(1.0f, 0);
    check_frequencies(0.5f, 0);
    check_frequencies(2.0f, 0);
    check_frequencies(1.0f, 2);
    check_frequencies(1.5f, 3);
}

static void test_same_seed_same_tokens(void) {
    nn_rng a, b;
    nn_rng_seed(&a, 3, 0);
    nn_rng_seed(&b, 3, 0);
    for (int i = 0; i < 100; i++) CHECK(nn_sample_token(logits, 5, 0.8f, 0, &a) == nn_sample_token(logits, 5, 0.8f, 0, &b));
}

TEST_MAIN(TEST(test_greedy), TEST(test_temperature_and_top_k), TEST(test_same_seed_same_tokens))
