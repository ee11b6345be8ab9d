/* Image input for `nn predict`: load a PNG or PGM file as a grayscale image,
 * then turn it into a 28x28 MNIST-style input.
 *
 * The format is taken from the file's first bytes, never from its extension.
 * PNG: every colour type and bit depth (gray, gray+alpha, RGB, RGBA, palette,
 * 1-16 bits, interlaced or not). PGM: binary P5 (8- or 16-bit samples) and
 * ASCII P2. Colour becomes luminance 0.299 R + 0.587 G + 0.114 B and alpha is
 * composited over white, so a transparent background reads as paper. */
#ifndef NN_IMAGE_H
#define NN_IMAGE_H

#include <stddef.h>

#include "nn/api.h"

NN_BEGIN_DECLS

/* Limits on what a file may ask for; anything larger is refused before a
 * pixel buffer is allocated. */
#define NN_IMAGE_MAX_PIXELS ((size_t)1 << 26)      /* 64 Mpixels, e.g. 8192 x 8192 */
#define NN_IMAGE_MAX_FILE_BYTES ((size_t)1 << 28)  /* 256 MiB on disk */

#define NN_MNIST_SIDE 28
#define NN_MNIST_PIXELS (NN_MNIST_SIDE * NN_MNIST_SIDE)

typedef struct nn_image {
    int width, height;
    float *pixels; /* [height][width], row-major; gray in [0,1], 0 = black, 1 = white */
} nn_image;

/* Loads `path` into `img` (pixels owned by `img`, release with nn_image_free).
 * Returns 0, or -1 with a one-line error naming the file ("PATH: not a PNG or
 * PGM image", "PATH: truncated PGM: ...") and `img` zeroed. */
int nn_image_load(nn_image *img, const char *path);
/* The same from `len` bytes in memory (an upload, say), refusing images of
 * more than max_pixels pixels (0 or anything above NN_IMAGE_MAX_PIXELS means
 * NN_IMAGE_MAX_PIXELS) from their header, before any pixel is decoded. The
 * error names no file: "not a PNG or PGM image", "bad PNG: ...". */
int nn_image_decode(nn_image *img, const void *data, size_t len, size_t max_pixels);
void nn_image_free(nn_image *img);

/* MNIST-style preprocessing, the way MNIST itself was made: separate the ink
 * from the background (either polarity: dark-on-light paper or light-on-dark),
 * crop to the ink's bounding box, scale it to fit a 20x20 box keeping the
 * aspect ratio (area averaging when shrinking, bilinear when enlarging), and
 * place it in a 28x28 frame with its centre of mass at (14, 14).
 *
 * out[y * 28 + x] is ink intensity in [0,1]: 0 = background, 1 = full ink
 * (white digit on black, as in the MNIST files). Returns 0, or -1 with the
 * error "image is blank" when there is no ink; the caller adds the file name. */
int nn_image_to_mnist(const nn_image *img, float out[NN_MNIST_PIXELS]);

/* nn_image_load followed by nn_image_to_mnist; every error names `path`. */
int nn_image_load_mnist(float out[NN_MNIST_PIXELS], const char *path);

NN_END_DECLS

#endif
