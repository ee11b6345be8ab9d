/* Loading PNG and PGM images as grayscale floats in [0,1].
 *
 * The whole file is read into memory first (bounded by NN_IMAGE_MAX_FILE_BYTES),
 * so both decoders see exactly how many bytes exist and can report truncation
 * instead of reading past the end. */
#include "nn/image.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"

static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* ITU-R BT.601 luma, the weights MNIST-era tools (and PIL's "L" mode) use. */
static float luminance(float r, float g, float b) {
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

static int check_size(const char *path, unsigned long w, unsigned long h) {
    if (w == 0 || h == 0) return nn_error("%s: image has zero size (%lux%lu)", path, w, h);
    /* Both factors are below 2^32 here, so the product fits in 64 bits. */
    if ((uint64_t)w * h > NN_IMAGE_MAX_PIXELS)
        return nn_error("%s: image too large (%lux%lu pixels, limit %zu)", path, w, h,
                        NN_IMAGE_MAX_PIXELS);
    return 0;
}

/* ---- PNG ---------------------------------------------------------------- */

typedef struct {
    const char *path;
    const unsigned char *data;
    size_t len, pos;
} png_source;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_source *src = png_get_error_ptr(png);
    nn_error("%s: bad PNG: %s", src->path, msg);
    png_longjmp(png, 1);
}

/* Warnings (unknown chunks, bad gamma values) do not stop decoding. */
static void png_on_warning(png_structp png, png_const_charp msg) {}

static void png_read_memory(png_structp png, png_bytep dst, size_t n) {
    png_source *src = png_get_io_ptr(png);
    if (n > src->len - src->pos) png_error(png, "file is truncated");
    memcpy(dst, src->data + src->pos, n);
    src->pos += n;
}

static int decode_png(const char *path, const unsigned char *data, size_t len, nn_image *img) {
    png_source src = {path, data, len, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return nn_error("%s: cannot initialise libpng", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return nn_error("%s: cannot initialise libpng", path);
    }
    /* Written after setjmp and needed after a longjmp, hence volatile. */
    png_bytep volatile rgba = NULL;
    png_bytepp volatile rows = NULL;
    float *volatile pixels = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rgba);
        free(rows);
        free(pixels);
        return -1;
    }
    png_set_read_fn(png, &src, png_read_memory);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (check_size(path, w, h) != 0) png_longjmp(png, 1);
    /* Deflate compresses at most 1032:1, so a file too short to hold the
     * declared pixels even at that ratio is refused before the buffers for
     * them are allocated (w*h <= 2^26 and 4 channels of 16 bits fit in 64). */
    uint64_t min_bytes = ((uint64_t)w * h * png_get_channels(png, info) * png_get_bit_depth(png, info) + 7) / 8;
    if (min_bytes / 1032 > len)
        png_error(png, "file is truncated: too short for the image size in its header");

    /* Whatever the file holds, have libpng hand us 8-bit RGBA: the colour and
     * alpha arithmetic below then has a single case. */
    png_set_scale_16(png);
    png_set_expand(png); /* palette -> RGB, gray < 8 bits -> 8 bits, tRNS -> alpha */
    png_set_gray_to_rgb(png);
    png_set_add_alpha(png, 0xff, PNG_FILLER_AFTER);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (png_get_channels(png, info) != 4 || png_get_bit_depth(png, info) != 8 || stride != 4 * (size_t)w)
        png_error(png, "unexpected pixel layout after conversion to RGBA");

    rgba = nn_xmalloc(stride * h);
    rows = nn_xmalloc(h * sizeof *rows);
    for (png_uint_32 y = 0; y < h; y++) rows[y] = rgba + y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    pixels = nn_xmalloc((size_t)w * h * sizeof *pixels);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        const png_byte *p = rgba + 4 * i;
        float alpha = p[3] / 255.0f;
        float gray = luminance(p[0], p[1], p[2]) / 255.0f;
        pixels[i] = alpha * gray + (1.0f - alpha); /* over a white page */
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(rgba);
    free(rows);
    img->width = (int)w;
    img->height = (int)h;
    img->pixels = pixels;
    return 0;
}

/* ---- PGM (netpbm P5 binary, P2 ASCII) ------------------------------------ */

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Skips whitespace and '#' comments (which run to the end of the line). */
static void skip_blank(const unsigned char *d, size_t len, size_t *pos) {
    while (*pos < len) {
        if (is_space(d[*pos])) {
            (*pos)++;
        } else if (d[*pos] == '#') {
            while (*pos < len && d[*pos] != '\n' && d[*pos] != '\r') (*pos)++;
        } else {
            break;
        }
    }
}

