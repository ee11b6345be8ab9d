/* Image loading (PNG, PGM, malformed files) and MNIST-style preprocessing.
 * Test images are written here with libpng's writer, independently of the
 * loader under test. */
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "nn/error.h"
#include "nn/image.h"
#include "core/util.h"

static char path_buf[256];

/* A per-process scratch path, so parallel test runs do not collide. */
static const char *tmp_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "/tmp/nn_test_image_%ld_%s", (long)getpid(), name);
    return path_buf;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

typedef struct {
    int color_type, bit_depth, interlace;
    const png_color *palette;
    int n_palette;
    const png_byte *trans; /* palette alpha, one per entry */
    int n_trans;
} png_spec;

/* Writes `rows` (already packed in libpng's layout for the spec, `stride`
 * bytes a row; 16-bit samples big-endian) as a PNG. */
static void write_png(const char *path, int w, int h, const png_spec *s, const png_byte *rows, size_t stride) {
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "cannot write test PNG %s\n", path);
        exit(1);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, s->bit_depth, s->color_type,
                 s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s->palette) png_set_PLTE(png, info, s->palette, s->n_palette);
    if (s->trans) png_set_tRNS(png, info, s->trans, s->n_trans, NULL);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < h; y++) png_write_row(png, rows + (size_t)y * stride);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static void write_gray8_png(const char *path, int w, int h, const unsigned char *gray) {
    png_spec s = {PNG_COLOR_TYPE_GRAY, 8, 0, NULL, 0, NULL, 0};
    write_png(path, w, h, &s, gray, (size_t)w);
}

/* Writes an image given as floats in [0,1] (1 = white) as an 8-bit gray PNG. */
static void write_float_png(const char *path, int w, int h, const float *pixels) {
    unsigned char *gray = malloc((size_t)w * h);
    for (size_t i = 0; i < (size_t)w * h; i++) gray[i] = (unsigned char)lrintf(pixels[i] * 255.0f);
    write_gray8_png(path, w, h, gray);
    free(gray);
}

static int load_ok(const char *path, nn_image *img, int w, int h) {
    if (nn_image_load(img, path) != 0) {
        fprintf(stderr, "  unexpected error: %s\n", nn_last_error());
        return 0;
    }
    CHECKF(img->width == w && img->height == h, "%dx%d, expected %dx%d", img->width, img->height, w, h);
    return img->width == w && img->height == h;
}

/* The load must fail, leave the image zeroed, and say what is wrong in one
 * line that starts with the file's path. */
static void load_fails(const char *path, const char *expect) {
    nn_image img = {7, 7, (float *)&img};
    int rc = nn_image_load(&img, path);
    const char *msg = nn_last_error();
    CHECKF(rc == -1, "%s loaded", path);
    CHECK(img.pixels == NULL && img.width == 0 && img.height == 0);
    CHECKF(strncmp(msg, path, strlen(path)) == 0 && strstr(msg, expect) && !strchr(msg, '\n'),
           "message \"%s\" should name %s and say \"%s\"", msg, path, expect);
    if (rc == 0) nn_image_free(&img);
}

/* ---- PNG ---------------------------------------------------------------- */

static void test_png_gray8(void) {
    const unsigned char px[6] = {0, 51, 102, 153, 204, 255};
    const char *p = tmp_path("gray8.png");
    write_gray8_png(p, 3, 2, px);
    nn_image img;
    if (load_ok(p, &img, 3, 2))
        for (int i = 0; i < 6; i++) CHECK_NEAR(img.pixels[i], px[i] / 255.0, 1e-6);
    nn_image_free(&img);
    CHECK(img.pixels == NULL);
    remove(p);
}

static void test_png_rgb(void) {
    const png_byte px[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 10, 200, 30, 0, 0, 0};
    const double want[] = {0.299, 0.587, 0.114, 1.0, (0.299 * 10 + 0.587 * 200 + 0.114 * 30) / 255, 0};
    png_spec s = {PNG_COLOR_TYPE_RGB, 8, 0, NULL, 0, NULL, 0};
    const char *p = tmp_path("rgb.png");
    write_png(p, 3, 2, &s, px, 9);
    nn_image img;
    if (load_ok(p, &img, 3, 2))
        for (int i = 0; i < 6; i++) CHECK_NEAR(img.pixels[i], want[i], 1e-5);
    nn_image_free(&img);
    remove(p);
}

