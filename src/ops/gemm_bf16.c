/* bf16 GEMM: the kernel choice, and the portable reference that defines the
 * vdpbf16ps kernel's bits (see gemm_bf16.h). */
#include "ops/gemm_bf16.h"

#include <float.h>
#include <math.h>

#include "core/cpu.h"

size_t nn_gemm_bf16_scratch_bytes(int M, int N, int K) {
    size_t pairs = (size_t)(K + 1) / 2;
    size_t rows = (size_t)(M + NN_GEMM_BF16_MR - 1) / NN_GEMM_BF16_MR * NN_GEMM_BF16_MR;
    size_t cols = (size_t)(N + NN_GEMM_BF16_NR - 1) / NN_GEMM_BF16_NR * NN_GEMM_BF16_NR;
    size_t panels = pairs * (rows + cols) * sizeof(uint32_t);
    /* AMX's tiles: K to 32 (16 pairs), M and N to 16 */
    size_t tile_pairs = (size_t)(K + 31) / 32 * 16;
    size_t tiles = tile_pairs * ((size_t)(M + 15) / 16 * 16 + (size_t)(N + 15) / 16 * 16) * sizeof(uint32_t);
    return panels > tiles ? panels : tiles;
}

typedef enum kernel { PORTABLE, AVX512_BF16, AMX } kernel;

/* AMX wherever it runs, but for K < 16: then C's reading and writing is
 * the whole cost, more than half of AMX's 32-wide chunk of k is zeros, and
 * the vdpbf16ps kernel, which writes C straight from registers, is faster
 * (one thread, C 256 x 1024 accumulated: K = 2: 0.063 ms against AMX's
 * 0.096; K = 10, the 10-wide last layer's input gradient: 0.073-0.085
 * against 0.087-0.106; K = 16: 0.111 against 0.104; K = 32: 0.181 against
 * 0.100). The last layer's forward and weight gradient (N or M = 10, K
 * large) are 2-5x faster on AMX. */
static kernel choose(int M, int N, int K) {
    (void)M, (void)N, (void)K;
#if NN_HAVE_AMX_BF16_KERNEL
    if (K >= 16 && nn_cpu_has_amx_bf16()) return AMX;
#endif
#if NN_HAVE_AVX512_BF16_KERNEL
    if (nn_cpu_has_avx512_bf16()) return AVX512_BF16;
#endif
    return PORTABLE;
}

const char *nn_gemm_bf16_kernel(int M, int N, int K) {
    static const char *const names[] = {[PORTABLE] = "portable", [AVX512_BF16] = "avx512_bf16", [AMX] = "amx"};
    return names[choose(M, N, K)];
}

void nn_gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, const float *a, int lda, const float *b, int ldb,
                  bool accumulate, float *c, int ldc, void *scratch) {
    switch (choose(M, N, K)) {
#if NN_HAVE_AMX_BF16_KERNEL
    case AMX: nn_gemm_bf16_amx(trans_a, trans_b, M, N, K, a, lda, b, ldb, accumulate, c, ldc, scratch); return;
#endif
#if NN_HAVE_AVX512_BF16_KERNEL
    case AVX512_BF16:
        nn_gemm_bf16_avx512(trans_a, trans_b, M, N, K, a, lda, b, ldb, accumulate, c, ldc, scratch);
        return;
#endif
    default: nn_gemm_bf16_portable(trans_a, trans_b, M, N, K, a, lda, b, ldb, accumulate, c, ldc, scratch);
    }
}

/* One bf16 pair in 32 bits, as vdpbf16ps reads it: element 2p low, 2p+1 high. */
static uint32_t bf16_pair(float even, float odd) {
    return nn_bf16_from_float(even) | (uint32_t)nn_bf16_from_float(odd) << 16;
}

/* What vdpbf16ps does to denormal results: writes zero. */
static float flush_denormal(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

void nn_gemm_bf16_portable(bool trans_a, bool trans_b, int M, int N, int K, const float *a, int lda, const float *b,
                           int ldb, bool accumulate, float *c, int ldc, void *scratch) {
    int P = (K + 1) / 2;
    /* Row i of op(A) and column j of op(B), each as P pairs along k. */
    uint32_t *ap = scratch, *bp = ap + (size_t)M * P;
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k += 2) {
            float even = trans_a ? a[(size_t)k * lda + i] : a[(size_t)i * lda + k];
            float odd = k + 1 < K ? (trans_a ? a[(size_t)(k + 1) * lda + i] : a[(size_t)i * lda + k + 1]) : 0.0f;
            ap[(size_t)i * P + k / 2] = bf16_pair(even, odd);
        }
    for (int j = 0; j < N; j++)
        for (int k = 0; k < K; k += 2) {
            float even = trans_b ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j];
            float odd = k + 1 < K ? (trans_b ? b[(size_t)j * ldb + k + 1] : b[(size_t)(k + 1) * ldb + j]) : 0.0f;
            bp[(size_t)j * P + k / 2] = bf16_pair(even, odd);
        }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            const uint32_t *ai = ap + (size_t)i * P, *bj = bp + (size_t)j * P;
            float acc = 0.0f;
            for (int p = 0; p < P; p++) {
                acc = flush_denormal(fmaf(nn_bf16_to_float((uint16_t)(ai[p] >> 16)),
                                          nn_bf16_to_float((uint16_t)(bj[p] >> 16)), acc));
                acc = flush_denormal(fmaf(nn_bf16_to_float((uint16_t)ai[p]), nn_bf16_to_float((uint16_t)bj[p]), acc));
            }
            c[(size_t)i * ldc + j] = accumulate ? c[(size_t)i * ldc + j] + acc : acc;
        }
}
