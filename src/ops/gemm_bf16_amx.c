/* The AMX-BF16 GEMM (gemm_bf16.h): both operands are converted once per call
 * into 1 KiB tiles laid out as tdpbf16ps reads them, then each 32 x 32 block
 * of C is four tile accumulators over all of K.
 *
 * Packed layout, zero beyond the matrix's edge (K padded to 32, M and N to
 * 16), every tile 16 rows of 64 bytes:
 *   op(A): row tile r (rows 16r..), k chunk c (k 32c..): 16 rows i of 16
 *          pairs {k = 2p low, 2p + 1 high}, at ap + (r KC + c) 256 words;
 *   op(B): column tile q, chunk c: 16 rows p of 16 columns j as pairs
 *          (AMX's "VNNI" layout), at bp + (q KC + c) 256 words.
 * A row tile's chunks are contiguous, so a panel streams through the cache
 * in order, and every tile load has a 64-byte stride (no cache-set
 * conflicts, whatever the leading dimensions).
 *
 * Tiles: tmm0-3 accumulate C (2 x 2 tiles), tmm4-5 hold A, tmm6-7 B: four
 * tdpbf16ps per four tile loads. C is written once after the K loop, as
 * the header defines: tiles straight into C where they are whole and C is
 * not accumulated into, otherwise through a buffer (C + acc, edge masks).
 *
 * OpenMP: the threads pack panels (or, where an operand's lanes are
 * contiguous, k chunks of rows read in order), then take blocks of C. Each
 * C entry is one thread's, its k in a fixed order of chunks, so the bits do
 * not depend on the number of threads.
 *
 * Compiled for AMX and AVX-512 with target attributes only, so the rest of
 * the build keeps its baseline; called only where nn_cpu_has_amx_bf16(). */
#include "ops/gemm_bf16.h"

#if NN_HAVE_AMX_BF16_KERNEL
#include <immintrin.h>
#include <omp.h>
#include <string.h>

#define TARGET __attribute__((target("amx-tile,amx-bf16,avx512bf16,avx512f,avx512bw,avx512vl")))

enum { T = 16, TILE_WORDS = T * T, CHUNK_K = 32 };

/* The first n of 16 lanes (n may be <= 0 or > 16). */
static inline __mmask16 lanes(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* 16 x 16 32-bit elements: r[i][j] becomes r[j][i]. Four rounds swap the
 * off-diagonal blocks of 8, 4, 2 and 1 elements between rows i and i + s. */
TARGET static void transpose16(__m512i r[16]) {
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int s = 8; s >= 1; s /= 2) {
        __mmask16 high = _mm512_test_epi32_mask(iota, _mm512_set1_epi32(s)); /* columns with bit s */
        /* lo row keeps its columns without bit s and takes hi's from c - s;
         * hi row takes lo's from c + s and keeps its own (index 16+: 2nd source) */
        __m512i lo_idx = _mm512_mask_add_epi32(iota, high, iota, _mm512_set1_epi32(16 - s));
        __m512i hi_idx = _mm512_mask_add_epi32(_mm512_add_epi32(iota, _mm512_set1_epi32(s)), high, iota,
                                               _mm512_set1_epi32(16));
        for (int i = 0; i < 16; i++) {
            if (i & s) continue;
            __m512i lo = r[i], hi = r[i + s];
            r[i] = _mm512_permutex2var_epi32(lo, lo_idx, hi);
            r[i + s] = _mm512_permutex2var_epi32(lo, hi_idx, hi);
        }
    }
}

/* 16 lanes (rows of src, ld apart; only the first `width` exist) of the 32
 * k from k0 (k < K exist), each lane's 16 pairs in one vector. */