static void test_png_rgba(void) {
    /* Alpha composites over white: a fully transparent pixel is white
     * whatever its colour. */
    const png_byte px[] = {255, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 128, 100, 100, 100, 51};
    const double want[] = {1.0, 0.0, 1 - 128 / 255.0, 0.2 * 100 / 255.0 + 0.8};
    png_spec s = {PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, NULL, 0, NULL, 0};
    const char *p = tmp_path("rgba.png");
    write_png(p, 2, 2, &s, px, 8);
    nn_image img;
    if (load_ok(p, &img, 2, 2))
        for (int i = 0; i < 4; i++) CHECK_NEAR(img.pixels[i], want[i], 1e-5);
    nn_image_free(&img);
    remove(p);
}

static void test_png_gray_alpha(void) {
    const png_byte px[] = {0, 255, 0, 0, 200, 255, 0, 102};
    const double want[] = {0.0, 1.0, 200 / 255.0, 0.6};
    png_spec s = {PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, NULL, 0, NULL, 0};
    const char *p = tmp_path("ga.png");
    write_png(p, 4, 1, &s, px, 8);
    nn_image img;
    if (load_ok(p, &img, 4, 1))
        for (int i = 0; i < 4; i++) CHECK_NEAR(img.pixels[i], want[i], 1e-5);
    nn_image_free(&img);
    remove(p);
}

static void test_png_palette(void) {
    /* 2-bit palette, one entry transparent through tRNS. Indices per row
     * (MSB first): 0 1 2 3 / 3 2 1 0. */
    const png_color pal[4] = {{0, 0, 0}, {255, 255, 255}, {0, 0, 255}, {90, 90, 90}};
    const png_byte trans[4] = {255, 255, 255, 0};
    const png_byte px[] = {0x1b, 0xe4};
    const double want[] = {0, 1, 0.114, 1, 1, 0.114, 1, 0};
    png_spec s = {PNG_COLOR_TYPE_PALETTE, 2, 0, pal, 4, trans, 4};
    const char *p = tmp_path("palette.png");
    write_png(p, 4, 2, &s, px, 1);
    nn_image img;
    if (load_ok(p, &img, 4, 2))
        for (int i = 0; i < 8; i++) CHECK_NEAR(img.pixels[i], want[i], 1e-5);
    nn_image_free(&img);
    remove(p);
}

static void test_png_16bit(void) {
    /* 16-bit gray, big-endian: 0, 0xffff, 0x8080 (= 128/255 exactly). */
    const png_byte gray[] = {0x00, 0x00, 0xff, 0xff, 0x80, 0x80};
    png_spec s = {PNG_COLOR_TYPE_GRAY, 16, 0, NULL, 0, NULL, 0};
    const char *p = tmp_path("gray16.png");
    write_png(p, 3, 1, &s, gray, 6);
    nn_image img;
    if (load_ok(p, &img, 3, 1)) {
        CHECK_NEAR(img.pixels[0], 0.0, 1e-6);
        CHECK_NEAR(img.pixels[1], 1.0, 1e-6);
        CHECK_NEAR(img.pixels[2], 128 / 255.0, 1e-6);
    }
    nn_image_free(&img);

    /* 16-bit RGBA: opaque pure green, then half-transparent black. */
    const png_byte rgba[] = {0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x80, 0x80};
    png_spec s2 = {PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, NULL, 0, NULL, 0};
    write_png(p, 2, 1, &s2, rgba, 16);
    if (load_ok(p, &img, 2, 1)) {
        CHECK_NEAR(img.pixels[0], 0.587, 1e-5);
        CHECK_NEAR(img.pixels[1], 1 - 128 / 255.0, 1e-5);
    }
    nn_image_free(&img);
    remove(p);
}

