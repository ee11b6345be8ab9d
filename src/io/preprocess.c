/* MNIST-style preprocessing of a user's image (see nn_image_to_mnist).
 *
 * MNIST was made by fitting each binary NIST digit into a 20x20 box with
 * anti-aliasing, then placing it in a 28x28 frame so that its centre of mass
 * sits at the centre. A model trained on MNIST expects exactly that framing,
 * so a photo or drawing has to go through the same steps to be classified
 * fairly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/image.h"
#include "core/util.h"

#define FIT_SIDE 20           /* the digit's box inside the 28x28 frame */
#define CENTRE 14.0           /* where the centre of mass goes, in pixel indices */
#define MIN_CONTRAST 0.1f     /* ink standing out less than this above the noise: blank */

/* How a pixel value becomes ink: ink = clamp((sign * (p - background) - floor) * gain). */
typedef struct {
    float background, sign, floor, gain;
} ink_map;

static float ink_of(const ink_map *m, float p) {
    float ink = (m->sign * (p - m->background) - m->floor) * m->gain;
    return ink < 0.0f ? 0.0f : ink > 1.0f ? 1.0f : ink;
}

static void add_to_histogram(size_t hist[256], float p) {
    float q = p < 0.0f ? 0.0f : p > 1.0f ? 1.0f : p;
    hist[(int)lrintf(q * 255.0f)]++;
}

/* Measures the page on the image's border. The background is what the border
 * mostly is (its median, which ignores a stroke running off the edge); the
 * noise is how far border pixels stray from it (the 90th percentile of the
 * distance), so paper texture in a photo can be told from ink while a clean
 * digital drawing keeps every faint anti-aliased edge pixel. */
static void measure_border(const nn_image *img, float *background, float *noise) {
    int w = img->width, h = img->height;
    size_t hist[256] = {0}, count = 0;
    for (int y = 0; y < h; y++) {
        const float *row = img->pixels + (size_t)y * w;
        if (y == 0 || y == h - 1) {
            for (int x = 0; x < w; x++) add_to_histogram(hist, row[x]);
            count += (size_t)w;
        } else {
            add_to_histogram(hist, row[0]);
            if (w > 1) add_to_histogram(hist, row[w - 1]);
            count += w > 1 ? 2 : 1;
        }
    }
    int median = 0;
    size_t seen = hist[0];
    while (2 * seen < count) seen += hist[++median];
    size_t near = hist[median];
    int dist = 0;
    while (10 * near < 9 * count) {
        dist++;
        if (median - dist >= 0) near += hist[median - dist];
        if (median + dist < 256) near += hist[median + dist];
    }
    *background = (float)median / 255.0f;
    *noise = (float)dist / 255.0f;
}

/* Decides the polarity and the scaling of ink. The ink lies on the side of the
 * background where the image departs from it the most in total, so noise
 * (which goes both ways) cancels out and a dim photo of white paper with dark
 * ink is still read as dark-on-light. Returns -1 if nothing stands out. */
static int make_ink_map(const nn_image *img, ink_map *m) {
    float bg, noise;
    measure_border(img, &bg, &noise);
    double darker = 0, lighter = 0;
    float max_darker = 0, max_lighter = 0;
    size_t n = (size_t)img->width * img->height;
    for (size_t i = 0; i < n; i++) {
        float d = img->pixels[i] - bg;
        if (d < 0) {
            darker -= d;
            if (-d > max_darker) max_darker = -d;
        } else {
            lighter += d;
            if (d > max_lighter) max_lighter = d;
        }
    }
    float contrast = lighter > darker ? max_lighter : max_darker;
    /* Twice the typical stray: texture stays below the floor with a margin,
     * so no speck of it widens the ink's bounding box. */
    float floor = 2.0f * noise;
    if (contrast - floor < MIN_CONTRAST) return -1;
    m->background = bg;
    m->sign = lighter > darker ? 1.0f : -1.0f;
    m->floor = floor;
    m->gain = 1.0f / (contrast - floor); /* the strongest stroke is full ink */
    return 0;
}

/* Resamples n_in values (spaced in_step apart) to n_out values (spaced
 * out_step apart). Shrinking averages each output's footprint weighted by how
 * much of every input pixel it covers, so thin strokes fade rather than
 * vanish; enlarging interpolates linearly between pixel centres. */
