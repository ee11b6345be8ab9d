/* Random affine distortions of training images (see nn/augment.h).
 *
 * Inverse mapping: output pixel p samples the source at
 *     q = c + M (p - c - t),  M = R(-angle) / zoom,
 * which in x = column, y = row (downwards) coordinates is
 *     M = [ cos  -sin ] / zoom      (angle counter-clockwise on screen)
 *         [ sin   cos ]
 * and the sample is bilinear in the four pixels around q, a pixel outside
 * the image reading as `fill`. Interpolating as a + f (b - a) with the
 * fractions f in [0, 1) gives exactly a when f = 0, so an identity or
 * integer-shift map reproduces pixels; those maps take a plain copy anyway. */
#include <math.h>
#include <string.h>

#include "nn/augment.h"
#include "nn/error.h"

/* Images per batch below which one thread does the whole batch (about
 * 5 microseconds an MNIST image: a fork costs about as much as one). */
#define AUGMENT_PARALLEL_MIN 8

bool nn_augment_is_identity(const nn_augment *a) {
    return a->shift == 0.0f && a->rotate == 0.0f && a->scale == 0.0f;
}

int nn_augment_check(const nn_augment *a) {
    if (!(isfinite(a->shift) && a->shift >= 0.0f))
        return nn_error("augment: shift %g must be a number of pixels >= 0", a->shift);
    if (!(isfinite(a->rotate) && a->rotate >= 0.0f))
        return nn_error("augment: rotate %g must be a number of degrees >= 0", a->rotate);
    if (!(isfinite(a->scale) && a->scale >= 0.0f && a->scale < 1.0f))
        return nn_error("augment: scale %g must be in [0, 1)", a->scale);
    return 0;
}

size_t nn_augment_scratch_floats(int n, int rows, int cols) {
    return (size_t)(n > 0 ? n : 0) * (size_t)rows * (size_t)cols;
}

/* The source pixel (x, y), or fill outside the image. */
static inline float pixel_or_fill(const float *src, int rows, int cols, int x, int y, float fill) {
    return x >= 0 && x < cols && y >= 0 && y < rows ? src[(size_t)y * cols + x] : fill;
}

/* dst = src moved by whole pixels (dx right, dy down), fill where nothing
 * lands: exact copies of the source values. */
static void shift_whole(const float *restrict src, float *restrict dst, int rows, int cols,
                        long dx, long dy, float fill) {
    for (int y = 0; y < rows; y++) {
        float *out = dst + (size_t)y * cols;
        long sy = y - dy;
        if (sy < 0 || sy >= rows || dx <= -cols || dx >= cols) {
            for (int x = 0; x < cols; x++) out[x] = fill;
            continue;
        }
        const float *in = src + (size_t)sy * cols;
        int x0 = dx > 0 ? (int)dx : 0, x1 = dx < 0 ? cols + (int)dx : cols; /* out[x0..x1) */
        for (int x = 0; x < x0; x++) out[x] = fill;
        memcpy(out + x0, in + (x0 - dx), (size_t)(x1 - x0) * sizeof *out);
        for (int x = x1; x < cols; x++) out[x] = fill;
    }
}

