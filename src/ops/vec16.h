/* 16-float vectors (GCC's vector extensions): one AVX-512 register,
 * two AVX2 ones or four SSE ones, whatever the target has, with the same
 * results on each (v16_fma rounds once everywhere). For loops the
 * auto-vectoriser cannot do well: rows shorter than a vector, even/odd
 * lanes, 16 channels at a time. */
#ifndef NN_VEC16_H
#define NN_VEC16_H

#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* v16 goes by value only between static inline functions (here and in the
 * files that include this), across no ABI boundary; GCC notes an ABI change
 * anyway where the target lacks AVX-512. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t i16 __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));
#define VL 16

/* Unaligned loads and stores; the partial ones touch only n < 16 floats
 * (the rest of the vector reads as 0): masked moves where the target has
 * them, a copy through memory elsewhere. */
static inline v16 v16_load(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v16_store(float *p, v16 v) { memcpy(p, &v, sizeof v); }
#ifdef __AVX512F__
static inline v16 v16_load_n(const float *p, int n) {
    return (v16)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}
static inline void v16_store_n(float *p, v16 v, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v); }
#else
static inline v16 v16_load_n(const float *p, int n) {
    v16 v = {0};
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
static inline void v16_store_n(float *p, v16 v, int n) { memcpy(p, &v, (size_t)n * sizeof(float)); }
#endif

/* a * b + c with one rounding (vfmadd where the target has it). */
static inline v16 v16_fma(v16 a, v16 b, v16 c) {
#ifdef __AVX512F__
    return (v16)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#else
    for (int i = 0; i < VL; i++) c[i] = __builtin_fmaf(a[i], b[i], c[i]);
    return c;
#endif
}

/* The sum of the lanes, in a fixed order (pairwise halves). */
static inline float v16_sum(v16 v) {
    float s8[8], s4[4];
    for (int i = 0; i < 8; i++) s8[i] = v[i] + v[i + 8];
    for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* mask ? a : b, lane by lane (mask lanes all ones or all zeros, as comparisons give) */
static inline v16 v16_select(i16 mask, v16 a, v16 b) { return (v16)((mask & (i16)a) | (~mask & (i16)b)); }
static inline i16 i16_select(i16 mask, i16 a, i16 b) { return (mask & a) | (~mask & b); }

/* max(v, 0) as x > 0 ? x : 0 (so NaN gives 0, like nn_relu) */
static inline v16 v16_relu(v16 v) { return v16_select(v > (v16){0}, v, (v16){0}); }

/* A shuffle of the 32 lanes of a, b by constant indices (clang spells it
 * differently; only the fuzz build uses clang). */
#ifdef __clang__
#define V16_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define V16_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (i16){__VA_ARGS__})
#endif

/* The even and the odd lanes of the 32 floats a, b. */
static inline v16 v16_even(v16 a, v16 b) {
    return V16_SHUFFLE(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
static inline v16 v16_odd(v16 a, v16 b) {
    return V16_SHUFFLE(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
/* Interleaving even lanes e and odd lanes o back: the first and second 16. */
static inline v16 v16_interleave_lo(v16 e, v16 o) {
    return V16_SHUFFLE(e, o, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
static inline v16 v16_interleave_hi(v16 e, v16 o) {
    return V16_SHUFFLE(e, o, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
}

/* Transposes 16 rows of 16 in place: four butterfly stages; at distance d,
 * rows i and i + d swap the off-diagonal d x d blocks of every 2d columns. */
#define V16_LANE_(d, half, j)                                                                       \
    ((j) % (2 * (d)) < (d) ? (j) / (2 * (d)) * 2 * (d) + (j) % (2 * (d)) + (half) * (d)               \
                           : 16 + (j) / (2 * (d)) * 2 * (d) + (j) % (2 * (d)) - (d) + (half) * (d))
#define V16_MASK_(d, half)                                                                          \
    {V16_LANE_(d, half, 0),  V16_LANE_(d, half, 1),  V16_LANE_(d, half, 2),  V16_LANE_(d, half, 3),   \
     V16_LANE_(d, half, 4),  V16_LANE_(d, half, 5),  V16_LANE_(d, half, 6),  V16_LANE_(d, half, 7),   \
     V16_LANE_(d, half, 8),  V16_LANE_(d, half, 9),  V16_LANE_(d, half, 10), V16_LANE_(d, half, 11),  \
     V16_LANE_(d, half, 12), V16_LANE_(d, half, 13), V16_LANE_(d, half, 14), V16_LANE_(d, half, 15)}
#ifdef __clang__
/* clang has no __builtin_shuffle with a run-time mask (only the fuzz build
 * uses clang): the transpose through memory, same result. */
static inline void v16_transpose(v16 r[16]) {
    float t[16][16];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) t[j][i] = r[i][j];
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++) r[i][j] = t[i][j];
}
#else
static inline void v16_transpose(v16 r[16]) {
    static const i16 masks[4][2] = {{V16_MASK_(8, 0), V16_MASK_(8, 1)},
                                    {V16_MASK_(4, 0), V16_MASK_(4, 1)},
                                    {V16_MASK_(2, 0), V16_MASK_(2, 1)},
                                    {V16_MASK_(1, 0), V16_MASK_(1, 1)}};
    /* unrolled, so that the rows stay in registers */
#pragma GCC unroll 4
    for (int s = 0; s < 4; s++) {
        int d = 8 >> s;
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            if (!(i & d)) {
                v16 a = r[i], b = r[i + d];
                r[i] = __builtin_shuffle(a, b, masks[s][0]);
                r[i + d] = __builtin_shuffle(a, b, masks[s][1]);
            }
    }
}
#endif

#endif
