/* Direct convolution for layers with few input channels (a network's first
 * layer: C = 1, K = C*KH*KW = 9), stride 1. There a matrix product has an
 * inner dimension of 9 and spends its time packing; plain loops over output
 * rows, vectorised along the row, do the same multiply-adds in place:
 *   z[o, oh, ow]     = sum over (c, i, j) of w[o, c, i, j] xp[c, oh + i, ow + j]
 *   dw[o, c, i, j]  += sum over (oh, ow) of dz[o, oh, ow] xp[c, oh + i, ow + j]
 *   dxp[c, oh + i, ow + j] += w[o, c, i, j] dz[o, oh, ow]
 * where xp is the image with its zero padding written out (and room for
 * whole vectors at the end of each row). Rows are done 32 outputs at a time
 * in registers, a vector load of x feeding O_BLOCK output channels; the
 * row's tail is masked. Sums run in a fixed order, so results do not depend
 * on the thread count. */
#include <string.h>

#include "ops/conv_internal.h"
#include "ops/vec16.h"

#define ROW_BLOCK 32 /* outputs of a row computed together: two vectors */
#define O_BLOCK 4    /* output channels computed together (each x load feeds 4) */
#define TAP_BLOCK 9  /* weight-gradient taps summed together (18 accumulators) */

/* The padded image's row length: every read of a row block stays inside. */
static int padded_row(const conv_geom *g) {
    int blocks = (g->OW + ROW_BLOCK - 1) / ROW_BLOCK * ROW_BLOCK + g->KW - 1;
    int wp = g->W + 2 * g->P;
    return blocks > wp ? blocks : wp;
}

size_t conv_direct_scratch(const conv_geom *g, int n) {
    (void)n;
    return 2 * (size_t)g->C * (g->H + 2 * g->P) * padded_row(g); /* xp and dxp */
}

/* xp = x with P zeros around it and zeros to the end of each padded row. */
static void pad_image(const conv_geom *g, const float *x, float *xp) {
    int Hp = g->H + 2 * g->P, Wq = padded_row(g);
    memset(xp, 0, (size_t)g->C * Hp * Wq * sizeof(float));
    for (int c = 0; c < g->C; c++)
        for (int h = 0; h < g->H; h++) {
            const float *restrict src = x + ((size_t)c * g->H + h) * g->W;
            float *restrict dst = xp + ((size_t)c * Hp + h + g->P) * Wq + g->P;
            for (int w = 0; w < g->W; w++) dst[w] = src[w];
        }
}

/* The first n <= 32 floats of a row: two vectors, the tail zero. */
static inline void load_row(const float *p, int n, v16 v[2]) {
    v[0] = n >= VL ? v16_load(p) : v16_load_n(p, n);
    v[1] = n >= 2 * VL ? v16_load(p + VL) : n > VL ? v16_load_n(p + VL, n - VL) : (v16){0};
}

static inline void store_row(float *p, int n, const v16 v[2]) {
    if (n >= VL) v16_store(p, v[0]);
    else v16_store_n(p, v[0], n);
    if (n >= 2 * VL) v16_store(p + VL, v[1]);
    else if (n > VL) v16_store_n(p + VL, v[1], n - VL);
}

void conv_direct_forward(const conv_geom *g, const float *w, const float *x, int n, float *z, float *scratch) {
    int Hp = g->H + 2 * g->P, Wq = padded_row(g), taps = g->KH * g->KW;
    size_t x_size = (size_t)g->C * g->H * g->W, z_size = (size_t)g->O * g->L;
    float *xp = scratch;
    for (int img = 0; img < n; img++) {
        pad_image(g, x + img * x_size, xp);
        float *zi = z + img * z_size;
        for (int o = 0; o < g->O; o += O_BLOCK)
            for (int oh = 0; oh < g->OH; oh++)
                for (int ow0 = 0; ow0 < g->OW; ow0 += ROW_BLOCK) {
                    v16 acc[O_BLOCK][2] = {{{0}}};
                    for (int c = 0; c < g->C; c++)
                        for (int i = 0; i < g->KH; i++)
                            for (int j = 0; j < g->KW; j++) {
                                const float *xr = xp + ((size_t)c * Hp + oh + i) * Wq + ow0 + j;
                                v16 x0 = v16_load(xr), x1 = v16_load(xr + VL);
                                for (int q = 0; q < O_BLOCK; q++) {
                                    /* channels past O get 0 and are not stored */
                                    float wq = o + q < g->O ? w[((size_t)(o + q) * g->C + c) * taps + i * g->KW + j] : 0.0f;
                                    v16 wv = (v16){0} + wq;
                                    acc[q][0] = v16_fma(wv, x0, acc[q][0]);
                                    acc[q][1] = v16_fma(wv, x1, acc[q][1]);
                                }
                            }
                    int len = g->OW - ow0 < ROW_BLOCK ? g->OW - ow0 : ROW_BLOCK;
                    for (int q = 0; q < O_BLOCK && o + q < g->O; q++)
                        store_row(zi + ((size_t)(o + q) * g->OH + oh) * g->OW + ow0, len, acc[q]);
                }
    }
}

