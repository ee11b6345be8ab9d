/* PCG32: a 64-bit LCG whose output is permuted by xorshift + random rotation
 * (the "XSH RR" variant). */
#include "nn/rng.h"

#include <math.h>

#define PCG_MULT NN_PCG_MULT

/* nn_rng_u32 is inline in the header: dropout calls it once per element. */
extern inline uint32_t nn_rng_u32(nn_rng *r);

/* The state moves by s -> a s + c; delta moves compose into one affine map
 * A s + C, built by squaring (a, c) as in fast exponentiation. */
void nn_rng_advance(nn_rng *r, uint64_t delta) {
    uint64_t a = PCG_MULT, c = r->inc, acc_a = 1, acc_c = 0;
    while (delta) {
        if (delta & 1) {
            acc_a *= a;
            acc_c = acc_c * a + c;
        }
        c = (a + 1) * c;
        a *= a;
        delta >>= 1;
    }
    r->state = acc_a * r->state + acc_c;
}

void nn_rng_seed(nn_rng *r, uint64_t seed, uint64_t stream) {
    r->state = 0;
    r->inc = (stream << 1u) | 1u;
    nn_rng_u32(r);
    r->state += seed;
    nn_rng_u32(r);
}

uint32_t nn_rng_below(nn_rng *r, uint32_t n) {
    /* Reject the low values that would make some residues more likely. */
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t x = nn_rng_u32(r);
        if (x >= threshold) return x % n;
    }
}

float nn_rng_uniform(nn_rng *r) { return (float)(nn_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float nn_rng_normal(nn_rng *r) {
    /* 1 - u is in (0, 1], so the log is finite. */
    float u1 = 1.0f - nn_rng_uniform(r);
    float u2 = nn_rng_uniform(r);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}

void nn_rng_shuffle(nn_rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)nn_rng_below(r, (uint32_t)i + 1);
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
