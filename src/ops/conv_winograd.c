/* 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3)
 * (Lavin & Gray 2016): each 4x4 block of outputs comes from a 6x6 input
 * tile d with 36 multiplications per channel pair instead of 144:
 *   U = G g G^T,  V = B^T d B,  Y = A^T [ sum over c of U(o,c) .* V(c) ] A
 * With the tiles of a chunk of images as rows, the channel sum is one matrix
 * product per point xi of the 6x6 grid:
 *   M[xi] = V[xi] U[xi]                       [tiles, C] x [C, O]
 * and the backward is the adjoint of each step (an exact gradient of what
 * the forward computes):
 *   dM = A dY A^T,  dU[xi] += V[xi]^T dM[xi],  dV[xi] = dM[xi] U[xi]^T,
 *   dd = B dV B^T (added where the overlapping tiles came from),
 *   dg = G^T dU G (once per step, after the batch's dU is summed).
 * Transforms work on channel-last copies ([h, w, c], channels padded to 16)
 * so that each is 16 channels wide in vector registers; the copies from and
 * to the op's [C, H, W] layout are the only transpositions. In fp32 the
 * outputs differ from a direct sum by a few 1e-6 of their scale (the
 * transforms' constants grow rounding errors ~10x), far below what training
 * notices; tests/test_conv.c bounds it. */
#include <cblas.h>
#include <string.h>

#include "ops/conv_internal.h"
#include "ops/vec16.h"

static int round16(int n) { return (n + VL - 1) / VL * VL; }

/* The chunk's layout: tiles th x tw per image, channel strides padded to 16. */
typedef struct wino_layout {
    int th, tw, T, C16, O16, Hp, Wp;
} wino_layout;

static wino_layout layout(const conv_geom *g) {
    wino_layout l = {.th = (g->OH + 3) / 4, .tw = (g->OW + 3) / 4, .C16 = round16(g->C), .O16 = round16(g->O)};
    l.T = l.th * l.tw;
    l.Hp = 4 * l.th + 2;
    l.Wp = 4 * l.tw + 2;
    return l;
}

int conv_winograd_chunk(const conv_geom *g) {
    int T = layout(g).T;
    return T >= 64 ? 1 : (64 + T - 1) / T;
}

/* Sizes of the four buffers of a chunk of n images: xT (and dxT), V (and dV),
 * M (and dM), zT (and dzT). */
static void buffer_sizes(const conv_geom *g, int n, size_t s[4]) {
    wino_layout l = layout(g);
    size_t R = (size_t)n * l.T;
    s[0] = (size_t)n * l.Hp * l.Wp * l.C16;
    s[1] = WINO_POINTS * R * l.C16;
    s[2] = WINO_POINTS * R * l.O16;
    s[3] = (size_t)n * 16 * l.T * l.O16;
}

size_t conv_winograd_scratch(const conv_geom *g, int n) {
    size_t s[4];
    buffer_sizes(g, n, s);
    return s[0] + s[1] + s[2] + s[3];
}

/* ---- the 1-D transforms, on 6 (or 4) vectors at a stride ---------------------- */

/* out = B^T in: the input transform along one axis. */
static inline void bt6(v16 *out, const v16 *in, int s) {
    v16 d0 = in[0], d1 = in[s], d2 = in[2 * s], d3 = in[3 * s], d4 = in[4 * s], d5 = in[5 * s];
    v16 t0 = d4 - 4.0f * d2, t1 = d3 - 4.0f * d1, t2 = d4 - d2, t3 = 2.0f * (d3 - d1);
    out[0] = 4.0f * d0 - 5.0f * d2 + d4;
    out[s] = t0 + t1;
    out[2 * s] = t0 - t1;
    out[3 * s] = t2 + t3;
    out[4 * s] = t2 - t3;
    out[5 * s] = 4.0f * d1 - 5.0f * d3 + d5;
}

/* out = B in: its adjoint. */
static inline void b6(v16 *out, const v16 *in, int s) {
    v16 v0 = in[0], v1 = in[s], v2 = in[2 * s], v3 = in[3 * s], v4 = in[4 * s], v5 = in[5 * s];
    out[0] = 4.0f * v0;
    out[s] = 4.0f * (v2 - v1) + 2.0f * (v4 - v3) + 4.0f * v5;
    out[2 * s] = -5.0f * v0 - 4.0f * (v1 + v2) - (v3 + v4);
    out[3 * s] = (v1 - v2) + 2.0f * (v3 - v4) - 5.0f * v5;
    out[4 * s] = v0 + v1 + v2 + v3 + v4;
    out[5 * s] = v5;
}

