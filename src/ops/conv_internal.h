/* Shared by the convolution files: the geometry of one conv2d call and the
 * three ways to compute it, each working on a chunk of consecutive images.
 *   conv.c           the op: checks, choice of algorithm, threads, the fused
 *                    bias/ReLU/max-pool epilogue and its adjoint
 *   conv_im2col.c    any shape: per-image im2col + sgemm
 *   conv_direct.c    few input channels (a first layer): direct loops
 *   conv_winograd.c  3x3, stride 1, enough channels: Winograd F(4x4, 3x3)
 * Every algorithm computes the pre-activation z = conv(x, w) without bias
 * into a [n, O, OH, OW] buffer, and its backward takes dz in the same
 * layout; bias, ReLU and pooling are conv.c's. */
#ifndef NN_CONV_INTERNAL_H
#define NN_CONV_INTERNAL_H

#include <stddef.h>

#include "ops/ops.h"

typedef enum conv_algo { CONV_IM2COL, CONV_DIRECT, CONV_WINOGRAD } conv_algo;

typedef struct conv_geom {
    int B, C, H, W, O, KH, KW, OH, OW, S, P;
    int K, L; /* C*KH*KW and OH*OW */
} conv_geom;

/* Which algorithm nn_conv2d uses for a geometry. */
conv_algo conv_choose_algo(const conv_geom *g);

/* Floats of per-thread scratch an algorithm needs for a chunk of n images
 * (forward and backward alike). */
size_t conv_im2col_scratch(const conv_geom *g, int n);
size_t conv_direct_scratch(const conv_geom *g, int n);
size_t conv_winograd_scratch(const conv_geom *g, int n);

/* Forward of n images from x (the chunk's first image) into z [n, O, OH, OW]. */
void conv_im2col_forward(const conv_geom *g, const float *w, const float *x, int n, float *z, float *scratch);
void conv_direct_forward(const conv_geom *g, const float *w, const float *x, int n, float *z, float *scratch);
/* u is the transformed weight (conv_winograd_weights). */
void conv_winograd_forward(const conv_geom *g, const float *u, const float *x, int n, float *z, float *scratch);

/* Backward of n images given dz [n, O, OH, OW]: the weight gradient is
 * written (accumulate = false) or added (true) to dw, which is [O, K] for
 * im2col and direct and [36, C, O] (the Winograd domain) for Winograd;
 * dx (the chunk's first image, or NULL) gets the input gradient added. */
void conv_im2col_backward(const conv_geom *g, const float *w, const float *x, const float *dz, int n, float *dw,
                          bool accumulate, float *dx, float *scratch);
void conv_direct_backward(const conv_geom *g, const float *w, const float *x, const float *dz, int n, float *dw,
                          bool accumulate, float *dx, float *scratch);
void conv_winograd_backward(const conv_geom *g, const float *u, const float *x, const float *dz, int n, float *dw,
                            bool accumulate, float *dx, float *scratch);

/* Winograd's weight transform, for output channel o (the channels split
 * over threads): u [36, C, O] from w [O, C, 3, 3]; and its adjoint: the
 * gradient dw [C, 3, 3, O] (written) whose Winograd-domain form is du. */
#define WINO_POINTS 36
void conv_winograd_weights(const conv_geom *g, const float *w, int o, float *u);
void conv_winograd_weight_grad(const conv_geom *g, const float *du, float *dw);
/* How many images a chunk should hold for the products to be large enough. */
int conv_winograd_chunk(const conv_geom *g);

#endif
