/* The initialisers: each draws from the distribution its comment promises
 * (bounds exact, moments within a few standard errors over 200,000 draws). */
#include <math.h>

#include "check.h"
#include "nn/core.h"

enum { N = 200000 };

/* The store's one tensor of N values. */
static nn_tensor *sample(nn_params *p) {
    nn_params_init(p);
    return nn_params_add(p, "w", 1, (int[]){N}, true);
}

static void moments(const nn_tensor *t, double *mean, double *var, double *lo, double *hi) {
    double s = 0, s2 = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (size_t i = 0; i < t->size; i++) {
        s += t->data[i], s2 += (double)t->data[i] * t->data[i];
        *lo = fmin(*lo, t->data[i]), *hi = fmax(*hi, t->data[i]);
    }
    *mean = s / t->size;
    *var = s2 / t->size - *mean * *mean;
}

/* U(-a, a): inside the bounds, reaching near both, mean 0, variance a^2/3. */
static void check_uniform(const nn_tensor *t, double a, const char *what) {
    double mean, var, lo, hi;
    moments(t, &mean, &var, &lo, &hi);
    CHECKF(lo >= -a && hi <= a && lo < -0.999 * a && hi > 0.999 * a, "%s: range [%g, %g] for bound %g", what, lo, hi, a);
    CHECKF(fabs(mean) < 5 * a / sqrt(3.0 * N), "%s: mean %g", what, mean);
    CHECKF(fabs(var / (a * a / 3) - 1) < 0.02, "%s: variance %g, expected %g", what, var, a * a / 3);
}

static void test_uniform_initialisers(void) {
    nn_params p;
    nn_rng r;
    nn_rng_seed(&r, 9, 0);
    nn_tensor *t = sample(&p);
    nn_init_uniform_fan_in(t, 400, &r);
    check_uniform(t, 1.0 / 20.0, "uniform_fan_in(400)");
    nn_init_kaiming_uniform(t, 600, &r);
    check_uniform(t, sqrt(6.0 / 600), "kaiming_uniform(600)");
    nn_init_xavier_uniform(t, 300, 100, &r);
    check_uniform(t, sqrt(6.0 / 400), "xavier_uniform(300, 100)");
    nn_params_free(&p);
}

static void test_normal_and_const(void) {
    nn_params p;
    nn_rng r;
    nn_rng_seed(&r, 10, 0);
    nn_tensor *t = sample(&p);
    nn_init_normal(t, 0.5f, 0.02f, &r);
    double mean, var, lo, hi;
    moments(t, &mean, &var, &lo, &hi);
    CHECKF(fabs(mean - 0.5) < 5 * 0.02 / sqrt(N), "mean %g", mean);
    CHECKF(fabs(sqrt(var) / 0.02 - 1) < 0.02, "std %g", sqrt(var));
    CHECKF(lo > 0.5 - 6 * 0.02 && hi < 0.5 + 6 * 0.02, "range [%g, %g]", lo, hi);
    nn_init_const(t, 1.5f);
    moments(t, &mean, &var, &lo, &hi);
    CHECK(lo == 1.5 && hi == 1.5);
    nn_params_free(&p);
}

TEST_MAIN(TEST(test_uniform_initialisers), TEST(test_normal_and_const))
