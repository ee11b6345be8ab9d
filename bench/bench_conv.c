/* Micro-benchmark of the conv2d op on the two convolutions of the Keras MNIST
 * convnet (conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) ...) at
 * batch 128: nn_conv2d (per-image im2col and single-threaded sgemm in an
 * OpenMP loop over images) against the other design, one im2col over the
 * whole batch and one large threaded sgemm per product, written out here.
 * Both run forward and forward + backward (the first layer's input has no
 * gradient, as in a network); the results are checked against each other.
 * Prints one "key value" line per measurement, the median of the runs.
 *
 *   build/bench/bench_conv [RUNS]      (default 20) */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "nn/core.h"
#include "nn/report.h"


typedef struct layer {
    const char *name;
    int B, C, H, W, O, k;
    bool input_grad;
} layer;

/* ---- the whole-batch design: col [K, B*L], y^T [O, B*L] = W col --------------- */

typedef struct batch_conv {
    int B, C, H, W, O, k, OH, OW, K, L;
    float *col, *yt, *dyt; /* [K, B*L], [O, B*L], [O, B*L] */
} batch_conv;

/* Stride 1, no padding (the Keras layers): col[(c,i,j), n*L + oh*OW + ow]. */
static void batch_forward(batch_conv *bc, const float *x, const float *w, const float *b, float *y) {
    size_t BL = (size_t)bc->B * bc->L;
#pragma omp parallel for
    for (int n = 0; n < bc->B; n++)
        for (int c = 0; c < bc->C; c++)
            for (int i = 0; i < bc->k; i++)
                for (int j = 0; j < bc->k; j++) {
                    float *row = bc->col + ((size_t)(c * bc->k + i) * bc->k + j) * BL + (size_t)n * bc->L;
                    const float *xc = x + ((size_t)n * bc->C + c) * bc->H * bc->W;
                    for (int oh = 0; oh < bc->OH; oh++)
                        memcpy(row + oh * bc->OW, xc + (oh + i) * bc->W + j, (size_t)bc->OW * sizeof(float));
                }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bc->O, (int)BL, bc->K, 1.0f, w, bc->K, bc->col, (int)BL,
                0.0f, bc->yt, (int)BL);
#pragma omp parallel for
    for (int n = 0; n < bc->B; n++)
        for (int o = 0; o < bc->O; o++) {
            const float *src = bc->yt + (size_t)o * BL + (size_t)n * bc->L;
            float *dst = y + ((size_t)n * bc->O + o) * bc->L;
            for (int l = 0; l < bc->L; l++) dst[l] = src[l] + b[o];
        }
}

static void batch_backward(batch_conv *bc, const float *dy, const float *w, float *dx, float *dw, float *db) {
    size_t BL = (size_t)bc->B * bc->L;
#pragma omp parallel for
    for (int n = 0; n < bc->B; n++)
        for (int o = 0; o < bc->O; o++)
            memcpy(bc->dyt + (size_t)o * BL + (size_t)n * bc->L, dy + ((size_t)n * bc->O + o) * bc->L,
                   (size_t)bc->L * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bc->O, bc->K, (int)BL, 1.0f, bc->dyt, (int)BL, bc->col,
                (int)BL, 1.0f, dw, bc->K);
    for (int o = 0; o < bc->O; o++) {
        float sum = 0.0f;
        for (size_t l = 0; l < BL; l++) sum += bc->dyt[(size_t)o * BL + l];
        db[o] += sum;
    }
    if (!dx) return;
    /* dcol = W^T dy^T overwrites col, which the weight gradient has used. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bc->K, (int)BL, bc->O, 1.0f, w, bc->K, bc->dyt, (int)BL,
                0.0f, bc->col, (int)BL);
#pragma omp parallel for
    for (int n = 0; n < bc->B; n++)
        for (int c = 0; c < bc->C; c++)
            for (int i = 0; i < bc->k; i++)
                for (int j = 0; j < bc->k; j++) {
                    const float *row = bc->col + ((size_t)(c * bc->k + i) * bc->k + j) * BL + (size_t)n * bc->L;
                    float *dxc = dx + ((size_t)n * bc->C + c) * bc->H * bc->W;
                    for (int oh = 0; oh < bc->OH; oh++)
                        for (int ow = 0; ow < bc->OW; ow++) dxc[(oh + i) * bc->W + j + ow] += row[oh * bc->OW + ow];
                }
}

/* ---- the measurement ------------------------------------------------------------ */

static void fill(float *v, size_t n, nn_rng *rng, float scale) {
    for (size_t i = 0; i < n; i++) v[i] = scale * (2.0f * nn_rng_uniform(rng) - 1.0f);
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i])), scale = fmax(scale, fabs(b[i]));
    return scale > 0 ? d / scale : d;
}