/* out[4] = A^T in[6]: the output transform along one axis. */
static inline void at6(v16 *out, int so, const v16 *in, int s) {
    v16 m0 = in[0], m1 = in[s], m2 = in[2 * s], m3 = in[3 * s], m4 = in[4 * s], m5 = in[5 * s];
    v16 a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
    out[0] = m0 + a + c;
    out[so] = b + 2.0f * d;
    out[2 * so] = a + 4.0f * c;
    out[3 * so] = b + 8.0f * d + m5;
}

/* out[6] = A in[4]: its adjoint. */
static inline void a6(v16 *out, int so, const v16 *in, int s) {
    v16 y0 = in[0], y1 = in[s], y2 = in[2 * s], y3 = in[3 * s];
    v16 p = y0 + y2, q = y1 + y3, p4 = y0 + 4.0f * y2, q8 = 2.0f * y1 + 8.0f * y3;
    out[0] = y0;
    out[so] = p + q;
    out[2 * so] = p - q;
    out[3 * so] = p4 + q8;
    out[4 * so] = p4 - q8;
    out[5 * so] = y3;
}

/* ---- the weights ------------------------------------------------------------------ */

static const double G[6][3] = {{1.0 / 4, 0, 0},
                               {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                               {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                               {1.0 / 24, 1.0 / 12, 1.0 / 6},
                               {1.0 / 24, -1.0 / 12, 1.0 / 6},
                               {0, 0, 1}};

void conv_winograd_weights(const conv_geom *g, const float *w, int o, float *u) {
    for (int c = 0; c < g->C; c++) {
        const float *k = w + ((size_t)o * g->C + c) * 9;
        double t[6][3]; /* G k */
        for (int a = 0; a < 6; a++)
            for (int j = 0; j < 3; j++) t[a][j] = G[a][0] * k[j] + G[a][1] * k[3 + j] + G[a][2] * k[6 + j];
        for (int a = 0; a < 6; a++)
            for (int b = 0; b < 6; b++)
                u[((size_t)(a * 6 + b) * g->C + c) * g->O + o] =
                    (float)(t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2]);
    }
}

/* out[0..3) = G^T in[6] (stride s): the weight transform's adjoint along one axis. */
static inline void gt6(v16 *out, int so, const v16 *in, int s) {
    v16 d1 = in[s] + in[2 * s], d2 = in[2 * s] - in[s], s34 = in[3 * s] + in[4 * s], d34 = in[3 * s] - in[4 * s];
    out[0] = in[0] * (1.0f / 4) - d1 * (1.0f / 6) + s34 * (1.0f / 24);
    out[so] = d2 * (1.0f / 6) + d34 * (1.0f / 12);
    out[2 * so] = (s34 - d1) * (1.0f / 6) + in[5 * s];
}

void conv_winograd_weight_grad(const conv_geom *g, const float *du, float *dw) {
    size_t point = (size_t)g->C * g->O;
    for (int c = 0; c < g->C; c++)
        for (int o = 0; o < g->O; o += VL) {
            int n = g->O - o < VL ? g->O - o : VL;
            v16 d[36], t[18], k[9];
            for (int xi = 0; xi < 36; xi++) d[xi] = v16_load_n(du + xi * point + (size_t)c * g->O + o, n);
            for (int b = 0; b < 6; b++) gt6(t + b, 6, d + b, 6);     /* along h: t[i][b] */
            for (int i = 0; i < 3; i++) gt6(k + i * 3, 1, t + i * 6, 1); /* along w: k[i][j] */
            for (int e = 0; e < 9; e++) v16_store_n(dw + ((size_t)c * 9 + e) * g->O + o, k[e], n);
        }
}

/* ---- layout changes: 16 channels x 16 positions through registers ---------------- */

/* Where position p of an [H, W] plane lies in a channel-last buffer:
 * row p / W + dh, column p % W + dw, rows of `row` positions, positions of
 * `vec` floats. A plane's positions are contiguous in [C, H, W], so blocks
 * are partial only at a plane's end. */
typedef struct cl_map {
    int W, dh, dw;
    size_t row, vec;
} cl_map;

static inline size_t cl_at(const cl_map *m, int p) {
    return ((size_t)(p / m->W + m->dh) * m->row + (size_t)(p % m->W + m->dw)) * m->vec;
}

/* dst[cl_at(p)][i] = src[i][p] for channels i < nch (planes `plane` apart;
 * the other lanes 0) and positions p < npos. */
static void to_cl(const float *src, size_t plane, int nch, int npos, float *dst, const cl_map *m) {
    for (int p = 0; p < npos; p += VL) {
        int n = npos - p < VL ? npos - p : VL;
        v16 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = i >= nch ? (v16){0} : n == VL ? v16_load(src + i * plane + p) : v16_load_n(src + i * plane + p, n);
        v16_transpose(r);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            if (j < n) v16_store(dst + cl_at(m, p + j), r[j]);
    }
}

/* dst[i][p] (+)= src[cl_at(p)][i] for channels i < nch, positions p < npos. */
static void from_cl(const float *src, const cl_map *m, int nch, int npos, float *dst, size_t plane, bool add) {
    for (int p = 0; p < npos; p += VL) {
        int n = npos - p < VL ? npos - p : VL;
        v16 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) r[j] = j < n ? v16_load(src + cl_at(m, p + j)) : (v16){0};
        v16_transpose(r);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i >= nch) break;
            float *d = dst + i * plane + p;
            if (n == VL) v16_store(d, add ? v16_load(d) + r[i] : r[i]);
            else v16_store_n(d, add ? v16_load_n(d, n) + r[i] : r[i], n);
        }
    }
}