/* dw[o, c, taps t0..t0+nt) += the sums over the image of dz[o] times the shifted xp[c]. */
static void weight_grad_taps(const conv_geom *g, const float *xp, const float *dzo, int c, int t0, int nt, float *dwo) {
    int Hp = g->H + 2 * g->P, Wq = padded_row(g);
    v16 acc[TAP_BLOCK][2] = {{{0}}};
    for (int oh = 0; oh < g->OH; oh++)
        for (int ow0 = 0; ow0 < g->OW; ow0 += ROW_BLOCK) {
            v16 d[2];
            load_row(dzo + (size_t)oh * g->OW + ow0, g->OW - ow0, d); /* zero past the row: masks x */
            for (int t = 0; t < nt; t++) {
                int i = (t0 + t) / g->KW, j = (t0 + t) % g->KW;
                const float *xr = xp + ((size_t)c * Hp + oh + i) * Wq + ow0 + j;
                acc[t][0] = v16_fma(d[0], v16_load(xr), acc[t][0]);
                acc[t][1] = v16_fma(d[1], v16_load(xr + VL), acc[t][1]);
            }
        }
    for (int t = 0; t < nt; t++) dwo[t0 + t] += v16_sum(acc[t][0] + acc[t][1]);
}

void conv_direct_backward(const conv_geom *g, const float *w, const float *x, const float *dz, int n, float *dw,
                          bool accumulate, float *dx, float *scratch) {
    int Hp = g->H + 2 * g->P, Wq = padded_row(g), taps = g->KH * g->KW;
    size_t x_size = (size_t)g->C * g->H * g->W, z_size = (size_t)g->O * g->L, xp_size = (size_t)g->C * Hp * Wq;
    float *xp = scratch, *dxp = xp + xp_size;
    if (dw && !accumulate) memset(dw, 0, (size_t)g->O * g->K * sizeof(float));
    for (int img = 0; img < n; img++) {
        const float *dzi = dz + img * z_size;
        if (dw) {
            pad_image(g, x + img * x_size, xp);
            for (int o = 0; o < g->O; o++)
                for (int c = 0; c < g->C; c++)
                    for (int t0 = 0; t0 < taps; t0 += TAP_BLOCK)
                        weight_grad_taps(g, xp, dzi + (size_t)o * g->L, c, t0,
                                         taps - t0 < TAP_BLOCK ? taps - t0 : TAP_BLOCK, dw + ((size_t)o * g->C + c) * taps);
        }
        if (!dx) continue;
        memset(dxp, 0, xp_size * sizeof(float));
        for (int c = 0; c < g->C; c++)
            for (int oh = 0; oh < g->OH; oh++)
                for (int i = 0; i < g->KH; i++)
                    for (int j = 0; j < g->KW; j++) {
                        float *restrict dr = dxp + ((size_t)c * Hp + oh + i) * Wq + j;
                        for (int o = 0; o < g->O; o++) {
                            float wv = w[((size_t)o * g->C + c) * taps + i * g->KW + j];
                            const float *restrict d = dzi + (size_t)o * g->L + (size_t)oh * g->OW;
                            for (int t = 0; t < g->OW; t++) dr[t] = __builtin_fmaf(wv, d[t], dr[t]);
                        }
                    }
        float *dxi = dx + img * x_size;
        for (int c = 0; c < g->C; c++)
            for (int h = 0; h < g->H; h++) {
                float *restrict dst = dxi + ((size_t)c * g->H + h) * g->W;
                const float *restrict src = dxp + ((size_t)c * Hp + h + g->P) * Wq + g->P;
                for (int w_ = 0; w_ < g->W; w_++) dst[w_] += src[w_];
            }
    }
}