static void test_png_1bit_interlaced(void) {
    /* A 1-bit Adam7-interlaced checkerboard: exercises bit expansion and
     * the multi-pass read. */
    enum { W = 11, H = 9 };
    png_byte rows[H][2] = {{0}};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if ((x + y) % 2) rows[y][x / 8] |= (png_byte)(0x80 >> (x % 8));
    png_spec s = {PNG_COLOR_TYPE_GRAY, 1, 1, NULL, 0, NULL, 0};
    const char *p = tmp_path("bits.png");
    write_png(p, W, H, &s, &rows[0][0], 2);
    nn_image img;
    int bad = 0;
    if (load_ok(p, &img, W, H))
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) bad += img.pixels[y * W + x] != (float)((x + y) % 2);
    CHECKF(bad == 0, "%d wrong pixels", bad);
    nn_image_free(&img);
    remove(p);
}

/* ---- PGM ---------------------------------------------------------------- */

static void test_pgm_p5(void) {
    const char *p = tmp_path("img.pgm");
    /* Magic detection ignores the (misleading) extension; comments may sit
     * anywhere in the header. */
    const char hdr[] = "P5\n# made by hand\n3 # width\n2\n255\n";
    unsigned char file[sizeof hdr - 1 + 6];
    memcpy(file, hdr, sizeof hdr - 1);
    const unsigned char px[6] = {0, 10, 20, 128, 250, 255};
    memcpy(file + sizeof hdr - 1, px, 6);
    write_bytes(p, file, sizeof file);
    nn_image img;
    if (load_ok(p, &img, 3, 2))
        for (int i = 0; i < 6; i++) CHECK_NEAR(img.pixels[i], px[i] / 255.0, 1e-6);
    nn_image_free(&img);

    /* 16-bit samples are big-endian; values are relative to maxval. */
    const unsigned char wide[] = "P5 2 1 1000\n\x00\x64\x03\xe8";
    write_bytes(p, wide, sizeof wide - 1);
    if (load_ok(p, &img, 2, 1)) {
        CHECK_NEAR(img.pixels[0], 0.1, 1e-6);
        CHECK_NEAR(img.pixels[1], 1.0, 1e-6);
    }
    nn_image_free(&img);
    remove(p);
}

static void test_pgm_p2(void) {
    const char *p = tmp_path("ascii.png"); /* the extension lies on purpose */
    write_text(p, "P2\n# ascii\n4 2\n15\n0 5 10 15\n 15   3\n\t7 0\n");
    const double want[] = {0, 5, 10, 15, 15, 3, 7, 0};
    nn_image img;
    if (load_ok(p, &img, 4, 2))
        for (int i = 0; i < 8; i++) CHECK_NEAR(img.pixels[i], want[i] / 15, 1e-6);
    nn_image_free(&img);
    remove(p);
}

/* ---- malformed ---------------------------------------------------------- */

static void test_malformed_png(void) {
    enum { W = 64, H = 64 };
    unsigned char px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (unsigned char)(i * 7919 % 251); /* hard to compress */
    const char *p = tmp_path("bad.png");
    write_gray8_png(p, W, H, px);
    size_t len;
    unsigned char *data = nn_read_file(p, &len, 0);
    CHECK(data != NULL && len > 200);
    if (!data) return;

    write_bytes(p, data, len / 2); /* cut inside the pixel data */
    load_fails(p, "truncated");
    write_bytes(p, data, 5); /* cut inside the signature */
    load_fails(p, "truncated");
    write_bytes(p, data, len - 5); /* the IEND chunk cut off */
    load_fails(p, "truncated");

    data[len / 2] ^= 0x55; /* a flipped bit inside IDAT: CRC or zlib error */
    write_bytes(p, data, len);
    load_fails(p, "bad PNG");
    free(data);

    /* A valid header that claims 20000 x 20000 pixels must be refused before
     * any pixel buffer exists. */
    unsigned char big[8 + 25 + 12 + 12];
    unsigned char *q = big;
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(q, sig, 8);
    q += 8;
    static const unsigned char ihdr[4 + 4 + 13] = {0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0x4e, 0x20,
                                                   0, 0, 0x4e, 0x20, 8, 0, 0, 0, 0};
    static const unsigned char idat[8] = {0, 0, 0, 0, 'I', 'D', 'A', 'T'};
    static const unsigned char iend[8] = {0, 0, 0, 0, 'I', 'E', 'N', 'D'};
    const unsigned char *chunks[3] = {ihdr, idat, iend};
    const size_t sizes[3] = {sizeof ihdr, sizeof idat, sizeof iend};
    for (int c = 0; c < 3; c++) {
        memcpy(q, chunks[c], sizes[c]);
        uLong crc = crc32(0, chunks[c] + 4, (uInt)(sizes[c] - 4));
        for (int b = 0; b < 4; b++) q[sizes[c] + b] = (unsigned char)(crc >> (24 - 8 * b));
        q += sizes[c] + 4;
    }
    write_bytes(p, big, (size_t)(q - big));
    load_fails(p, "too large");
    remove(p);
}

