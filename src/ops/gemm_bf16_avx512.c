/* The AVX512_BF16 GEMM (gemm_bf16.h): both operands are converted once per
 * call into bf16 panels laid out the way vdpbf16ps reads them, then each
 * MR x NR tile of C is one register-blocked loop over all of K.
 *
 * Packed layout: for each pair p of k, a panel holds its width (MR rows of
 * op(A) or NR columns of op(B)) as 32-bit pairs {k = 2p low, 2p + 1 high},
 * zero beyond the matrix's edge, so the kernel always runs a full tile and
 * only C's loads and stores are masked. A tile's A panel (12 x K) and B panel
 * (K x 32) are read from L1/L2 once per tile; no blocking of K is needed for
 * the sizes of an MLP (the whole packed A of a step fits in L2).
 *
 * Compiled for AVX-512 with target attributes only, so the rest of the build
 * keeps its baseline; called only where the CPU has the instructions. */
#include "ops/gemm_bf16.h"

#if NN_HAVE_AVX512_BF16_KERNEL
#include <immintrin.h>

#define TARGET __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl")))

enum { MR = NN_GEMM_BF16_MR, NR = NN_GEMM_BF16_NR, NV = NR / 16 };

/* The first n of 16 lanes (n may be <= 0 or > 16). */
static inline __mmask16 lanes(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* 16 x 16 32-bit elements: rows r[0..15] become columns, in place. */
TARGET static void transpose16(__m512i r[16]) {
    __m512i a[16], b[16];
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* b[4i + c], 128-bit lane L: column 4L + c of rows 4i .. 4i + 3 */
    for (int i = 0; i < 16; i += 4) {
        b[i] = _mm512_unpacklo_epi64(a[i], a[i + 2]);
        b[i + 1] = _mm512_unpackhi_epi64(a[i], a[i + 2]);
        b[i + 2] = _mm512_unpacklo_epi64(a[i + 1], a[i + 3]);
        b[i + 3] = _mm512_unpackhi_epi64(a[i + 1], a[i + 3]);
    }
    /* a 4 x 4 transpose of 128-bit lanes among b[c], b[4 + c], b[8 + c], b[12 + c] */
    for (int c = 0; c < 4; c++) {
        __m512i p0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x88), p1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xdd);
        __m512i p2 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x88), p3 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xdd);
        r[c] = _mm512_shuffle_i32x4(p0, p2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(p1, p3, 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(p0, p2, 0xdd);
        r[12 + c] = _mm512_shuffle_i32x4(p1, p3, 0xdd);
    }
}

/* A panel of W lanes, element (k, j) at src[j * ld + k]: pairs are adjacent
 * floats, so 32 floats of a lane's row convert into its next 16 pairs; 16
 * lanes at a time are transposed so that each pair p is stored as a row. */
TARGET static void pack_k_contiguous(const float *src, size_t ld, int width, int W, int K, uint32_t *dst) {
    for (int j0 = 0; j0 < W; j0 += 16) {
        __mmask16 store = lanes(W - j0);
        for (int k = 0; k < K; k += 32) {
            __mmask16 lo_k = lanes(K - k), hi_k = lanes(K - k - 16);
            __m512i r[16];
            for (int j = 0; j < 16; j++) {
                if (j0 + j >= width) {
                    r[j] = _mm512_setzero_si512();
                    continue;
                }
                const float *row = src + (size_t)(j0 + j) * ld + k;
                __m512 lo = _mm512_maskz_loadu_ps(lo_k, row), hi = _mm512_maskz_loadu_ps(hi_k, row + 16);
                r[j] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            }
            transpose16(r);
            int pairs = (K - k + 1) / 2 < 16 ? (K - k + 1) / 2 : 16;
            for (int p = 0; p < pairs; p++) _mm512_mask_storeu_epi32(dst + (size_t)(k / 2 + p) * W + j0, store, r[p]);
        }
    }
}

/* A panel of W lanes, element (k, j) at src[k * ld + j]: rows 2p and 2p + 1
 * convert together and interleave into 16 pairs at a time. */
