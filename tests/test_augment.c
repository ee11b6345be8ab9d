/* Augmentation: the random maps follow the seed and not the thread count, a
 * zero setting changes nothing, whole-pixel shifts move pixels exactly and
 * keep their mass, rotations go the documented way, and bilinear sampling
 * never leaves the range of its inputs. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "nn/augment.h"
#include "nn/error.h"

#define R 28
#define C 28
#define P (R * C)
/* MNIST's normalised black and white: (0 - 0.1307) / 0.3081 and (1 - 0.1307) / 0.3081. */
#define BLACK (-0.42421296f)
#define WHITE 2.82148653f

/* A digit-like image: an anti-aliased ring (a "0") with a stroke through it,
 * whose position, size and slant vary with k, all well inside the border
 * (nothing within 3 pixels of it). */
static void draw_digit(float *img, int k) {
    float cx = 13.5f + (float)(k % 5 - 2) * 0.7f, cy = 13.5f + (float)(k % 3 - 1) * 0.9f;
    float rx = 5.0f + (float)(k % 4) * 0.5f, ry = 7.0f - (float)(k % 2) * 0.8f;
    float slant = 0.15f * (float)(k % 7 - 3);
    for (int y = 0; y < R; y++)
        for (int x = 0; x < C; x++) {
            float u = ((float)x - cx) / rx, v = ((float)y - cy) / ry;
            float ring = 1.0f - fabsf(sqrtf(u * u + v * v) - 1.0f) * 4.0f;
            float line = 1.0f - fabsf(((float)x - cx) - slant * ((float)y - cy)) / 1.3f;
            if (fabsf((float)y - cy) > ry) line = 0.0f;
            float ink = fmaxf(fmaxf(ring, line), 0.0f);
            img[y * C + x] = BLACK + (WHITE - BLACK) * fminf(ink, 1.0f);
        }
}

static float *digits(int n) {
    float *x = malloc((size_t)n * P * sizeof *x);
    for (int i = 0; i < n; i++) draw_digit(x + (size_t)i * P, i);
    return x;
}

/* Pixel mass above black, and its centre (column, row). */
static double mass_of(const float *img, int rows, int cols, double *mx, double *my) {
    double m = 0, sx = 0, sy = 0;
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < cols; x++) {
            double w = (double)img[y * cols + x] - (double)BLACK;
            m += w;
            sx += w * x;
            sy += w * y;
        }
    if (mx) *mx = sx / m;
    if (my) *my = sy / m;
    return m;
}

static void augment(const nn_augment *a, float *x, int n, uint64_t seed) {
    nn_rng r;
    nn_rng_seed(&r, seed, 5);
    float *scratch = malloc(nn_augment_scratch_floats(n, R, C) * sizeof *scratch);
    nn_augment_batch(a, x, n, R, C, BLACK, &r, scratch);
    free(scratch);
}

static void test_same_seed_same_batch(void) {
    enum { N = 32 };
    const nn_augment a = NN_AUGMENT_DEFAULT;
    float *orig = digits(N), *x1 = digits(N), *x2 = digits(N), *x3 = digits(N);
    augment(&a, x1, N, 11);
    augment(&a, x2, N, 11);
    augment(&a, x3, N, 12);
    CHECK(memcmp(x1, x2, sizeof *x1 * N * P) == 0);
    int differ = 0, changed = 0;
    for (int i = 0; i < N; i++) {
        differ += memcmp(x1 + i * P, x3 + i * P, sizeof *x1 * P) != 0;
        changed += memcmp(x1 + i * P, orig + i * P, sizeof *x1 * P) != 0;
    }
    CHECKF(differ == N, "seeds 11 and 12 give %d of %d images alike", N - differ, N);
    CHECKF(changed == N, "%d of %d images left as they were", N - changed, N);
    free(orig), free(x1), free(x2), free(x3);
}

/* Image i is nn_augment_image with draws 4i..4i+3, taken in the documented
 * order, and the generator ends 4n draws on. */
