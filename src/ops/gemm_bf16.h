/* Matrix products with bfloat16 operands and fp32 accumulation, for the
 * linear layers in bf16 precision (nn/precision.h).
 *
 *   C[M,N] = (accumulate ? C : 0) + op(A)[M,K] op(B)[K,N]
 *
 * row-major, op(X) = X or X^T as in cblas_sgemm (A^T is stored [K,M] with
 * leading dimension lda, B^T [N,K]). The fp32 operands are rounded to bf16
 * inside the call (nn_bf16_from_float); C stays fp32.
 *
 * The portable kernel defines the bits of AVX512_BF16's vdpbf16ps, which
 * the AVX512_BF16 kernel gives exactly: k is taken in pairs (2p, 2p+1), an
 * odd K padded with a zero, and from acc = 0, for each pair in order
 *     acc = fma(a[2p+1], b[2p+1], acc);  acc = fma(a[2p], b[2p], acc)
 * each fma rounded once to fp32 (nearest even) with denormal results
 * flushed to zero; then C = acc, or C = C + acc (one IEEE fp32 addition).
 *
 * The AMX kernel (tdpbf16ps, 16 pairs per instruction) does not give these
 * bits, and no simple order does: measured on a Xeon with AMX, one pair's
 * two products are added exactly and rounded once before being added to
 * acc (rounded again), but with several pairs per instruction the results
 * match neither the fma order above, nor pair by pair, nor a pairwise tree,
 * nor all products summed exactly. Its results differ from the reference's
 * by the fp32 rounding of the sums only (denormal results flushed too; bf16
 * inputs are never denormal); C + acc is the same single addition. The
 * tests hold it to the reference's bound against fp64, to exact results
 * where every sum is exact in fp32, and to the same bits on any number of
 * threads. */
#ifndef NN_GEMM_BF16_H
#define NN_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether this compiler can build the AVX512_BF16 kernel (x86-64, GCC 10+,
 * clang 9+); the CPU is asked at run time. */
#if defined(__x86_64__) && (defined(__clang__) ? __clang_major__ >= 9 : (defined(__GNUC__) && __GNUC__ >= 10))
#define NN_HAVE_AVX512_BF16_KERNEL 1
#else
#define NN_HAVE_AVX512_BF16_KERNEL 0
#endif

/* And the AMX-BF16 kernel (GCC 11+, clang 12+: the AMX intrinsics). */
#if NN_HAVE_AVX512_BF16_KERNEL && (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 11)
#define NN_HAVE_AMX_BF16_KERNEL 1
#else
#define NN_HAVE_AMX_BF16_KERNEL 0
#endif

/* The SIMD kernel's register tile: MR rows of C by NR columns. */
#define NN_GEMM_BF16_MR 12
#define NN_GEMM_BF16_NR 32

/* fp32 -> bf16 bits, as vcvtne2ps2bf16: round to nearest, ties to even
 * (overflow gives infinity); NaN stays NaN (quiet, same sign); fp32
 * denormals become a zero of the same sign. */
static inline uint16_t nn_bf16_from_float(float x) {
    union { float f; uint32_t u; } v = {x};
    uint32_t u = v.u;
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN: set the quiet bit */
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);          /* zero or denormal */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16); /* a carry into the exponent is right */
}

static inline float nn_bf16_to_float(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* Bytes of scratch memory a call needs (64-byte aligned, e.g. from the arena):
 * both operands converted to bf16 and packed. */
size_t nn_gemm_bf16_scratch_bytes(int M, int N, int K);

/* The product with the best kernel this CPU runs for the shape. M, N >= 1,
 * K >= 0. */
void nn_gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, const float *a, int lda, const float *b, int ldb,
                  bool accumulate, float *c, int ldc, void *scratch);

/* Which kernel nn_gemm_bf16 runs for this shape: "amx", "avx512_bf16" or
 * "portable". */
const char *nn_gemm_bf16_kernel(int M, int N, int K);

/* The reference: plain loops, any CPU (fmaf), single-threaded. */
void nn_gemm_bf16_portable(bool trans_a, bool trans_b, int M, int N, int K, const float *a, int lda, const float *b,
                           int ldb, bool accumulate, float *c, int ldc, void *scratch);

#if NN_HAVE_AVX512_BF16_KERNEL
/* Packed panels, an MR x NR register tile of vdpbf16ps, OpenMP over the
 * tiles. Only where nn_cpu_has_avx512_bf16(). */
void nn_gemm_bf16_avx512(bool trans_a, bool trans_b, int M, int N, int K, const float *a, int lda, const float *b,
                         int ldb, bool accumulate, float *c, int ldc, void *scratch);
#endif

#if NN_HAVE_AMX_BF16_KERNEL
/* Packed 16 x 32 tiles, 2 x 2 tiles of C per block of tdpbf16ps, OpenMP
 * over the blocks. Only where nn_cpu_has_amx_bf16(). Not the portable
 * kernel's bits (see the top of this file). */
void nn_gemm_bf16_amx(bool trans_a, bool trans_b, int M, int N, int K, const float *a, int lda, const float *b,
                      int ldb, bool accumulate, float *c, int ldc, void *scratch);
#endif

#endif