TARGET static void load_along_k(const float *src, size_t ld, int width, int k0, int K, __m512i r[16]) {
    __mmask16 lo_k = lanes(K - k0), hi_k = lanes(K - k0 - 16);
    for (int l = 0; l < 16; l++) {
        if (l >= width) {
            r[l] = _mm512_setzero_si512();
            continue;
        }
        const float *row = src + (size_t)l * ld + k0;
        __m512 lo = _mm512_maskz_loadu_ps(lo_k, row), hi = _mm512_maskz_loadu_ps(hi_k, row + 16);
        r[l] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo); /* lo's 16 bf16 first: k pairs adjacent */
    }
}

/* The 16 pairs from k0 (k < K exist) of 16 lanes that are contiguous in
 * memory (rows k of src, ld apart; the first `width` lanes exist): rows 2p
 * and 2p + 1 interleave into r[p]. */
TARGET static void load_across_k(const float *src, size_t ld, int width, int k0, int K, __m512i r[16]) {
    static const uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                            8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i order = _mm512_loadu_si512(interleave);
    __mmask16 m = lanes(width);
    for (int p = 0; p < 16; p++) {
        int k = k0 + 2 * p;
        if (k >= K) {
            r[p] = _mm512_setzero_si512();
            continue;
        }
        const float *even = src + (size_t)k * ld;
        __m512 lo = _mm512_maskz_loadu_ps(m, even);
        __m512 hi = k + 1 < K ? _mm512_maskz_loadu_ps(m, even + ld) : _mm512_setzero_ps();
        r[p] = _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
}

TARGET static void store_tile(uint32_t *dst, const __m512i r[16]) {
    for (int i = 0; i < 16; i++) _mm512_storeu_si512(dst + i * T, r[i]);
}

/* Tiles of an operand whose pairs lie along rows of src, one lane per row
 * (op(A) not transposed, op(B) transposed): the tile's 16 lanes from lane
 * l0 (width lanes exist), all KC chunks, each lane's row read in order.
 * Pairs come out per lane; B wants them per pair. */
TARGET static void pack_along(const float *src, size_t ld, int l0, int width, int K, int KC, bool transpose,
                              uint32_t *dst) {
    int lanes_here = width - l0 < T ? width - l0 : T;
    for (int c = 0; c < KC; c++) {
        __m512i r[16];
        load_along_k(src + (size_t)l0 * ld, ld, lanes_here, c * CHUNK_K, K, r);
        if (transpose) transpose16(r);
        store_tile(dst + (size_t)c * TILE_WORDS, r);
    }
}

/* Tiles first .. last - 1 of chunk c of an operand whose lanes are
 * contiguous in memory (op(A) transposed, op(B) not): 32 rows of src read
 * 1 KiB at a time. Pairs come out per pair; A wants them per lane. */
TARGET static void pack_across(const float *src, size_t ld, int width, int K, int KC, int c, int first, int last,
                               bool transpose, uint32_t *dst) {
    for (int t = first; t < last; t++) {
        __m512i r[16];
        load_across_k(src + t * T, ld, width - t * T, c * CHUNK_K, K, r);
        if (transpose) transpose16(r);
        store_tile(dst + ((size_t)t * KC + c) * TILE_WORDS, r);
    }
}

/* Packs one operand: `tiles` panels of 16 lanes (width of them exist), as
 * A (pairs per lane) or B (pairs per pair); along says whether the pairs
 * lie along src's rows. Within an OpenMP parallel region. */
TARGET static void pack(bool as_a, bool along, const float *src, size_t ld, int width, int tiles, int K, int KC,
                        uint32_t *dst) {
    if (along) {
#pragma omp for schedule(dynamic, 2) nowait
        for (int t = 0; t < tiles; t++)
            pack_along(src, ld, t * T, width, K, KC, !as_a, dst + (size_t)t * KC * TILE_WORDS);
    } else {
        enum { GROUP = 16 }; /* tiles per work item: 1 KiB of each row */
        int groups = (tiles + GROUP - 1) / GROUP;
#pragma omp for collapse(2) schedule(dynamic, 1) nowait
        for (int c = 0; c < KC; c++)
            for (int g = 0; g < groups; g++)
                pack_across(src, ld, width, K, KC, c, g * GROUP, (g + 1) * GROUP < tiles ? (g + 1) * GROUP : tiles,
                            as_a, dst);
    }
}

/* Palette 1: eight tiles of 16 rows x 64 bytes. */
typedef struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* ldtilecfg written out here: GCC 12's _tile_loadconfig tells the compiler
 * that it reads 8 bytes only, so the rest of the struct could be left
 * unwritten. */
TARGET static void load_tile_config(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = T, cfg.colsb[t] = T * 4;
    __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
}

/* One C tile from the buffer it was stored to: m x n of it, into C or added. */
TARGET static void tile_to_c(const float *buf, float *c, size_t ldc, int m, int n, bool accumulate) {
    __mmask16 cols = lanes(n);
    for (int i = 0; i < m; i++) {
        __m512 t = _mm512_loadu_ps(buf + i * T);
        float *ci = c + i * ldc;
        if (accumulate) t = _mm512_add_ps(_mm512_maskz_loadu_ps(cols, ci), t);
        _mm512_mask_storeu_ps(ci, cols, t);
    }
}

/* Stores C tile `tile` (a constant), m x n of it valid, at c. */
#define STORE_C(tile, c, m, n)                                                                                   \
    do {                                                                                                         \
        if ((m) == T && (n) == T && !accumulate) {                                                             \
            _tile_stored(tile, c, (long)(ldc * sizeof(float)));                                                  \
        } else {                                                                                                 \
            _tile_stored(tile, buf, T * sizeof(float));                                                          \
            tile_to_c(buf, c, ldc, m, n, accumulate);                                                            \
        }                                                                                                        \
    } while (0)

/* A block of C of mt x nt tiles (each 1 or 2, constants after inlining):
 * m x n of it exist, at c. a and b: the first row and column panel. The
 * next block's C (rows x lines of 16 floats at next) is fetched into L2
 * during the K loop, a few lines per chunk: all at once they would stall on
 * the line fill buffers, and into L1 they would evict each other where C's
 * rows are a multiple of 4 KiB apart (all in the same L1 set). */
TARGET static inline __attribute__((always_inline)) void block(int mt, int nt, int KC, const uint32_t *a,
                                                               const uint32_t *b, float *c, size_t ldc, int m, int n,
                                                               bool accumulate, const float *next, int rows,
                                                               int lines) {
    float buf[TILE_WORDS] __attribute__((aligned(64)));
    const uint32_t *a1 = a + (size_t)KC * TILE_WORDS, *b1 = b + (size_t)KC * TILE_WORDS;
    int fetch = rows * lines, fetched = 0, per_chunk = KC ? (fetch + KC - 1) / KC : 0;
    _tile_zero(0);
    if (nt > 1) _tile_zero(1);
    if (mt > 1) _tile_zero(2);
    if (mt > 1 && nt > 1) _tile_zero(3);
    for (int k = 0; k < KC; k++) {
        size_t at = (size_t)k * TILE_WORDS;
        _tile_loadd(4, a + at, T * 4);
        _tile_loadd(6, b + at, T * 4);
        _tile_dpbf16ps(0, 4, 6);
        if (nt > 1) {
            _tile_loadd(7, b1 + at, T * 4);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (mt > 1) {
            _tile_loadd(5, a1 + at, T * 4);
            _tile_dpbf16ps(2, 5, 6);
            if (nt > 1) _tile_dpbf16ps(3, 5, 7);
        }
        for (int e = 0; e < per_chunk && fetched < fetch; e++, fetched++)
            _mm_prefetch((const char *)(next + fetched / lines * ldc + fetched % lines * T), _MM_HINT_T1);
    }
    int m0 = m < T ? m : T, n0 = n < T ? n : T;
    STORE_C(0, c, m0, n0);
    if (nt > 1) STORE_C(1, c + T, m0, n - T);
    if (mt > 1) STORE_C(2, c + T * ldc, m - T, n0);
    if (mt > 1 && nt > 1) STORE_C(3, c + T * ldc + T, m - T, n - T);
}

/* The block of C at tile row 2r, tile column 2q: its shape picks the
 * variant. A function of its own, with the target attribute, because the
 * tile intrinsics cannot be inlined into OpenMP's outlined region (clang). */
TARGET static void multiply_block(int r, int q, int M, int N, int KC, const uint32_t *ap, const uint32_t *bp, float *c,
                                  size_t ldc, bool accumulate) {
    int i0 = 2 * r * T, j0 = 2 * q * T, m = M - i0 < 2 * T ? M - i0 : 2 * T, n = N - j0 < 2 * T ? N - j0 : 2 * T;
    const uint32_t *a = ap + (size_t)2 * r * KC * TILE_WORDS, *b = bp + (size_t)2 * q * KC * TILE_WORDS;
    /* the next block down, or the top of the next column */
    int next_i = i0 + 2 * T < M ? i0 + 2 * T : 0, next_j = i0 + 2 * T < M ? j0 : j0 + 2 * T;
    int rows = next_j < N ? (M - next_i < 2 * T ? M - next_i : 2 * T) : 0, lines = N - next_j > T ? 2 : 1;
    const float *next = c + (size_t)next_i * ldc + (next_j < N ? next_j : 0);
    c += (size_t)i0 * ldc + j0;
    if (m > T && n > T) block(2, 2, KC, a, b, c, ldc, m, n, accumulate, next, rows, lines);
    else if (m > T) block(2, 1, KC, a, b, c, ldc, m, n, accumulate, next, rows, lines);
    else if (n > T) block(1, 2, KC, a, b, c, ldc, m, n, accumulate, next, rows, lines);
    else block(1, 1, KC, a, b, c, ldc, m, n, accumulate, next, rows, lines);
}

TARGET static void release_tiles(void) { _tile_release(); }

/* Below this many multiply-adds one thread is faster than waking two. */
#define PARALLEL_MIN_MACS (1L << 23)

TARGET void nn_gemm_bf16_amx(bool trans_a, bool trans_b, int M, int N, int K, const float *a, int lda, const float *b,
                             int ldb, bool accumulate, float *c, int ldc, void *scratch) {
    int KC = (K + CHUNK_K - 1) / CHUNK_K, MT = (M + T - 1) / T, NT = (N + T - 1) / T;
    uint32_t *ap = scratch, *bp = ap + (size_t)MT * KC * TILE_WORDS;
    int row_blocks = (MT + 1) / 2, col_blocks = (NT + 1) / 2;
    /* Dynamic schedules, as in the AVX512_BF16 kernel: a thread slowed by a
     * neighbouring process does not hold the other at the barriers. */
#pragma omp parallel if ((long)M * N * K >= PARALLEL_MIN_MACS)
    {
        pack(true, !trans_a, a, (size_t)lda, M, MT, K, KC, ap);
        pack(false, trans_b, b, (size_t)ldb, N, NT, K, KC, bp);
#pragma omp barrier
        /* The tile state is per thread: configured by each thread that gets
         * blocks, released when it has none left. Column blocks outside,
         * rows inside: consecutive blocks share a B panel. About 8 work
         * items per thread: fetching one is a locked instruction, which
         * waits for the tile instructions in flight. */
        bool configured = false;
        int blocks = row_blocks * col_blocks, per_item = blocks / (8 * omp_get_num_threads());
        per_item = per_item > 1 ? per_item : 1;
#pragma omp for schedule(dynamic, per_item) nowait
        for (int i = 0; i < blocks; i++) {
            if (!configured) load_tile_config(), configured = true;
            multiply_block(i % row_blocks, i / row_blocks, M, N, KC, ap, bp, c, (size_t)ldc, accumulate);
        }
        if (configured) release_tiles();
    }
}
#endif