static void test_batch_uses_the_documented_draws(void) {
    enum { N = 20 };
    const nn_augment a = {.shift = 3.0f, .rotate = 25.0f, .scale = 0.2f};
    float *x = digits(N), *src = digits(N), want[P];
    nn_rng r, ref;
    nn_rng_seed(&r, 99, 1);
    ref = r;
    float *scratch = malloc(nn_augment_scratch_floats(N, R, C) * sizeof *scratch);
    nn_augment_batch(&a, x, N, R, C, BLACK, &r, scratch);
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        float dx = a.shift * (2.0f * nn_rng_uniform(&ref) - 1.0f);
        float dy = a.shift * (2.0f * nn_rng_uniform(&ref) - 1.0f);
        float angle = a.rotate * (2.0f * nn_rng_uniform(&ref) - 1.0f);
        float zoom = 1.0f + a.scale * (2.0f * nn_rng_uniform(&ref) - 1.0f);
        nn_augment_image(src + i * P, want, R, C, dx, dy, angle, zoom, BLACK);
        wrong += memcmp(want, x + i * P, sizeof want) != 0;
    }
    CHECKF(wrong == 0, "%d of %d images differ from their documented map", wrong, N);
    CHECK(r.state == ref.state && r.inc == ref.inc);
    free(x), free(src), free(scratch);
}

static void test_zero_setting_is_the_identity(void) {
    enum { N = 16 };
    const nn_augment zero = {0};
    CHECK(nn_augment_is_identity(&zero));
    const nn_augment d = NN_AUGMENT_DEFAULT;
    CHECK(!nn_augment_is_identity(&d));
    CHECK(!nn_augment_is_identity(&(nn_augment){.scale = 0.01f}));
    float *x = digits(N), *orig = digits(N);
    nn_rng r, ref;
    nn_rng_seed(&r, 4, 4);
    ref = r;
    nn_augment_batch(&zero, x, N, R, C, BLACK, &r, NULL); /* no scratch needed */
    CHECK(memcmp(x, orig, sizeof *x * N * P) == 0);
    /* The generator still moves on by the draws it would have used. */
    nn_rng_advance(&ref, NN_AUGMENT_DRAWS * N);
    CHECK(r.state == ref.state);

    /* The identity map, and whole-pixel shifts of 0 with either sign of zero. */
    float out[P];
    nn_augment_image(orig, out, R, C, 0.0f, 0.0f, 0.0f, 1.0f, BLACK);
    CHECK(memcmp(out, orig, sizeof out) == 0);
    nn_augment_image(orig, out, R, C, -0.0f, -0.0f, -0.0f, 1.0f, BLACK);
    CHECK(memcmp(out, orig, sizeof out) == 0);
    free(x), free(orig);
}

/* A whole-pixel shift moves every pixel exactly: the mass is the same, bit
 * for bit, and its centre moves by the shift. */
static void test_integer_shift_keeps_mass(void) {
    float src[P], out[P];
    draw_digit(src, 3);
    double mx0, my0, m0 = mass_of(src, R, C, &mx0, &my0);
    const int shifts[][2] = {{3, -2}, {-3, 3}, {1, 0}, {0, -1}};
    for (int s = 0; s < 4; s++) {
        int dx = shifts[s][0], dy = shifts[s][1];
        nn_augment_image(src, out, R, C, (float)dx, (float)dy, 0.0f, 1.0f, BLACK);
        int wrong = 0;
        for (int y = 0; y < R; y++)
            for (int x = 0; x < C; x++) {
                int sx = x - dx, sy = y - dy;
                float want = sx >= 0 && sx < C && sy >= 0 && sy < R ? src[sy * C + sx] : BLACK;
                wrong += memcmp(&out[y * C + x], &want, sizeof want) != 0;
            }
        CHECKF(wrong == 0, "shift (%d, %d): %d pixels not moved exactly", dx, dy, wrong);
        double mx, my, m = mass_of(out, R, C, &mx, &my);
        CHECKF(m == m0, "shift (%d, %d): mass %.9g, was %.9g", dx, dy, m, m0);
        CHECK_NEAR(mx, mx0 + dx, 1e-9);
        CHECK_NEAR(my, my0 + dy, 1e-9);
    }
    /* A shift of the whole side or more leaves only black. */
    nn_augment_image(src, out, R, C, (float)C, 0.0f, 0.0f, 1.0f, BLACK);
    int black = 0;
    for (int i = 0; i < P; i++) black += out[i] == BLACK;
    CHECK(black == P);
}

/* Bilinear interpolation spreads each pixel over neighbours with weights
 * that sum to 1, so a fractional shift keeps the mass (up to rounding) and
 * moves its centre by exactly the shift; so does a shift-only batch. */
