/* Data augmentation: random affine distortions of training images, applied on
 * the fly to each mini-batch (training only; evaluation sees the images as
 * they are).
 *
 * Each image gets its own map about its centre c = ((cols-1)/2, (rows-1)/2),
 * in pixel coordinates x = column, y = row (downwards):
 *     out(p) = in(c + R(-angle) (p - c - t) / zoom)
 * that is, the content is zoomed by `zoom`, rotated by `angle` degrees
 * (positive = counter-clockwise as the image is displayed), then moved by
 * t = (dx, dy) pixels (positive dx = right, positive dy = down). Each output
 * pixel samples the source at its inverse-mapped position with bilinear
 * interpolation; samples from outside the image read `fill`. Bilinear
 * interpolation is a convex combination, so the output stays within
 * [min(fill, min in), max(fill, max in)] (clamped there against rounding),
 * and a map that is an integer shift (angle 0, zoom 1, whole-pixel dx, dy)
 * moves pixels exactly, bit for bit. */
#ifndef NN_AUGMENT_H
#define NN_AUGMENT_H

#include <stdbool.h>
#include <stddef.h>

#include "nn/rng.h"
#include "nn/api.h"

NN_BEGIN_DECLS

typedef struct nn_augment {
    float shift;  /* max translation in pixels along each axis: uniform in [-shift, shift] */
    float rotate; /* max rotation in degrees: uniform in [-rotate, rotate] */
    float scale;  /* max relative zoom: factor uniform in [1-scale, 1+scale] */
} nn_augment;

/* ±2 px, ±10°, ±10%. */
#define NN_AUGMENT_DEFAULT ((nn_augment){.shift = 2.0f, .rotate = 10.0f, .scale = 0.1f})
/* Random values each image draws from the generator, always this many. */
#define NN_AUGMENT_DRAWS 4

/* True when every range is 0: nn_augment_batch then changes no pixel. */
bool nn_augment_is_identity(const nn_augment *a);

/* Checks a setting that comes from outside (flags): every field finite and
 * >= 0, and scale < 1 so the zoom stays positive. Returns 0, or -1 with a
 * one-line error (nn/error.h) naming the field and its value. */
int nn_augment_check(const nn_augment *a);

/* Floats of scratch nn_augment_batch needs for n images of rows x cols: a
 * copy of each source image, n * rows * cols. Sized per image rather than per
 * thread, so it does not depend on the thread count; allocate it once for the
 * largest batch and reuse it. */
size_t nn_augment_scratch_floats(int n, int rows, int cols);

/* Applies one given map (see the top of this file) to one image: src and dst
 * are rows x cols floats and must not overlap. Zoom must be > 0. */
void nn_augment_image(const float *src, float *dst, int rows, int cols, float dx, float dy,
                      float angle_deg, float zoom, float fill);

/* Distorts n images of rows x cols floats in place (x is [n, rows*cols],
 * already normalised), each with its own random map; `fill` is the
 * normalised value of a black pixel. Image i's map comes from draws
 * NN_AUGMENT_DRAWS*i .. NN_AUGMENT_DRAWS*i+3 of rng, by nn_rng_uniform, in
 * this order (u in [0, 1)):
 *     dx = shift (2u-1), dy = shift (2u-1), angle = rotate (2u-1),
 *     zoom = 1 + scale (2u-1)
 * and rng ends NN_AUGMENT_DRAWS * n draws on, always: also when the setting
 * is the identity (then x is not touched at all) and whichever ranges are 0,
 * so the sequence a generator gives later does not depend on the setting.
 * Images are warped in parallel (OpenMP), each from a copy of the generator
 * advanced to its first draw: the result is the same bits for any number of
 * threads. `scratch` holds nn_augment_scratch_floats(n, rows, cols) floats
 * (unused when the setting is the identity, may then be NULL). Allocates
 * nothing. An invalid setting (see nn_augment_check) is fatal. */
void nn_augment_batch(const nn_augment *a, float *x, int n, int rows, int cols, float fill,
                      nn_rng *rng, float *scratch);

NN_END_DECLS

#endif