/* xT[img][h + P][w + P][c] = x[img][c][h][w], zeros around and in the padding lanes. */
static void to_channels_last(const conv_geom *g, const wino_layout *l, const float *x, int n, float *xT) {
    /* nothing to zero when the image fills the tiles exactly */
    if (g->P || l->Hp != g->H || l->Wp != g->W || l->C16 != g->C)
        memset(xT, 0, (size_t)n * l->Hp * l->Wp * l->C16 * sizeof(float));
    size_t plane = (size_t)g->H * g->W;
    cl_map m = {.W = g->W, .dh = g->P, .dw = g->P, .row = (size_t)l->Wp, .vec = (size_t)l->C16};
    for (int img = 0; img < n; img++)
        for (int c = 0; c < g->C; c += VL)
            to_cl(x + ((size_t)img * g->C + c) * plane, plane, g->C - c < VL ? g->C - c : VL, (int)plane,
                  xT + (size_t)img * l->Hp * l->Wp * l->C16 + c, &m);
}

/* dx[img][c][h][w] += dxT[img][h + P][w + P][c] */
static void add_from_channels_last(const conv_geom *g, const wino_layout *l, const float *dxT, int n, float *dx) {
    size_t plane = (size_t)g->H * g->W;
    cl_map m = {.W = g->W, .dh = g->P, .dw = g->P, .row = (size_t)l->Wp, .vec = (size_t)l->C16};
    for (int img = 0; img < n; img++)
        for (int c = 0; c < g->C; c += VL)
            from_cl(dxT + (size_t)img * l->Hp * l->Wp * l->C16 + c, &m, g->C - c < VL ? g->C - c : VL, (int)plane,
                    dx + ((size_t)img * g->C + c) * plane, plane, true);
}

/* z[img][o][h][w] = zT[img][h][w][o] for h < OH, w < OW (zT covers whole tiles). */
static void from_tiles(const conv_geom *g, const wino_layout *l, const float *zT, int n, float *z) {
    cl_map m = {.W = g->OW, .row = (size_t)4 * l->tw, .vec = (size_t)l->O16};
    size_t tiles = (size_t)16 * l->T * l->O16;
    for (int img = 0; img < n; img++)
        for (int o = 0; o < g->O; o += VL)
            from_cl(zT + img * tiles + o, &m, g->O - o < VL ? g->O - o : VL, g->L, z + ((size_t)img * g->O + o) * g->L,
                    g->L, false);
}