static void test_malformed_other(void) {
    const char *p = tmp_path("bad.pgm");
    write_text(p, "hello, I am a text file\n");
    load_fails(p, "not a PNG or PGM image");
    write_text(p, "P6\n2 2\n255\nabcdefghijkl");
    load_fails(p, "not a PNG or PGM image");
    write_bytes(p, "", 0);
    load_fails(p, "empty");

    write_text(p, "P5\n100000 100000\n255\n");
    load_fails(p, "too large");
    write_text(p, "P5\n99999999999999999999999 2\n255\n");
    load_fails(p, "out of range");
    write_text(p, "P5\n0 4\n255\n");
    load_fails(p, "width is 0");
    write_text(p, "P5\n4 4\n70000\n");
    load_fails(p, "maxval is out of range");
    write_text(p, "P5\n4 -4\n255\n");
    load_fails(p, "height is not a number");
    write_text(p, "P5\n4 4");
    load_fails(p, "missing maxval");
    write_text(p, "P5\n4 4\n255\n0123456789"); /* 10 of 16 bytes */
    load_fails(p, "expected 16 bytes of pixel data, found 10");
    write_text(p, "P5\n4 4\n255");
    load_fails(p, "no pixel data");
    write_text(p, "P5\n2 2\n100\n\x01\x02\x03\xff");
    load_fails(p, "exceeds maxval");

    write_text(p, "P2\n3 3\n255\n1 2 3 4 5 6 7 8    \n\n"); /* one sample short */
    load_fails(p, "expected 9 samples, found 8");
    write_text(p, "P2\n300 300\n255\n1 2 3\n"); /* far too short to hold them */
    load_fails(p, "truncated");
    write_text(p, "P2\n2 2\n255\n1 2 x 4\n");
    load_fails(p, "sample 2 is not a number");
    write_text(p, "P2\n2 2\n255\n1 2 3 256\n");
    load_fails(p, "sample 3 exceeds maxval");
    remove(p);

    load_fails(tmp_path("does_not_exist.png"), "No such file");
}

/* ---- decoding from memory ----------------------------------------------- */

/* The decode must fail, leave the image zeroed, and say what is wrong in one
 * line that names no file. */
static void decode_fails(const void *data, size_t len, size_t max_pixels, const char *expect) {
    nn_image img = {7, 7, (float *)&img};
    int rc = nn_image_decode(&img, data, len, max_pixels);
    const char *msg = nn_last_error();
    CHECKF(rc == -1, "%zu bytes decoded, expected \"%s\"", len, expect);
    CHECK(img.pixels == NULL && img.width == 0 && img.height == 0);
    CHECKF(strstr(msg, expect) && !strchr(msg, '\n') && !strstr(msg, "/tmp/"),
           "message \"%s\" should say \"%s\" and name no file", msg, expect);
    if (rc == 0) nn_image_free(&img);
}