static void bench_layer(const layer *ly, int runs) {
    nn_rng rng;
    nn_rng_seed(&rng, 7, 1);
    nn_params params;
    nn_params_init(&params);
    int xshape[] = {ly->B, ly->C, ly->H, ly->W};
    nn_tensor *xp = ly->input_grad ? nn_params_add(&params, "x", 4, xshape, false) : NULL;
    nn_tensor *w = nn_params_add(&params, "w", 4, (int[]){ly->O, ly->C, ly->k, ly->k}, true);
    nn_tensor *b = nn_params_add(&params, "b", 1, (int[]){ly->O}, false);
    size_t x_size = (size_t)ly->B * ly->C * ly->H * ly->W;
    float *x_data = nn_xmalloc(x_size * sizeof(float));
    fill(x_data, x_size, &rng, 1.0f);
    if (xp) memcpy(xp->data, x_data, x_size * sizeof(float));
    fill(w->data, w->size, &rng, 0.3f);
    fill(b->data, b->size, &rng, 0.1f);

    batch_conv bc = {.B = ly->B, .C = ly->C, .H = ly->H, .W = ly->W, .O = ly->O, .k = ly->k,
                     .OH = ly->H - ly->k + 1, .OW = ly->W - ly->k + 1};
    bc.K = ly->C * ly->k * ly->k;
    bc.L = bc.OH * bc.OW;
    size_t y_size = (size_t)ly->B * ly->O * bc.L, BL = (size_t)ly->B * bc.L;
    bc.col = nn_xmalloc((size_t)bc.K * BL * sizeof(float));
    bc.yt = nn_xmalloc((size_t)ly->O * BL * sizeof(float));
    bc.dyt = nn_xmalloc((size_t)ly->O * BL * sizeof(float));
    float *y2 = nn_xmalloc(y_size * sizeof(float)), *dy = nn_xmalloc(y_size * sizeof(float));
    float *dx2 = nn_xcalloc(x_size, sizeof(float)), *dw2 = nn_xcalloc(w->size, sizeof(float)),
          *db2 = nn_xcalloc(b->size, sizeof(float));
    for (size_t i = 0; i < y_size; i++) dy[i] = 1.0f; /* d sum(y) / dy, as nn_sum gives */

    double *t[4];
    for (int m = 0; m < 4; m++) t[m] = nn_xmalloc((size_t)runs * sizeof(double));
    nn_ctx *ctx = nn_ctx_new(0);
    for (int r = -2; r < runs; r++) { /* two warm-up runs */
        nn_params_zero_grad(&params);
        memset(dw2, 0, w->size * sizeof(float));
        memset(db2, 0, b->size * sizeof(float));
        if (xp) memset(dx2, 0, x_size * sizeof(float));

        nn_ctx_reset(ctx);
        nn_set_grad_enabled(ctx, false);
        nn_tensor *x = xp;
        if (!x) {
            x = nn_input(ctx, "x", 4, xshape);
            memcpy(x->data, x_data, x_size * sizeof(float));
        }
        double t0 = nn_seconds();
        nn_conv2d(ctx, x, w, b, 1, 0);
        double t1 = nn_seconds();
        nn_ctx_reset(ctx);
        nn_set_grad_enabled(ctx, true);
        if (!xp) {
            x = nn_input(ctx, "x", 4, xshape);
            memcpy(x->data, x_data, x_size * sizeof(float));
        }
        nn_tensor *y = nn_conv2d(ctx, x, w, b, 1, 0);
        nn_tensor *loss = nn_sum(ctx, y);
        double t2 = nn_seconds();
        nn_backward(ctx, loss);
        double t3 = nn_seconds();
        batch_forward(&bc, x_data, w->data, b->data, y2);
        double t4 = nn_seconds();
        batch_backward(&bc, dy, w->data, xp ? dx2 : NULL, dw2, db2);
        double t5 = nn_seconds();
        if (r == 0) {
            double d = fmax(rel_diff(y->data, y2, y_size), rel_diff(w->grad, dw2, w->size));
            d = fmax(d, rel_diff(b->grad, db2, b->size));
            if (xp) d = fmax(d, rel_diff(xp->grad, dx2, x_size));
            printf("%s.designs_max_rel_diff %.2g\n", ly->name, d);
        }
        if (r >= 0) t[0][r] = t1 - t0, t[1][r] = t3 - t2, t[2][r] = t4 - t3, t[3][r] = t5 - t4;
    }
    static const char *const designs[] = {"per_image", "whole_batch"};
    for (int d = 0; d < 2; d++) {
        double fwd = median(t[2 * d], runs), bwd = median(t[2 * d + 1], runs);
        printf("%s.%s.forward_ms %.2f\n", ly->name, designs[d], 1e3 * fwd);
        printf("%s.%s.backward_ms %.2f\n", ly->name, designs[d], 1e3 * bwd);
        printf("%s.%s.images_per_sec %.0f\n", ly->name, designs[d], ly->B / (fwd + bwd));
    }
    nn_ctx_free(ctx);
    for (int m = 0; m < 4; m++) free(t[m]);
    free(bc.col), free(bc.yt), free(bc.dyt), free(y2), free(dy), free(dx2), free(dw2), free(db2), free(x_data);
    nn_params_free(&params);
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 20;
    if (runs < 1) {
        fprintf(stderr, "usage: bench_conv [RUNS]\n");
        return 2;
    }
    static const layer layers[] = {
        {"conv1_1x28x28_32", 128, 1, 28, 28, 32, 3, false},
        {"conv2_32x13x13_64", 128, 32, 13, 13, 64, 3, true},
    };
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) bench_layer(&layers[i], runs);
    return 0;
}
