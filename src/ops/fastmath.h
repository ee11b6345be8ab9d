/* exp and erf written so that GCC vectorises the loops that call them (the
 * libm versions are scalar calls, and erff alone was 13% of a GELU network's
 * training time). Accuracy: nn_expf within 2 ulp over [-87, 88];
 * nn_erff within 5e-7 absolute (Abramowitz & Stegun 7.1.26, 1.5e-7 in exact
 * arithmetic, plus float rounding). The GELU
 * tests against PyTorch hold them to 1e-5 relative. */
#ifndef NN_FASTMATH_H
#define NN_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x = 2^n e^r with n = round(x / ln 2) and |r| <= ln 2 / 2; e^r by its
 * Taylor polynomial to r^7, 2^n by building the float's exponent bits. */
static inline float nn_expf(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x; /* fminf would be a call */
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    /* ln 2 split in two so that n * hi is exact (Cody & Waite). */
    float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* erf(x) = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) e^(-x^2), t = 1 / (1 + p x),
 * for x >= 0, and odd; *g = the e^(-x^2) it used. */
static inline float nn_erff_exp(float x, float *g) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    *g = nn_expf(-ax * ax);
    return copysignf(1.0f - poly * *g, x);
}

static inline float nn_erff(float x) {
    float g;
    return nn_erff_exp(x, &g);
}

/* GELU (exact form) from e = erf(x / sqrt 2): the value x Phi(x), and the
 * derivative Phi(x) + x phi(x), Phi(x) = (1 + e) / 2,
 * phi(x) = exp(-x^2 / 2) / sqrt(2 pi), whose exponential is the one erf's
 * formula took at x / sqrt 2 (g of nn_erff_exp): one exponential for both.
 * One definition for the GELU op and the fused layer norm + GELU, so that
 * both give the same bits. */
#define NN_INV_SQRT_2 0.7071067811865476f
#define NN_INV_SQRT_2PI 0.3989422804014327f

static inline float nn_gelu_from_erf(float x, float e) { return 0.5f * x * (1.0f + e); }

static inline float nn_gelu_derivative(float x, float e, float g) {
    return 0.5f * (1.0f + e) + x * (NN_INV_SQRT_2PI * g);
}

/* GELU's derivative at x. */
static inline float nn_gelu_grad(float x) {
    float g, e = nn_erff_exp(x * NN_INV_SQRT_2, &g);
    return nn_gelu_derivative(x, e, g);
}

#endif
