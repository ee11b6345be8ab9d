/* The one random number generator of nn: PCG32 (O'Neill, pcg-random.org),
 * seeded explicitly and passed explicitly. Same seed -> same bits, on every
 * machine. No global state. */
#ifndef NN_RNG_H
#define NN_RNG_H

#include <stdint.h>

#include "nn/api.h"

NN_BEGIN_DECLS

typedef struct nn_rng {
    uint64_t state;
    uint64_t inc; /* stream selector, always odd */
} nn_rng;

/* Seeds a generator; different `stream` values give independent sequences
 * from the same seed (e.g. one for initialisation, one for shuffling). */
void nn_rng_seed(nn_rng *r, uint64_t seed, uint64_t stream);
#define NN_PCG_MULT 6364136223846793005ULL

inline uint32_t nn_rng_u32(nn_rng *r) {
    uint64_t old = r->state;
    r->state = old * NN_PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}
/* Moves the generator `delta` draws ahead in O(log delta) steps: a copy
 * advanced by k continues the sequence from draw k, so parts of one long
 * sequence can be drawn in parallel and still give the same bits. */
void nn_rng_advance(nn_rng *r, uint64_t delta);
/* Uniform integer in [0, n), without modulo bias. n must be > 0. */
uint32_t nn_rng_below(nn_rng *r, uint32_t n);
/* Uniform float in [0, 1) with 24 random bits. */
float nn_rng_uniform(nn_rng *r);
/* Standard normal (Box-Muller, one value per call). */
float nn_rng_normal(nn_rng *r);
/* Fisher-Yates shuffle of an int array. */
void nn_rng_shuffle(nn_rng *r, int *a, int n);

NN_END_DECLS

#endif