static void test_decode_memory(void) {
    enum { W = 40, H = 30 };
    unsigned char px[W * H];
    for (int i = 0; i < W * H; i++) px[i] = (unsigned char)(i * 7919 % 251);
    const char *p = tmp_path("mem.png");
    write_gray8_png(p, W, H, px);
    size_t len;
    unsigned char *data = nn_read_file(p, &len, 0);
    CHECK(data != NULL);
    if (!data) return;

    /* The same pixels as the file loader, and a bound of exactly W*H passes. */
    nn_image img;
    CHECKF(nn_image_decode(&img, data, len, (size_t)W * H) == 0, "%s", nn_last_error());
    CHECK(img.width == W && img.height == H);
    for (int i = 0; img.pixels && i < W * H; i++) CHECK_NEAR(img.pixels[i], px[i] / 255.0, 1e-6);
    nn_image_free(&img);

    decode_fails(data, len, (size_t)W * H - 1, "image too large (40x30 pixels, limit 1199)");
    decode_fails(data, len / 2, 0, "truncated");
    decode_fails(data, 3, 0, "truncated");
    decode_fails(data, 0, 0, "empty");
    decode_fails("GIF89a", 6, 0, "not a PNG or PGM image");
    decode_fails("{\"digit\": 7}", 12, 0, "not a PNG or PGM image");
    free(data);

    /* PGM: the bound is checked on the header, before the (missing) samples. */
    const char *pgm = "P5\n2000 2000\n255\n";
    decode_fails(pgm, strlen(pgm), 1000 * 1000, "image too large (2000x2000 pixels, limit 1000000)");
    const char *p2 = "P2\n2 2\n255\n0 255 255 0\n";
    CHECKF(nn_image_decode(&img, p2, strlen(p2), 4) == 0, "%s", nn_last_error());
    CHECK(img.width == 2 && img.height == 2 && img.pixels && img.pixels[1] == 1.0f && img.pixels[3] == 0.0f);
    nn_image_free(&img);
    remove(p);
}

/* ---- preprocessing ------------------------------------------------------ */

/* Ink of a thick anti-aliased polyline (coordinates relative to the box
 * [bx, bx+bw] x [by, by+bh]) added onto `ink` (w x h, 1 = full ink). */
static void draw_strokes(float *ink, int w, int h, double bx, double by, double bw, double bh,
                         const double (*pts)[2], int n, double radius) {
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double best = 1e30;
            for (int i = 0; i + 1 < n; i++) {
                double ax = bx + pts[i][0] * bw, ay = by + pts[i][1] * bh;
                double vx = bx + pts[i + 1][0] * bw - ax, vy = by + pts[i + 1][1] * bh - ay;
                double t = ((x + 0.5 - ax) * vx + (y + 0.5 - ay) * vy) / (vx * vx + vy * vy);
                t = t < 0 ? 0 : t > 1 ? 1 : t;
                double dx = x + 0.5 - (ax + t * vx), dy = y + 0.5 - (ay + t * vy);
                double d = sqrt(dx * dx + dy * dy);
                if (d < best) best = d;
            }
            double v = radius + 0.5 - best; /* one pixel of soft edge */
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            if (v > ink[y * w + x]) ink[y * w + x] = (float)v;
        }
    }
}

static const double seven[][2] = {{0.05, 0.05}, {0.95, 0.05}, {0.45, 0.95}};
static const double four[][2] = {{0.6, 0.95}, {0.6, 0.05}, {0.05, 0.65}, {0.95, 0.65}};

static double mean_abs_diff(const float *a, const float *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += fabs(a[i] - b[i]);
    return s / n;
}

typedef struct {
    double mass, cx, cy;
    int x0, x1, y0, y1; /* bounding box of ink > 0 */
    float peak;
} shape_stats;

static shape_stats stats_of(const float *d) {
    shape_stats s = {0, 0, 0, 28, -1, 28, -1, 0};
    for (int y = 0; y < 28; y++) {
        for (int x = 0; x < 28; x++) {
            float v = d[y * 28 + x];
            s.mass += v;
            s.cx += v * x;
            s.cy += v * y;
            if (v > s.peak) s.peak = v;
            if (v > 0) {
                if (x < s.x0) s.x0 = x;
                if (x > s.x1) s.x1 = x;
                if (y < s.y0) s.y0 = y;
                if (y > s.y1) s.y1 = y;
            }
        }
    }
    if (s.mass > 0) {
        s.cx /= s.mass;
        s.cy /= s.mass;
    }
    return s;
}

