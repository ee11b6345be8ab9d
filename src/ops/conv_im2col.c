/* Convolution of any shape as a matrix product (im2col), one image at a time.
 * For image n, with K = C*KH*KW and L = OH*OW:
 *   col[(c,i,j), (oh,ow)] = x[n, c, oh*S - P + i, ow*S - P + j]   (0 outside)  [K, L]
 *   z[n] = W col                              [O,K] x [K,L] -> [O,L]
 * Backward, with dz[n] [O,L]:
 *   dW += dz[n] col^T                         [O,L] x [L,K]
 *   dcol = W^T dz[n], dx[n] += col2im(dcol)   [K,O] x [O,L]; col2im adds each
 *                                             column entry back where it came from
 * The per-image col stays in cache and z needs no transposition. A 1x1
 * kernel with stride 1 and no padding is a plain product: col = x[n]. */
#include <cblas.h>

#include "ops/conv_internal.h"

static bool pointwise(const conv_geom *g) { return g->KH == 1 && g->KW == 1 && g->S == 1 && g->P == 0; }

size_t conv_im2col_scratch(const conv_geom *g, int n) {
    (void)n;
    return pointwise(g) ? 0 : (size_t)g->K * g->L;
}

/* The range [lo, hi) of output positions o whose input o*S - P + k lies in [0, n). */
static void valid_range(int n, int out, int S, int P, int k, int *lo, int *hi) {
    int first = P - k > 0 ? (P - k + S - 1) / S : 0;
    int last = n - 1 + P - k >= 0 ? (n - 1 + P - k) / S + 1 : 0;
    *lo = first < out ? first : out;
    *hi = last < out ? last : out;
    if (*hi < *lo) *hi = *lo;
}

/* The row loops are plain, restrict-qualified and split by stride so that
 * they vectorise: rows are short (11 floats in MNIST nets), and calls to
 * memcpy or alias checks per row cost as much as the copy. */
static void im2col(const conv_geom *g, const float *restrict x, float *restrict col) {
    for (int c = 0; c < g->C; c++)
        for (int i = 0; i < g->KH; i++)
            for (int j = 0; j < g->KW; j++) {
                float *restrict row = col + ((size_t)(c * g->KH + i) * g->KW + j) * g->L;
                int lo, hi, S = g->S;
                valid_range(g->W, g->OW, S, g->P, j, &lo, &hi);
                for (int oh = 0; oh < g->OH; oh++) {
                    float *restrict dst = row + (size_t)oh * g->OW;
                    int ih = oh * S - g->P + i;
                    if (ih < 0 || ih >= g->H) {
                        for (int ow = 0; ow < g->OW; ow++) dst[ow] = 0.0f;
                        continue;
                    }
                    /* src[ow] = x[c, ih, (lo + ow) S - P + j] */
                    const float *restrict src = x + ((size_t)c * g->H + ih) * g->W + lo * S - g->P + j;
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (S == 1)
                        for (int ow = 0; ow < hi - lo; ow++) dst[lo + ow] = src[ow];
                    else
                        for (int ow = 0; ow < hi - lo; ow++) dst[lo + ow] = src[ow * S];
                    for (int ow = hi; ow < g->OW; ow++) dst[ow] = 0.0f;
                }
            }
}

static void col2im_add(const conv_geom *g, const float *restrict col, float *restrict dx) {
    for (int c = 0; c < g->C; c++)
        for (int i = 0; i < g->KH; i++)
            for (int j = 0; j < g->KW; j++) {
                const float *restrict row = col + ((size_t)(c * g->KH + i) * g->KW + j) * g->L;
                int lo, hi, S = g->S;
                valid_range(g->W, g->OW, S, g->P, j, &lo, &hi);
                for (int oh = 0; oh < g->OH; oh++) {
                    int ih = oh * S - g->P + i;
                    if (ih < 0 || ih >= g->H) continue;
                    const float *restrict src = row + (size_t)oh * g->OW + lo;
                    float *restrict dst = dx + ((size_t)c * g->H + ih) * g->W + lo * S - g->P + j;
                    if (S == 1)
                        for (int ow = 0; ow < hi - lo; ow++) dst[ow] += src[ow];
                    else
                        for (int ow = 0; ow < hi - lo; ow++) dst[ow * S] += src[ow];
                }
            }
}

void conv_im2col_forward(const conv_geom *g, const float *w, const float *x, int n, float *z, float *col) {
    size_t x_size = (size_t)g->C * g->H * g->W, z_size = (size_t)g->O * g->L;
    for (int i = 0; i < n; i++) {
        const float *xi = x + i * x_size;
        if (!pointwise(g)) im2col(g, xi, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->O, g->L, g->K, 1.0f, w, g->K,
                    pointwise(g) ? xi : col, g->L, 0.0f, z + i * z_size, g->L);
    }
}

void conv_im2col_backward(const conv_geom *g, const float *w, const float *x, const float *dz, int n, float *dw,
                          bool accumulate, float *dx, float *col) {
    size_t x_size = (size_t)g->C * g->H * g->W, z_size = (size_t)g->O * g->L;
    for (int i = 0; i < n; i++) {
        const float *xi = x + i * x_size, *dzi = dz + i * z_size;
        if (dw) {
            if (!pointwise(g)) im2col(g, xi, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->O, g->K, g->L, 1.0f, dzi, g->L,
                        pointwise(g) ? xi : col, g->L, accumulate || i > 0 ? 1.0f : 0.0f, dw, g->K);
        }
        if (!dx) continue;
        float *dxi = dx + i * x_size;
        if (pointwise(g)) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->K, g->L, g->O, 1.0f, w, g->K, dzi, g->L, 1.0f,
                        dxi, g->L);
        } else {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->K, g->L, g->O, 1.0f, w, g->K, dzi, g->L, 0.0f,
                        col, g->L);
            col2im_add(g, col, dxi);
        }
    }
}
