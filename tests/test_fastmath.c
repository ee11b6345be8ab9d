/* The vectorisable exp and erf used by the GELU kernels, and GELU's
 * derivative, against libm in double precision over their useful range. */
#include "check.h"
#include "ops/fastmath.h"

static void test_expf_accuracy(void) {
    double worst = 0.0;
    for (float x = -80.0f; x <= 80.0f; x += 0.00731f) {
        double exact = exp((double)x), rel = fabs(nn_expf(x) - exact) / exact;
        if (rel > worst) worst = rel;
    }
    CHECKF(worst < 4e-7, "nn_expf: worst relative error %.3g", worst);
    CHECK(nn_expf(-1000.0f) < 1e-37f && nn_expf(-1000.0f) >= 0.0f);
    CHECK(isfinite(nn_expf(1000.0f)));
}

static void test_erff_accuracy(void) {
    double worst = 0.0;
    for (float x = -30.0f; x <= 30.0f; x += 0.000917f) {
        double err = fabs(nn_erff(x) - erf((double)x));
        if (err > worst) worst = err;
    }
    CHECKF(worst < 5e-7, "nn_erff: worst absolute error %.3g", worst);
    CHECK(nn_erff(0.0f) == 0.0f || fabsf(nn_erff(0.0f)) < 1e-7f);
    CHECK(nn_erff(-3.0f) == -nn_erff(3.0f));
}

/* GELU's derivative Phi(x) + x phi(x), its one exponential shared by erf
 * and the density, against double precision. */
static void test_gelu_grad_accuracy(void) {
    double worst = 0.0;
    for (float x = -12.0f; x <= 12.0f; x += 0.000731f) {
        double xd = x, exact = 0.5 * (1.0 + erf(xd / sqrt(2.0))) + xd * exp(-0.5 * xd * xd) / sqrt(2.0 * M_PI);
        double err = fabs(nn_gelu_grad(x) - exact);
        if (err > worst) worst = err;
    }
    CHECKF(worst < 1e-6, "nn_gelu_grad: worst absolute error %.3g", worst);
}

TEST_MAIN(TEST(test_expf_accuracy), TEST(test_erff_accuracy), TEST(test_gelu_grad_accuracy))