/* dzT[img][h][w][o] = dz[img][o][h][w], zero outside OH x OW and in the padding lanes. */
static void to_tiles(const conv_geom *g, const wino_layout *l, const float *dz, int n, float *dzT) {
    cl_map m = {.W = g->OW, .row = (size_t)4 * l->tw, .vec = (size_t)l->O16};
    size_t tiles = (size_t)16 * l->T * l->O16;
    if (4 * l->th != g->OH || 4 * l->tw != g->OW || l->O16 != g->O) memset(dzT, 0, n * tiles * sizeof(float));
    for (int img = 0; img < n; img++)
        for (int o = 0; o < g->O; o += VL)
            to_cl(dz + ((size_t)img * g->O + o) * g->L, g->L, g->O - o < VL ? g->O - o : VL, g->L, dzT + img * tiles + o,
                  &m);
}

/* ---- the tile transforms of a chunk --------------------------------------------- */

/* V[xi][row][c] = (B^T d B)[xi] for every tile (row = img * T + tile). */
static void input_transform(const wino_layout *l, const float *xT, int n, float *V) {
    size_t R = (size_t)n * l->T, point = R * l->C16;
    for (int img = 0; img < n; img++)
        for (int ti = 0; ti < l->th; ti++)
            for (int tj = 0; tj < l->tw; tj++) {
                size_t row = (size_t)img * l->T + ti * l->tw + tj;
                const float *base = xT + (((size_t)img * l->Hp + 4 * ti) * l->Wp + 4 * tj) * l->C16;
                for (int cv = 0; cv < l->C16; cv += VL) {
                    v16 d[36], t[36];
                    for (int a = 0; a < 6; a++)
                        for (int b = 0; b < 6; b++) d[a * 6 + b] = v16_load(base + ((size_t)a * l->Wp + b) * l->C16 + cv);
                    for (int b = 0; b < 6; b++) bt6(t + b, d + b, 6); /* along h */
                    for (int a = 0; a < 6; a++) bt6(d + a * 6, t + a * 6, 1); /* along w */
                    for (int xi = 0; xi < 36; xi++) v16_store(V + xi * point + row * l->C16 + cv, d[xi]);
                }
            }
}

/* dxT[tile's 6x6 window] += (B dV B^T) for every tile, in tile order. */
static void input_transform_adjoint(const wino_layout *l, const float *dV, int n, float *dxT) {
    size_t R = (size_t)n * l->T, point = R * l->C16;
    memset(dxT, 0, (size_t)n * l->Hp * l->Wp * l->C16 * sizeof(float));
    for (int img = 0; img < n; img++)
        for (int ti = 0; ti < l->th; ti++)
            for (int tj = 0; tj < l->tw; tj++) {
                size_t row = (size_t)img * l->T + ti * l->tw + tj;
                float *base = dxT + (((size_t)img * l->Hp + 4 * ti) * l->Wp + 4 * tj) * l->C16;
                for (int cv = 0; cv < l->C16; cv += VL) {
                    v16 v[36], t[36];
                    for (int xi = 0; xi < 36; xi++) v[xi] = v16_load(dV + xi * point + row * l->C16 + cv);
                    for (int k = 0; k < 6; k++) b6(t + k * 6, v + k * 6, 1); /* along w */
                    for (int b = 0; b < 6; b++) b6(v + b, t + b, 6);         /* along h */
                    for (int a = 0; a < 6; a++)
                        for (int b = 0; b < 6; b++) {
                            float *p = base + ((size_t)a * l->Wp + b) * l->C16 + cv;
                            v16_store(p, v16_load(p) + v[a * 6 + b]);
                        }
                }
            }
}

/* zT[tile's 4x4 block] = (A^T M A) for every tile. */
static void output_transform(const wino_layout *l, const float *M, int n, float *zT) {
    size_t R = (size_t)n * l->T, point = R * l->O16;
    int Wt = 4 * l->tw;
    for (int img = 0; img < n; img++)
        for (int ti = 0; ti < l->th; ti++)
            for (int tj = 0; tj < l->tw; tj++) {
                size_t row = (size_t)img * l->T + ti * l->tw + tj;
                float *base = zT + (((size_t)img * 4 * l->th + 4 * ti) * Wt + 4 * tj) * l->O16;
                for (int ov = 0; ov < l->O16; ov += VL) {
                    v16 m[36], t[24], y[16];
                    for (int xi = 0; xi < 36; xi++) m[xi] = v16_load(M + xi * point + row * l->O16 + ov);
                    for (int a = 0; a < 6; a++) at6(t + a * 4, 1, m + a * 6, 1); /* along w: t[a][s] */
                    for (int s = 0; s < 4; s++) at6(y + s, 4, t + s, 4);         /* along h: y[r][s] */
                    for (int r = 0; r < 4; r++)
                        for (int s = 0; s < 4; s++) v16_store(base + ((size_t)r * Wt + s) * l->O16 + ov, y[r * 4 + s]);
                }
            }
}

