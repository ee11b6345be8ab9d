/* Decoding PNG and PGM images as grayscale floats in [0,1].
 *
 * Both decoders work on a buffer in memory (a file is read whole first,
 * bounded by NN_IMAGE_MAX_FILE_BYTES), so they see exactly how many bytes
 * exist and can report truncation instead of reading past the end. Their
 * messages name no file; nn_image_load puts the path in front. */
#include "nn/image.h"

#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "core/util.h"

static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* ITU-R BT.601 luma, the weights MNIST-era tools (and PIL's "L" mode) use. */
static float luminance(float r, float g, float b) {
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

static int check_size(unsigned long w, unsigned long h, size_t max_pixels) {
    if (w == 0 || h == 0) return nn_error("image has zero size (%lux%lu)", w, h);
    /* Both factors are below 2^32 here, so the product fits in 64 bits. */
    if ((uint64_t)w * h > max_pixels)
        return nn_error("image too large (%lux%lu pixels, limit %zu)", w, h, max_pixels);
    return 0;
}

/* ---- PNG ---------------------------------------------------------------- */

typedef struct {
    const unsigned char *data;
    size_t len, pos;
} png_source;

static void png_on_error(png_structp png, png_const_charp msg) {
    nn_error("bad PNG: %s", msg);
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

static int decode_png(const unsigned char *data, size_t len, size_t max_pixels, nn_image *img) {
    png_source src = {data, len, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return nn_error("cannot initialise libpng");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return nn_error("cannot initialise libpng");
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
    if (check_size(w, h, max_pixels) != 0) png_longjmp(png, 1);
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
static int read_number(const char *what, const unsigned char *d, size_t len,
                       size_t *pos, unsigned long max, unsigned long *out) {
    skip_blank(d, len, pos);
    if (*pos >= len) return nn_error("truncated PGM: missing %s", what);
    if (d[*pos] < '0' || d[*pos] > '9') return nn_error("bad PGM: %s is not a number", what);
    unsigned long v = 0;
    while (*pos < len && d[*pos] >= '0' && d[*pos] <= '9') {
        v = v * 10 + (unsigned long)(d[*pos] - '0');
        if (v > max) return nn_error("bad PGM: %s is out of range (limit %lu)", what, max);
        (*pos)++;
    }
    if (*pos < len && !is_space(d[*pos]) && d[*pos] != '#')
        return nn_error("bad PGM: %s is not a number", what);
    if (v == 0) return nn_error("bad PGM: %s is 0", what);
    *out = v;
    return 0;
}

static int decode_pgm(const unsigned char *d, size_t len, size_t max_pixels, nn_image *img) {
    int binary = d[1] == '5';
    size_t pos = 2;
    unsigned long w, h, maxval;
    /* A side may be as long as the whole pixel budget (a one-row strip). */
    if (read_number("width", d, len, &pos, NN_IMAGE_MAX_PIXELS, &w) != 0 ||
        read_number("height", d, len, &pos, NN_IMAGE_MAX_PIXELS, &h) != 0 ||
        read_number("maxval", d, len, &pos, 65535, &maxval) != 0 || check_size(w, h, max_pixels) != 0)
        return -1;
    size_t n = (size_t)w * h;

    if (binary) {
        /* Exactly one whitespace byte separates the header from the samples. */
        if (pos >= len || !is_space(d[pos])) return nn_error("truncated PGM: no pixel data");
        pos++;
        size_t bytes_per = maxval > 255 ? 2 : 1;
        if (len - pos < n * bytes_per)
            return nn_error("truncated PGM: expected %zu bytes of pixel data, found %zu", n * bytes_per,
                            len - pos);
    } else if ((len - pos) / 2 < n) {
        /* Each ASCII sample takes at least a separator and a digit. */
        return nn_error("truncated PGM: room for at most %zu of %zu samples", (len - pos) / 2, n);
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
                return nn_error("truncated PGM: expected %zu samples, found %zu", n, i);
            }
            if (d[pos] < '0' || d[pos] > '9') {
                free(pixels);
                return nn_error("bad PGM: sample %zu is not a number", i);
            }
            v = 0;
            while (pos < len && d[pos] >= '0' && d[pos] <= '9' && v <= maxval)
                v = v * 10 + (unsigned long)(d[pos++] - '0');
        }
        if (v > maxval) {
            free(pixels);
            return nn_error("bad PGM: sample %zu exceeds maxval %lu", i, maxval);
        }
        pixels[i] = (float)v / (float)maxval;
    }
    img->width = (int)w;
    img->height = (int)h;
    img->pixels = pixels;
    return 0;
}

/* ---- entry points ------------------------------------------------------- */

int nn_image_decode(nn_image *img, const void *data, size_t len, size_t max_pixels) {
    memset(img, 0, sizeof *img);
    const unsigned char *d = data;
    if (max_pixels == 0 || max_pixels > NN_IMAGE_MAX_PIXELS) max_pixels = NN_IMAGE_MAX_PIXELS;
    if (len == 0) return nn_error("empty file");
    /* A short prefix of the PNG magic goes to the PNG decoder, which reports
     * truncation. */
    if (memcmp(d, png_magic, len < 8 ? len : 8) == 0) return decode_png(d, len, max_pixels, img);
    if (len >= 3 && d[0] == 'P' && (d[1] == '5' || d[1] == '2') && (is_space(d[2]) || d[2] == '#'))
        return decode_pgm(d, len, max_pixels, img);
    return nn_error("not a PNG or PGM image");
}

int nn_image_load(nn_image *img, const char *path) {
    memset(img, 0, sizeof *img);
    size_t len;
    unsigned char *data = nn_read_file(path, &len, NN_IMAGE_MAX_FILE_BYTES);
    if (!data) return -1;
    int rc = nn_image_decode(img, data, len, 0);
    free(data);
    if (rc != 0) {
        /* Copy first: the message buffer is also nn_error's destination. */
        char why[512];
        snprintf(why, sizeof why, "%s", nn_last_error());
        return nn_error("%s: %s", path, why);
    }
    return 0;
}

void nn_image_free(nn_image *img) {
    free(img->pixels);
    memset(img, 0, sizeof *img);
}