static void test_polarity(void) {
    /* The same "4" as dark ink on light paper (with mild paper texture) and
     * as light chalk on a dark board must give the same MNIST input. */
    enum { W = 90, H = 120 };
    float ink[W * H] = {0};
    draw_strokes(ink, W, H, 15, 20, 60, 80, four, 4, 4.0);
    float paper[W * H], board[W * H];
    for (int i = 0; i < W * H; i++) {
        float texture = 0.02f * (float)((i * 37) % 5 - 2) / 2; /* +-0.02 */
        paper[i] = 0.92f + texture - 0.85f * ink[i];
        board[i] = 0.1f + 0.8f * ink[i];
    }
    float a[784], b[784];
    nn_image pi = {W, H, paper}, bi = {W, H, board};
    CHECK(nn_image_to_mnist(&pi, a) == 0);
    CHECK(nn_image_to_mnist(&bi, b) == 0);
    double d = mean_abs_diff(a, b, 784);
    CHECKF(d < 0.01, "mean abs diff %.4f", d);
    float worst = 0;
    for (int i = 0; i < 784; i++) worst = fmaxf(worst, fabsf(a[i] - b[i]));
    CHECKF(worst < 0.15f, "max abs diff %.3f", worst);

    /* Through files: PNG of the paper version gives the same again. */
    const char *p = tmp_path("four.png");
    write_float_png(p, W, H, paper);
    float c[784];
    CHECKF(nn_image_load_mnist(c, p) == 0, "%s", nn_last_error());
    CHECKF(mean_abs_diff(a, c, 784) < 0.01, "file vs memory %.4f", mean_abs_diff(a, c, 784));
    remove(p);
}

static void test_centring_and_fit(void) {
    /* A large "7", taller than wide, in the top-left corner of a wide canvas. */
    enum { W = 300, H = 200 };
    float *pix = malloc(sizeof(float) * W * H);
    float *ink = calloc(W * H, sizeof(float));
    draw_strokes(ink, W, H, 5, 3, 110, 170, seven, 3, 9.0);
    for (int i = 0; i < W * H; i++) pix[i] = 1.0f - ink[i];
    nn_image img = {W, H, pix};
    float out[784];
    CHECK(nn_image_to_mnist(&img, out) == 0);
    shape_stats s = stats_of(out);
    CHECK_NEAR(s.cx, 14.0, 1.0);
    CHECK_NEAR(s.cy, 14.0, 1.0);
    CHECKF(s.x1 - s.x0 + 1 <= 20 && s.y1 - s.y0 + 1 <= 20, "box %dx%d", s.x1 - s.x0 + 1, s.y1 - s.y0 + 1);
    CHECKF(s.y1 - s.y0 + 1 == 20, "the taller side fills the box: %d", s.y1 - s.y0 + 1);
    CHECK_NEAR(s.peak, 1.0, 1e-6);
    float lo = 1, hi = 0;
    for (int i = 0; i < 784; i++) lo = fminf(lo, out[i]), hi = fmaxf(hi, out[i]);
    CHECK(lo >= 0 && hi <= 1);

    /* A tiny digit (enlarged) is centred and fitted the same way. */
    enum { SW = 16, SH = 12 };
    float small[SW * SH] = {0};
    draw_strokes(small, SW, SH, 9, 2, 6, 8, seven, 3, 0.7);
    for (int i = 0; i < SW * SH; i++) small[i] = 0.9f * small[i]; /* light on black */
    nn_image si = {SW, SH, small};
    CHECK(nn_image_to_mnist(&si, out) == 0);
    s = stats_of(out);
    CHECK_NEAR(s.cx, 14.0, 1.0);
    CHECK_NEAR(s.cy, 14.0, 1.0);
    CHECKF(s.y1 - s.y0 + 1 == 20 && s.x1 - s.x0 + 1 <= 20, "box %dx%d", s.x1 - s.x0 + 1, s.y1 - s.y0 + 1);

    /* A horizontal bar keeps its aspect ratio: 20 wide, about 2 tall. */
    float bar[60 * 40];
    for (int i = 0; i < 60 * 40; i++) bar[i] = 1.0f;
    for (int y = 18; y < 22; y++)
        for (int x = 5; x < 45; x++) bar[y * 60 + x] = 0.0f;
    nn_image bi = {60, 40, bar};
    CHECK(nn_image_to_mnist(&bi, out) == 0);
    s = stats_of(out);
    CHECKF(s.x1 - s.x0 + 1 == 20 && s.y1 - s.y0 + 1 == 2, "box %dx%d", s.x1 - s.x0 + 1, s.y1 - s.y0 + 1);
    CHECK_NEAR(s.cx, 14.0, 0.51); /* even-sized and symmetric: half a pixel off at best */
    CHECK_NEAR(s.cy, 14.0, 0.51);
    free(pix);
    free(ink);
}