static void test_fractional_shift_keeps_mass(void) {
    float src[P], out[P];
    draw_digit(src, 1);
    double mx0, my0, m0 = mass_of(src, R, C, &mx0, &my0);
    nn_augment_image(src, out, R, C, 0.25f, -1.625f, 0.0f, 1.0f, BLACK);
    double mx, my, m = mass_of(out, R, C, &mx, &my);
    CHECK_NEAR(m / m0, 1.0, 1e-5);
    CHECK_NEAR(mx, mx0 + 0.25, 1e-4);
    CHECK_NEAR(my, my0 - 1.625, 1e-4);

    enum { N = 12 };
    const nn_augment a = {.shift = 2.0f};
    float *x = digits(N), *orig = digits(N);
    augment(&a, x, N, 8);
    nn_rng ref;
    nn_rng_seed(&ref, 8, 5); /* as augment() seeds it */
    for (int i = 0; i < N; i++) {
        float dx = a.shift * (2.0f * nn_rng_uniform(&ref) - 1.0f);
        float dy = a.shift * (2.0f * nn_rng_uniform(&ref) - 1.0f);
        nn_rng_advance(&ref, 2);
        m0 = mass_of(orig + i * P, R, C, &mx0, &my0);
        m = mass_of(x + i * P, R, C, &mx, &my);
        CHECKF(fabs(m / m0 - 1.0) < 1e-5, "image %d: mass ratio %.7f", i, m / m0);
        CHECKF(fabs(mx - mx0 - dx) < 1e-4 && fabs(my - my0 - dy) < 1e-4,
               "image %d: centre moved by (%.5f, %.5f), drawn (%.5f, %.5f)", i, mx - mx0, my - my0,
               dx, dy);
    }
    free(x), free(orig);
}

/* Rotating a square image by 90 degrees (counter-clockwise on screen) about
 * its centre sends pixel (row r, column q) to (row n-1-q, column r). */
static void test_rotate_90(void) {
    enum { N = 9 };
    float src[N * N], out[N * N], back[N * N];
    for (int i = 0; i < N * N; i++) src[i] = 0.0f;
    src[1 * N + 6] = 1.0f; /* row 1, column 6: upper right */
    nn_augment_image(src, out, N, N, 0.0f, 0.0f, 90.0f, 1.0f, 0.0f);
    CHECK_NEAR(out[(N - 1 - 6) * N + 1], 1.0, 1e-6); /* row 2, column 1: upper left */
    double total = 0;
    for (int i = 0; i < N * N; i++) total += out[i];
    CHECK_NEAR(total, 1.0, 1e-5);

    /* Every pixel of a textured image, then -90 degrees back. */
    for (int i = 0; i < N * N; i++) src[i] = (float)((i * 37) % 23) - 5.0f;
    nn_augment_image(src, out, N, N, 0.0f, 0.0f, 90.0f, 1.0f, -5.0f);
    double err = 0;
    for (int r = 0; r < N; r++)
        for (int q = 0; q < N; q++) err = fmax(err, fabs(out[(N - 1 - q) * N + r] - src[r * N + q]));
    CHECKF(err < 1e-5, "90 degrees: max error %g", err);
    nn_augment_image(out, back, N, N, 0.0f, 0.0f, -90.0f, 1.0f, -5.0f);
    err = 0;
    for (int i = 0; i < N * N; i++) err = fmax(err, fabs(back[i] - src[i]));
    CHECKF(err < 1e-5, "90 then -90 degrees: max error %g", err);

    /* 180 degrees turns the image upside down, and a shift then moves it. */
    nn_augment_image(src, out, N, N, 1.0f, 0.0f, 180.0f, 1.0f, -5.0f);
    err = 0;
    for (int r = 0; r < N; r++)
        for (int q = 1; q < N; q++)
            err = fmax(err, fabs(out[(N - 1 - r) * N + (N - q)] - src[r * N + q]));
    CHECKF(err < 1e-5, "180 degrees and 1 pixel right: max error %g", err);
}

/* Zoom about the centre: a centred pattern keeps its centre, and its mass
 * grows with the area, zoom squared. */
static void test_zoom_scales_area(void) {
    float src[P], out[P];
    draw_digit(src, 0); /* k = 0: ring at column 12.1, row 12.6, upright stroke */
    double mx0, my0, m0 = mass_of(src, R, C, &mx0, &my0);
    const float zooms[] = {0.8f, 0.9f, 1.1f, 1.25f};
    for (int k = 0; k < 4; k++) {
        float z = zooms[k];
        nn_augment_image(src, out, R, C, 0.0f, 0.0f, 0.0f, z, BLACK);
        double mx, my, m = mass_of(out, R, C, &mx, &my);
        CHECKF(fabs(m / m0 / (z * z) - 1.0) < 0.03, "zoom %g: mass ratio %.4f, want %.4f", z,
               m / m0, z * z);
        /* The centre of mass moves away from the image centre by the zoom
         * (up to the aliasing of point sampling a sharp ring). */
        CHECK_NEAR(mx - 13.5, (mx0 - 13.5) * z, 0.1);
        CHECK_NEAR(my - 13.5, (my0 - 13.5) * z, 0.1);
    }
}

