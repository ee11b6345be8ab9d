/* batch_norm + ReLU (+ 2x2 max pooling of stride 2) on a buffer, in pieces,
 * for the ops that fuse it (ops/batchnorm.c: after any op; ops/conv.c:
 * after a convolution whose output it keeps without a gradient):
 *   bn_relu_forward         statistics (training) and y
 *   bn_relu_gradient_sums   per channel, from dy: sum(g), sum(g xhat) with
 *                           g = dy [y > 0] (or at the window's winner); adds
 *                           the weight and bias gradients, and gives the
 *                           coefficients of
 *   bn_relu_input_grad      dx = k (g - mean(g) - xhat mean(g xhat)) for a
 *                           range of images (evaluation: dx = k g)
 * Each does exactly batch_norm's, nn_relu's and nn_max_pool2d's arithmetic
 * in their order, so the results have the separate ops' bits. */
#ifndef NN_BATCHNORM_RELU_H
#define NN_BATCHNORM_RELU_H

#include "ops/ops.h"

typedef struct bn_relu {
    int B, C, H, W; /* the input [B, C, H, W]; H = W = 1 for [B, C] */
    size_t plane, n, out_plane;
    bool pool, training;
    float *stats;     /* mean, rstd per channel (when recording) */
    uint8_t *winner;  /* pooling: 0..3 per output (when recording) */
    float *coef;      /* bn_relu_gradient_sums' output, 3 per channel (when recording) */
    int threads;      /* for the channel loops */
    size_t thread_floats;
    nn_ctx *ctx;      /* whose scratch holds threads x thread_floats */
} bn_relu;

/* Checks the shapes (naming op in messages), sizes the scratch and takes
 * the saved state from the arena when recording. */
void bn_relu_init(bn_relu *r, nn_ctx *ctx, const char *op, const nn_tensor *x, const nn_tensor *w,
                  const nn_tensor *b, const float *running_mean, const float *running_var, bool pool, bool recording);
/* y (pooled: [B, C, H/2, W/2]) from x, both laid out [B, C, ...]. */
void bn_relu_forward(bn_relu *r, const float *x, const nn_tensor *w, const nn_tensor *b, float *running_mean,
                     float *running_var, float momentum, float eps, float *y);
/* coef[3c..3c+2] = k, mean(g), mean(g xhat) of channel c (r->coef has room). */
void bn_relu_gradient_sums(const bn_relu *r, const float *x, const float *y, const float *dy, const nn_tensor *w,
                           const nn_tensor *b, float *coef);
/* dx of images [i0, i0 + n) (dx points at image i0): added, or written as
 * adding to zeros would (add = false); scratch holds bn_relu_plane_floats. */
void bn_relu_input_grad(const bn_relu *r, const float *x, const float *y, const float *dy, const float *coef, int i0,
                        int n, float *dx, bool add, float *scratch);
size_t bn_relu_plane_floats(const bn_relu *r);

#endif