static void test_shrink_averages(void) {
    /* Thin diagonal lines, one pixel in three, shrunk about 8x: area
     * averaging turns them into an even grey (point sampling would alias into
     * stripes), and that grey is stretched to full ink as in MNIST. */
    enum { S = 179, M = 10 }; /* a 159 x 159 texture inside a white margin */
    float *pix = malloc(sizeof(float) * S * S);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int inside = x >= M && x < S - M && y >= M && y < S - M;
            pix[y * S + x] = inside && (x + y) % 3 == 0 ? 0.0f : 1.0f;
        }
    nn_image img = {S, S, pix};
    float out[784] = {0};
    CHECK(nn_image_to_mnist(&img, out) == 0);
    shape_stats s = stats_of(out);
    CHECKF(s.x1 - s.x0 + 1 == 20 && s.y1 - s.y0 + 1 == 20, "box %dx%d", s.x1 - s.x0 + 1, s.y1 - s.y0 + 1);
    float lo = 1;
    for (int y = s.y0; y <= s.y1; y++)
        for (int x = s.x0; x <= s.x1; x++) lo = fminf(lo, out[y * 28 + x]);
    CHECKF(lo > 0.85f, "faintest pixel of an even texture: %.3f", lo);
    CHECK_NEAR(s.peak, 1.0, 1e-6);
    free(pix);
}

static void test_blank(void) {
    float pix[40 * 30], out[784];
    nn_image img = {40, 30, pix};
    for (int i = 0; i < 40 * 30; i++) pix[i] = 1.0f;
    CHECK(nn_image_to_mnist(&img, out) == -1);
    CHECK(strcmp(nn_last_error(), "image is blank") == 0);
    for (int i = 0; i < 40 * 30; i++) pix[i] = 0.5f + 0.03f * (float)(i % 3 - 1); /* grey, faint noise */
    CHECK(nn_image_to_mnist(&img, out) == -1);

    const char *p = tmp_path("blank.png");
    write_float_png(p, 40, 30, pix);
    CHECK(nn_image_load_mnist(out, p) == -1);
    char want[300];
    snprintf(want, sizeof want, "%s: image is blank", p);
    CHECKF(strcmp(nn_last_error(), want) == 0, "got \"%s\"", nn_last_error());
    remove(p);
}

/* ---- real MNIST digits -------------------------------------------------- */

/* Reads `count` test images (28x28 bytes each) from data/mnist, raw or
 * gzipped (zlib reads both). Returns NULL if the data is not there. */
static unsigned char *read_mnist_test(int count) {
    const char *names[] = {"data/mnist/t10k-images-idx3-ubyte", "data/mnist/t10k-images-idx3-ubyte.gz"};
    for (int i = 0; i < 2; i++) {
        if (access(names[i], R_OK) != 0) continue;
        gzFile f = gzopen(names[i], "rb");
        unsigned char hdr[16];
        unsigned char *digits = malloc((size_t)count * 784);
        int ok = f && gzread(f, hdr, 16) == 16 && hdr[2] == 8 && hdr[3] == 3 &&
                 gzread(f, digits, (unsigned)count * 784) == count * 784;
        if (f) gzclose(f);
        if (ok) return digits;
        free(digits);
    }
    return NULL;
}