/* dM[xi][row][o] = (A dY A^T)[xi] for every tile. */
static void output_transform_adjoint(const wino_layout *l, const float *dzT, int n, float *dM) {
    size_t R = (size_t)n * l->T, point = R * l->O16;
    int Wt = 4 * l->tw;
    for (int img = 0; img < n; img++)
        for (int ti = 0; ti < l->th; ti++)
            for (int tj = 0; tj < l->tw; tj++) {
                size_t row = (size_t)img * l->T + ti * l->tw + tj;
                const float *base = dzT + (((size_t)img * 4 * l->th + 4 * ti) * Wt + 4 * tj) * l->O16;
                for (int ov = 0; ov < l->O16; ov += VL) {
                    v16 y[16], t[24], m[36];
                    for (int r = 0; r < 4; r++)
                        for (int s = 0; s < 4; s++) y[r * 4 + s] = v16_load(base + ((size_t)r * Wt + s) * l->O16 + ov);
                    for (int r = 0; r < 4; r++) a6(t + r * 6, 1, y + r * 4, 1); /* along w: t[r][b] */
                    for (int b = 0; b < 6; b++) a6(m + b, 6, t + b, 6);         /* along h: m[a][b] */
                    for (int xi = 0; xi < 36; xi++) v16_store(dM + xi * point + row * l->O16 + ov, m[xi]);
                }
            }
}

/* ---- forward and backward of a chunk ---------------------------------------------- */

void conv_winograd_forward(const conv_geom *g, const float *u, const float *x, int n, float *z, float *scratch) {
    wino_layout l = layout(g);
    size_t s[4];
    buffer_sizes(g, n, s);
    float *xT = scratch, *V = xT + s[0], *M = V + s[1], *zT = M + s[2];
    int R = n * l.T;
    to_channels_last(g, &l, x, n, xT);
    input_transform(&l, xT, n, V);
    for (int xi = 0; xi < WINO_POINTS; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, g->O, g->C, 1.0f, V + xi * (size_t)R * l.C16,
                    l.C16, u + (size_t)xi * g->C * g->O, g->O, 0.0f, M + xi * (size_t)R * l.O16, l.O16);
    output_transform(&l, M, n, zT);
    from_tiles(g, &l, zT, n, z);
}

void conv_winograd_backward(const conv_geom *g, const float *u, const float *x, const float *dz, int n, float *dw,
                            bool accumulate, float *dx, float *scratch) {
    wino_layout l = layout(g);
    size_t s[4];
    buffer_sizes(g, n, s);
    float *xT = scratch, *V = xT + s[0], *M = V + s[1], *zT = M + s[2];
    int R = n * l.T;
    to_tiles(g, &l, dz, n, zT);
    output_transform_adjoint(&l, zT, n, M); /* M holds dM */
    if (dw) {
        to_channels_last(g, &l, x, n, xT);
        input_transform(&l, xT, n, V);
        for (int xi = 0; xi < WINO_POINTS; xi++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->C, g->O, R, 1.0f, V + xi * (size_t)R * l.C16,
                        l.C16, M + xi * (size_t)R * l.O16, l.O16, accumulate ? 1.0f : 0.0f,
                        dw + (size_t)xi * g->C * g->O, g->O);
    }
    if (!dx) return;
    for (int xi = 0; xi < WINO_POINTS; xi++) /* V now holds dV */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, g->C, g->O, 1.0f, M + xi * (size_t)R * l.O16, l.O16,
                    u + (size_t)xi * g->C * g->O, g->O, 0.0f, V + xi * (size_t)R * l.C16, l.C16);
    input_transform_adjoint(&l, V, n, xT); /* xT holds dxT */
    add_from_channels_last(g, &l, xT, n, dx);
}