static void resample(const float *in, size_t in_step, int n_in, float *out, size_t out_step, int n_out) {
    double ratio = (double)n_in / n_out;
    for (int i = 0; i < n_out; i++) {
        double v;
        if (n_out < n_in) {
            double lo = i * ratio, hi = lo + ratio, sum = 0;
            for (int j = (int)lo; j < n_in && j < hi; j++)
                sum += (fmin(hi, j + 1.0) - fmax(lo, j)) * in[(size_t)j * in_step];
            v = sum / ratio;
        } else {
            double pos = (i + 0.5) * ratio - 0.5;
            pos = pos < 0 ? 0 : pos > n_in - 1 ? n_in - 1 : pos;
            int j = (int)pos;
            int k = j + 1 < n_in ? j + 1 : j;
            double f = pos - j;
            v = (1 - f) * in[(size_t)j * in_step] + f * in[(size_t)k * in_step];
        }
        out[(size_t)i * out_step] = (float)v;
    }
}

int nn_image_to_mnist(const nn_image *img, float out[NN_MNIST_PIXELS]) {
    int w = img->width, h = img->height;
    ink_map m;
    if (w <= 0 || h <= 0 || !img->pixels || make_ink_map(img, &m) != 0) return nn_error("image is blank");

    /* Bounding box of the ink: columns [x0, x1], rows [y0, y1]. */
    int x0 = w, x1 = -1, y0 = h, y1 = -1;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            if (ink_of(&m, img->pixels[(size_t)y * w + x]) > 0.0f) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
        }
    }
    if (x1 < 0) return nn_error("image is blank");
    int bw = x1 - x0 + 1, bh = y1 - y0 + 1;

    /* Fit the longer side to FIT_SIDE pixels, keeping the aspect ratio. */
    double scale = (double)FIT_SIDE / (bw > bh ? bw : bh);
    int nw = (int)lround(bw * scale), nh = (int)lround(bh * scale);
    if (nw < 1) nw = 1;
    if (nh < 1) nh = 1;

    /* Separable resampling: each row of the box to nw columns, then each of
     * those columns to nh rows. */
    float *row = nn_xmalloc((size_t)bw * sizeof *row);
    float *wide = nn_xmalloc((size_t)bh * nw * sizeof *wide); /* [bh][nw] */
    for (int y = 0; y < bh; y++) {
        const float *src = img->pixels + (size_t)(y0 + y) * w + x0;
        for (int x = 0; x < bw; x++) row[x] = ink_of(&m, src[x]);
        resample(row, 1, bw, wide + (size_t)y * nw, 1, nw);
    }
    float patch[FIT_SIDE * FIT_SIDE]; /* [nh][nw] */
    for (int x = 0; x < nw; x++) resample(wide + x, (size_t)nw, bh, patch + x, (size_t)nw, nh);
    free(row);
    free(wide);

    /* MNIST digits reach full ink; a thin pen on a large canvas would
     * otherwise come out faint after averaging. Then the centre of mass. */
    float peak = 0;
    for (int i = 0; i < nw * nh; i++) peak = patch[i] > peak ? patch[i] : peak;
    if (peak <= 0) return nn_error("image is blank");
    double mass = 0, mx = 0, my = 0;
    for (int y = 0; y < nh; y++) {
        for (int x = 0; x < nw; x++) {
            float v = patch[y * nw + x] /= peak;
            mass += v;
            mx += v * x;
            my += v * y;
        }
    }

    /* Shift so the centre of mass lands on CENTRE, keeping the box inside. */
    int ox = (int)lround(CENTRE - mx / mass), oy = (int)lround(CENTRE - my / mass);
    ox = ox < 0 ? 0 : ox > NN_MNIST_SIDE - nw ? NN_MNIST_SIDE - nw : ox;
    oy = oy < 0 ? 0 : oy > NN_MNIST_SIDE - nh ? NN_MNIST_SIDE - nh : oy;
    memset(out, 0, NN_MNIST_PIXELS * sizeof *out);
    for (int y = 0; y < nh; y++)
        memcpy(out + (size_t)(oy + y) * NN_MNIST_SIDE + ox, patch + y * nw, (size_t)nw * sizeof *out);
    return 0;
}

int nn_image_load_mnist(float out[NN_MNIST_PIXELS], const char *path) {
    nn_image img;
    if (nn_image_load(&img, path) != 0) return -1;
    int rc = nn_image_to_mnist(&img, out);
    nn_image_free(&img);
    if (rc != 0) {
        /* Copy first: the message buffer is also nn_error's destination. */
        char why[256];
        snprintf(why, sizeof why, "%s", nn_last_error());
        return nn_error("%s: %s", path, why);
    }
    return 0;
}