static void test_threads_give_the_same_bits(void) {
    enum { N = 64 };
    const nn_augment a = NN_AUGMENT_DEFAULT;
    float *x1 = digits(N), *x2 = digits(N);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    augment(&a, x1, N, 2024);
    omp_set_num_threads(2);
    augment(&a, x2, N, 2024);
    omp_set_num_threads(saved);
    CHECK(memcmp(x1, x2, sizeof *x1 * N * P) == 0);
    free(x1), free(x2);
}

/* Shifts and rotations move the ink around without making or losing much of
 * it; with zoom the mass follows the area (tested above). */
static void test_random_distortion_keeps_mass(void) {
    enum { N = 40 };
    const nn_augment a = {.shift = 2.0f, .rotate = 15.0f};
    float *x = digits(N), *orig = digits(N);
    augment(&a, x, N, 77);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double ratio = mass_of(x + i * P, R, C, NULL, NULL) / mass_of(orig + i * P, R, C, NULL, NULL);
        worst = fmax(worst, fabs(ratio - 1.0));
    }
    CHECKF(worst < 0.03, "mass changed by up to %.2f%%", 100 * worst);
    free(x), free(orig);
}

/* Bilinear sampling is a convex combination: the output stays finite and in
 * [min(fill, min x), max(fill, max x)], even for wild settings. */
static void test_output_stays_in_range(void) {
    enum { N = 24 };
    const nn_augment settings[] = {NN_AUGMENT_DEFAULT,
                                   {.shift = 12.0f, .rotate = 180.0f, .scale = 0.9f},
                                   {.shift = 0.5f, .rotate = 1.0f, .scale = 0.01f}};
    float *x = malloc(sizeof *x * N * P);
    for (int s = 0; s < 3; s++) {
        nn_rng noise;
        nn_rng_seed(&noise, (uint64_t)s, 9);
        float lo = BLACK, hi = BLACK;
        for (int i = 0; i < N * P; i++) {
            /* Values from just above black to white, with no black pixel. */
            x[i] = BLACK + 0.01f + (WHITE - BLACK) * nn_rng_uniform(&noise);
            lo = fminf(lo, x[i]);
            hi = fmaxf(hi, x[i]);
        }
        augment(&settings[s], x, N, 31);
        int bad = 0;
        for (int i = 0; i < N * P; i++) bad += !isfinite(x[i]) || x[i] < lo || x[i] > hi;
        CHECKF(bad == 0, "setting %d: %d values out of [%g, %g]", s, bad, lo, hi);
    }
    free(x);
}

static void test_check_rejects_bad_settings(void) {
    CHECK(nn_augment_check(&NN_AUGMENT_DEFAULT) == 0);
    CHECK(nn_augment_check(&(nn_augment){0}) == 0);
    CHECK(nn_augment_check(&(nn_augment){.shift = -1.0f}) == -1);
    CHECK(strstr(nn_last_error(), "shift") != NULL);
    CHECK(nn_augment_check(&(nn_augment){.rotate = NAN}) == -1);
    CHECK(strstr(nn_last_error(), "rotate") != NULL);
    CHECK(nn_augment_check(&(nn_augment){.scale = 1.0f}) == -1);
    CHECK(strstr(nn_last_error(), "scale") != NULL);
    CHECK(nn_augment_check(&(nn_augment){.shift = INFINITY}) == -1);
    CHECK(nn_augment_scratch_floats(128, 28, 28) == 128u * 784u);
    CHECK(nn_augment_scratch_floats(0, 28, 28) == 0);
}

TEST_MAIN(TEST(test_same_seed_same_batch), TEST(test_batch_uses_the_documented_draws),
          TEST(test_zero_setting_is_the_identity), TEST(test_integer_shift_keeps_mass),
          TEST(test_fractional_shift_keeps_mass), TEST(test_rotate_90), TEST(test_zoom_scales_area),
          TEST(test_threads_give_the_same_bits), TEST(test_random_distortion_keeps_mass),
          TEST(test_output_stays_in_range), TEST(test_check_rejects_bad_settings))