void nn_augment_image(const float *restrict src, float *restrict dst, int rows, int cols, float dx,
                      float dy, float angle_deg, float zoom, float fill) {
    if (!(zoom > 0.0f) || !isfinite(zoom) || !isfinite(dx) || !isfinite(dy) || !isfinite(angle_deg))
        nn_fatal("nn_augment_image: map dx %g dy %g angle %g zoom %g", dx, dy, angle_deg, zoom);
    if (angle_deg == 0.0f && zoom == 1.0f && dx == rintf(dx) && dy == rintf(dy)) {
        /* Moves of a whole side or more leave only fill; clamp before converting. */
        float sx = fminf(fmaxf(dx, (float)-cols), (float)cols);
        float sy = fminf(fmaxf(dy, (float)-rows), (float)rows);
        shift_whole(src, dst, rows, cols, lrintf(sx), lrintf(sy), fill);
        return;
    }
    /* The range the output must stay in: bilinear weights are convex, so this
     * only catches rounding. */
    float lo = fill, hi = fill;
    size_t pixels = (size_t)rows * cols;
    for (size_t i = 0; i < pixels; i++) {
        lo = src[i] < lo ? src[i] : lo;
        hi = src[i] > hi ? src[i] : hi;
    }
    double rad = (double)angle_deg * (3.14159265358979323846 / 180.0);
    float m00 = (float)(cos(rad) / zoom), m01 = (float)(-sin(rad) / zoom);
    float m10 = -m01, m11 = m00;
    float cx = 0.5f * (float)(cols - 1), cy = 0.5f * (float)(rows - 1);
    for (int y = 0; y < rows; y++) {
        float py = (float)y - cy - dy;
        float bx = cx + m01 * py, by = cy + m11 * py; /* q at px = 0 */
        float *out = dst + (size_t)y * cols;
        for (int x = 0; x < cols; x++) {
            float px = (float)x - cx - dx;
            float qx = bx + m00 * px, qy = by + m10 * px;
            /* Beyond one pixel outside, every neighbour is fill; clamping
             * there keeps the integer conversion in range and gives fill. */
            qx = qx < -1.0f ? -1.0f : qx > (float)cols ? (float)cols : qx;
            qy = qy < -1.0f ? -1.0f : qy > (float)rows ? (float)rows : qy;
            float fx0 = floorf(qx), fy0 = floorf(qy);
            float fx = qx - fx0, fy = qy - fy0;
            int x0 = (int)fx0, y0 = (int)fy0;
            float a, b, c, d; /* (x0,y0) (x0+1,y0) (x0,y0+1) (x0+1,y0+1) */
            if (x0 >= 0 && x0 < cols - 1 && y0 >= 0 && y0 < rows - 1) {
                const float *s = src + (size_t)y0 * cols + x0;
                a = s[0], b = s[1], c = s[cols], d = s[cols + 1];
            } else {
                a = pixel_or_fill(src, rows, cols, x0, y0, fill);
                b = pixel_or_fill(src, rows, cols, x0 + 1, y0, fill);
                c = pixel_or_fill(src, rows, cols, x0, y0 + 1, fill);
                d = pixel_or_fill(src, rows, cols, x0 + 1, y0 + 1, fill);
            }
            float top = a + fx * (b - a), bottom = c + fx * (d - c);
            float v = top + fy * (bottom - top);
            out[x] = v < lo ? lo : v > hi ? hi : v;
        }
    }
}

void nn_augment_batch(const nn_augment *a, float *x, int n, int rows, int cols, float fill,
                      nn_rng *rng, float *scratch) {
    if (nn_augment_check(a) != 0) nn_fatal("nn_augment_batch: %s", nn_last_error());
    if (n <= 0) return;
    if (nn_augment_is_identity(a)) {
        nn_rng_advance(rng, (uint64_t)NN_AUGMENT_DRAWS * (uint64_t)n);
        return;
    }
    size_t pixels = (size_t)rows * cols;
    const nn_rng start = *rng;
    const nn_augment s = *a;
#pragma omp parallel for schedule(static) if (n >= AUGMENT_PARALLEL_MIN)
    for (int i = 0; i < n; i++) {
        nn_rng r = start;
        nn_rng_advance(&r, (uint64_t)NN_AUGMENT_DRAWS * (uint64_t)i);
        /* One draw per statement: the order is the documented one. */
        float dx = s.shift * (2.0f * nn_rng_uniform(&r) - 1.0f);
        float dy = s.shift * (2.0f * nn_rng_uniform(&r) - 1.0f);
        float angle = s.rotate * (2.0f * nn_rng_uniform(&r) - 1.0f);
        float zoom = 1.0f + s.scale * (2.0f * nn_rng_uniform(&r) - 1.0f);
        float *img = x + (size_t)i * pixels, *copy = scratch + (size_t)i * pixels;
        memcpy(copy, img, pixels * sizeof *img);
        nn_augment_image(copy, img, rows, cols, dx, dy, angle, zoom, fill);
    }
    nn_rng_advance(rng, (uint64_t)NN_AUGMENT_DRAWS * (uint64_t)n);
}