TARGET static void pack_j_contiguous(const float *src, size_t ld, int width, int W, int K, uint32_t *dst) {
    static const uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                            8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i order = _mm512_loadu_si512(interleave);
    for (int k = 0; k < K; k += 2) {
        const float *even = src + (size_t)k * ld, *odd = even + ld;
        uint32_t *d = dst + (size_t)(k / 2) * W;
        for (int j = 0; j < W; j += 16) {
            __mmask16 m = lanes(width - j);
            __m512 lo = _mm512_maskz_loadu_ps(m, even + j);
            __m512 hi = k + 1 < K ? _mm512_maskz_loadu_ps(m, odd + j) : _mm512_setzero_ps();
            __m512i words = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* lo's 16, then hi's 16 */
            _mm512_mask_storeu_epi32(d + j, lanes(W - j), _mm512_permutexvar_epi16(order, words));
        }
    }
}

/* C[m, n] (m <= MR, n <= NR) = the tile's product over P pairs, or C plus
 * it. C is read only at the end (prefetched at the start), so its cache
 * misses overlap the product. */
TARGET static void kernel(int P, const uint32_t *a, const uint32_t *b, float *c, size_t ldc, int m, int n,
                          bool accumulate) {
    __m512 acc[MR][NV];
    __mmask16 cols[NV];
    for (int v = 0; v < NV; v++) cols[v] = lanes(n - 16 * v);
    for (int i = 0; i < m; i++)
        for (int v = 0; v < NV; v++)
            if (cols[v]) _mm_prefetch((const char *)(c + i * ldc + 16 * v), _MM_HINT_T0);
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (int p = 0; p < P; p++, a += MR, b += NR) {
        __m512bh bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + 16 * v);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++)
        if (i < m)
            for (int v = 0; v < NV; v++) {
                float *ci = c + i * ldc + 16 * v;
                __m512 sum = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(cols[v], ci), acc[i][v]) : acc[i][v];
                _mm512_mask_storeu_ps(ci, cols[v], sum);
            }
}

/* Below this many multiply-adds one thread is faster than waking two. */
#define PARALLEL_MIN_MACS (1L << 23)

TARGET void nn_gemm_bf16_avx512(bool trans_a, bool trans_b, int M, int N, int K, const float *a, int lda,
                                const float *b, int ldb, bool accumulate, float *c, int ldc, void *scratch) {
    int P = (K + 1) / 2, row_panels = (M + MR - 1) / MR, col_panels = (N + NR - 1) / NR;
    uint32_t *ap = scratch, *bp = ap + (size_t)row_panels * MR * P;
    /* Work is handed out a little at a time as threads come free (dynamic
     * schedules), so that a thread slowed by a neighbouring process on a
     * shared machine does not hold the other at the barriers. */
#pragma omp parallel if ((long)M * N * K >= PARALLEL_MIN_MACS)
    {
#pragma omp for schedule(dynamic, 2) nowait
        for (int r = 0; r < row_panels; r++) {
            int i0 = r * MR, rows = M - i0 < MR ? M - i0 : MR;
            uint32_t *dst = ap + (size_t)r * MR * P;
            if (trans_a) pack_j_contiguous(a + i0, (size_t)lda, rows, MR, K, dst);
            else pack_k_contiguous(a + (size_t)i0 * lda, (size_t)lda, rows, MR, K, dst);
        }
#pragma omp for schedule(dynamic, 2)
        for (int q = 0; q < col_panels; q++) {
            int j0 = q * NR, cols = N - j0 < NR ? N - j0 : NR;
            uint32_t *dst = bp + (size_t)q * NR * P;
            if (trans_b) pack_k_contiguous(b + (size_t)j0 * ldb, (size_t)ldb, cols, NR, K, dst);
            else pack_j_contiguous(b + j0, (size_t)ldb, cols, NR, K, dst);
        }
        /* Column panels outside, rows inside: consecutive tiles share a B panel. */
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int q = 0; q < col_panels; q++)
            for (int r = 0; r < row_panels; r++) {
                int i0 = r * MR, j0 = q * NR;
                kernel(P, ap + (size_t)r * MR * P, bp + (size_t)q * NR * P, c + (size_t)i0 * ldc + j0, (size_t)ldc,
                       M - i0 < MR ? M - i0 : MR, N - j0 < NR ? N - j0 : NR, accumulate);
            }
    }
}
#endif