/* Reads one unsigned decimal number in [1, max] after optional blanks. */
static int read_number(const char *path, const char *what, const unsigned char *d, size_t len,
                       size_t *pos, unsigned long max, unsigned long *out) {
    skip_blank(d, len, pos);
    if (*pos >= len) return nn_error("%s: truncated PGM: missing %s", path, what);
    if (d[*pos] < '0' || d[*pos] > '9') return nn_error("%s: bad PGM: %s is not a number", path, what);
    unsigned long v = 0;
    while (*pos < len && d[*pos] >= '0' && d[*pos] <= '9') {
        v = v * 10 + (unsigned long)(d[*pos] - '0');
        if (v > max) return nn_error("%s: bad PGM: %s is out of range (limit %lu)", path, what, max);
        (*pos)++;
    }
    if (*pos < len && !is_space(d[*pos]) && d[*pos] != '#')
        return nn_error("%s: bad PGM: %s is not a number", path, what);
    if (v == 0) return nn_error("%s: bad PGM: %s is 0", path, what);
    *out = v;
    return 0;
}

static int decode_pgm(const char *path, const unsigned char *d, size_t len, nn_image *img) {
    int binary = d[1] == '5';
    size_t pos = 2;
    unsigned long w, h, maxval;
    /* A side may be as long as the whole pixel budget (a one-row strip). */
    if (read_number(path, "width", d, len, &pos, NN_IMAGE_MAX_PIXELS, &w) != 0 ||
        read_number(path, "height", d, len, &pos, NN_IMAGE_MAX_PIXELS, &h) != 0 ||
        read_number(path, "maxval", d, len, &pos, 65535, &maxval) != 0 || check_size(path, w, h) != 0)
        return -1;
    size_t n = (size_t)w * h;

    if (binary) {
        /* Exactly one whitespace byte separates the header from the samples. */
        if (pos >= len || !is_space(d[pos])) return nn_error("%s: truncated PGM: no pixel data", path);
        pos++;
        size_t bytes_per = maxval > 255 ? 2 : 1;
        if (len - pos < n * bytes_per)
            return nn_error("%s: truncated PGM: expected %zu bytes of pixel data, found %zu", path,
                            n * bytes_per, len - pos);
    } else if ((len - pos) / 2 < n) {
        /* Each ASCII sample takes at least a separator and a digit. */
        return nn_error("%s: truncated PGM: room for at most %zu of %zu samples", path,
                        (len - pos) / 2, n);
    }

    float *pixels = nn_xmalloc(n * sizeof *pixels);
    for (size_t i = 0; i < n; i++) {
        unsigned long v;
        if (binary) {
            v = maxval > 255 ? (unsigned long)d[pos] << 8 | d[pos + 1] : d[pos]; /* big-endian */
            pos += maxval > 255 ? 2 : 1;
        } else {
            skip_blank(d, len, &pos);
            if (pos >= len) {
                free(pixels);
                return nn_error("%s: truncated PGM: expected %zu samples, found %zu", path, n, i);
            }
            if (d[pos] < '0' || d[pos] > '9') {
                free(pixels);
                return nn_error("%s: bad PGM: sample %zu is not a number", path, i);
            }
            v = 0;
            while (pos < len && d[pos] >= '0' && d[pos] <= '9' && v <= maxval)
                v = v * 10 + (unsigned long)(d[pos++] - '0');
        }
        if (v > maxval) {
            free(pixels);
            return nn_error("%s: bad PGM: sample %zu exceeds maxval %lu", path, i, maxval);
        }
        pixels[i] = (float)v / (float)maxval;
    }
    img->width = (int)w;
    img->height = (int)h;
    img->pixels = pixels;
    return 0;
}

/* ---- entry points ------------------------------------------------------- */

int nn_image_load(const char *path, nn_image *img) {
    memset(img, 0, sizeof *img);
    size_t len;
    unsigned char *data = nn_read_file(path, &len, NN_IMAGE_MAX_FILE_BYTES);
    if (!data) return -1;
    int rc;
    if (len == 0) {
        rc = nn_error("%s: empty file", path);
    } else if (memcmp(data, png_magic, len < 8 ? len : 8) == 0) {
        rc = decode_png(path, data, len, img); /* a short prefix of the magic reports truncation */
    } else if (len >= 3 && data[0] == 'P' && (data[1] == '5' || data[1] == '2') &&
               (is_space(data[2]) || data[2] == '#')) {
        rc = decode_pgm(path, data, len, img);
    } else {
        rc = nn_error("%s: not a PNG or PGM image", path);
    }
    free(data);
    return rc;
}

void nn_image_free(nn_image *img) {
    free(img->pixels);
    memset(img, 0, sizeof *img);
}