static void test_mnist_round_trip(void) {
    enum { N = 200, UP = 4 };
    unsigned char *digits = read_mnist_test(N);
    if (!digits) {
        SKIP("data/mnist missing (run make data)");
        return;
    }
    /* Each digit upscaled 4x (nearest) and inverted to dark-on-light, then
     * preprocessed: it should come back close to the original. */
    const char *p = tmp_path("mnist.png");
    unsigned char big[28 * UP * 28 * UP];
    double total = 0, worst = 0;
    int worst_i = 0, failures = 0;
    for (int n = 0; n < N; n++) {
        const unsigned char *d = digits + (size_t)n * 784;
        for (int y = 0; y < 28 * UP; y++)
            for (int x = 0; x < 28 * UP; x++) big[y * 28 * UP + x] = (unsigned char)(255 - d[(y / UP) * 28 + x / UP]);
        write_gray8_png(p, 28 * UP, 28 * UP, big);
        float out[784], orig[784];
        if (nn_image_load_mnist(out, p) != 0) {
            failures++;
            continue;
        }
        for (int i = 0; i < 784; i++) orig[i] = d[i] / 255.0f;
        double diff = mean_abs_diff(out, orig, 784);
        total += diff;
        if (diff > worst) worst = diff, worst_i = n;
    }
    CHECKF(failures == 0, "%d digits failed to load: %s", failures, nn_last_error());
    CHECKF(total / N < 0.01, "mean abs diff %.4f over %d digits", total / N, N);
    CHECKF(worst < 0.05, "worst digit %d: mean abs diff %.4f", worst_i, worst);
    printf("note: MNIST round trip: mean abs diff %.4f, worst %.4f (digit %d)\n", total / N, worst, worst_i);
    remove(p);
    free(digits);
}

/* The committed sample images (tests/fixtures/images, made by
 * make_images.py from MNIST test digits) all load and preprocess; with the
 * data present they must match the digit they were made from. */
static void test_fixtures(void) {
    static const struct {
        const char *file;
        int index; /* in t10k-images */
    } fx[] = {
        {"7_gray_dark_on_light.png", 0}, {"2_rgb_blue_ink.png", 1},      {"1_rgba_transparent.png", 2},
        {"0_light_on_dark.pgm", 3},      {"4_noisy_off_centre.png", 4}, {"9_palette_4bit.png", 7},
        {"5_ascii.pgm", 8},              {"3_gray16_photo.png", 18},
    };
    enum { NF = sizeof fx / sizeof fx[0] };
    unsigned char *digits = read_mnist_test(20);
    for (int i = 0; i < NF; i++) {
        char path[128];
        snprintf(path, sizeof path, "tests/fixtures/images/%s", fx[i].file);
        float out[784];
        if (nn_image_load_mnist(out, path) != 0) {
            CHECKF(0, "%s", nn_last_error());
            continue;
        }
        shape_stats s = stats_of(out);
        CHECKF(fabs(s.cx - 14) <= 1 && fabs(s.cy - 14) <= 1, "%s: centre (%.2f, %.2f)", path, s.cx, s.cy);
        if (digits) {
            float orig[784];
            for (int k = 0; k < 784; k++) orig[k] = digits[fx[i].index * 784 + k] / 255.0f;
            double d = mean_abs_diff(out, orig, 784);
            CHECKF(d < 0.08, "%s: mean abs diff %.4f from t10k digit %d", path, d, fx[i].index);
        }
    }
    free(digits);
}

TEST_MAIN(TEST(test_png_gray8), TEST(test_png_rgb), TEST(test_png_rgba), TEST(test_png_gray_alpha),
          TEST(test_png_palette), TEST(test_png_16bit), TEST(test_png_1bit_interlaced), TEST(test_pgm_p5),
          TEST(test_pgm_p2), TEST(test_malformed_png), TEST(test_malformed_other), TEST(test_decode_memory), TEST(test_polarity),
          TEST(test_centring_and_fit), TEST(test_shrink_averages), TEST(test_blank), TEST(test_mnist_round_trip), TEST(test_fixtures))
