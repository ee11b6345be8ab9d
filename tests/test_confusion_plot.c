/* The confusion-matrix picture (app/plot/confusion.c): what each cell shows
 * (its share of the row, its shade, its text), the layout for 10 digits, 18
 * languages and many classes, and the drawn PNG read back: every cell has
 * the shade of its share where the layout puts it. Files go to a fresh
 * folder under /tmp, removed afterwards. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "nn/error.h"
#include "nn/image.h"
#include "nn/report.h"
#include "plot/plot.h"
#include "core/util.h"

static char tmp_dir[64];

static const char *tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmp_dir, name);
    return buf;
}

/* A 4-class matrix: a good class, an empty one, a large one with rare
 * mistakes, and one mostly wrong. */
enum { N4 = 4 };
static const long counts4[N4][N4] = {
    {97, 2, 1, 0},
    {0, 0, 0, 0},
    {1, 0, 1998, 1},
    {3, 1, 0, 6},
};
static const char *const names4[N4] = {"cat", "dog", "bird", "a rather long name"};

static void confusion4(nn_confusion *c) {
    CHECK(nn_confusion_init(c, N4) == 0);
    for (int r = 0; r < N4; r++)
        for (int k = 0; k < N4; k++)
            for (long i = 0; i < counts4[r][k]; i++) nn_confusion_add(c, r, k);
}

static double luminance(const unsigned char rgb[3]) { return (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255; }

static void test_shade(void) {
    unsigned char rgb[3];
    nn_plot_confusion_shade(0, rgb);
    CHECK(rgb[0] == 255 && rgb[1] == 255 && rgb[2] == 255);
    nn_plot_confusion_shade(NN_CONFUSION_LEVELS - 1, rgb);
    CHECK(rgb[0] == 8 && rgb[1] == 48 && rgb[2] == 107);
    /* Never lighter from one level to the next (colours are whole numbers,
     * so neighbours may tie), darker every few levels. */
    double last = 2, last4 = 2;
    for (int l = 0; l < NN_CONFUSION_LEVELS; l++) {
        nn_plot_confusion_shade(l, rgb);
        double y = luminance(rgb);
        CHECKF(y <= last, "level %d is lighter than level %d", l, l - 1);
        if (l % 4 == 0) {
            CHECKF(y < last4, "level %d is not darker than level %d", l, l - 4);
            last4 = y;
        }
        last = y;
    }
    /* The square-root scale: 1% a tenth of the way, 25% half way. */
    CHECK(nn_plot_confusion_level(0) == 0 && nn_plot_confusion_level(1) == NN_CONFUSION_LEVELS - 1);
    CHECK(nn_plot_confusion_level(0.01) == 26 && nn_plot_confusion_level(0.25) == 128);
    CHECK(nn_plot_confusion_level(NAN) == 0 && nn_plot_confusion_level(2) == NN_CONFUSION_LEVELS - 1);
}

static void test_cells(void) {
    nn_confusion c;
    confusion4(&c);
    nn_confusion_cell cells[N4 * N4];
    nn_plot_confusion_cells(&c, 72, 2, 12, cells);
    const nn_confusion_cell *e = cells;
    /* Row 0: 100 examples. */
    CHECK(e[0].count == 97 && fabs(e[0].share - 0.97) < 1e-12 && e[0].level == nn_plot_confusion_level(0.97));
    CHECK(strcmp(e[0].text[0], "97") == 0 && strcmp(e[0].text[1], "97.0%") == 0 && e[0].light_text);
    CHECK(strcmp(e[1].text[0], "2") == 0 && strcmp(e[1].text[1], "2.0%") == 0 && !e[1].light_text);
    CHECK(e[3].count == 0 && e[3].share == 0 && e[3].level == 0 && !e[3].text[0][0] && !e[3].text[1][0]);
    double row = 0;
    for (int k = 0; k < N4; k++) row += e[k].share;
    CHECK_NEAR(row, 1.0, 1e-12);
    /* Row 1 has no examples: white, nothing written. */
    for (int k = 0; k < N4; k++) {
        const nn_confusion_cell *x = &e[N4 + k];
        CHECK(x->share == 0 && x->level == 0 && !x->text[0][0] && !x->light_text);
    }
    /* Row 2: 2000 examples; shares truncated, never rounded up to 100%. */
    e = cells + 2 * N4;
    CHECK(strcmp(e[2].text[0], "1998") == 0 && strcmp(e[2].text[1], "99.9%") == 0);
    CHECK(strcmp(e[0].text[1], "<0.1%") == 0 && fabs(e[0].share - 0.0005) < 1e-12);
    CHECK(e[0].level == nn_plot_confusion_level(0.0005) && e[0].level > 0);
    /* Row 3: 10 examples, 3 -> 30%, 6 -> 60%. */
    e = cells + 3 * N4;
    CHECK(strcmp(e[0].text[1], "30.0%") == 0 && strcmp(e[3].text[1], "60.0%") == 0);
    CHECK(e[3].level > e[0].level && e[0].level > e[1].level);
    /* All of a row is "100%". */
    nn_confusion one;
    CHECK(nn_confusion_init(&one, 2) == 0);
    nn_confusion_add(&one, 0, 0);
    nn_confusion_add(&one, 1, 0);
    nn_confusion_cell two[4];
    nn_plot_confusion_cells(&one, 72, 2, 12, two);
    CHECK(strcmp(two[0].text[1], "100%") == 0 && two[0].level == NN_CONFUSION_LEVELS - 1 && two[0].light_text);
    nn_confusion_free(&one);

    /* One line: the count only; none: nothing; a narrow cell drops what
     * does not fit ("1998" at 10 px is about 25 px wide). */
    nn_plot_confusion_cells(&c, 40, 1, 11, cells);
    CHECK(strcmp(cells[0].text[0], "97") == 0 && !cells[0].text[1][0]);
    nn_plot_confusion_cells(&c, 20, 0, 10, cells);
    for (int i = 0; i < N4 * N4; i++) CHECK(!cells[i].text[0][0] && !cells[i].text[1][0]);
    nn_plot_confusion_cells(&c, 24, 1, 10, cells);
    CHECK(strcmp(cells[0].text[0], "97") == 0 && !cells[2 * N4 + 2].text[0][0]);
    /* The shade does not depend on the size. */
    CHECK(cells[2 * N4 + 2].level == nn_plot_confusion_level(0.999));
    nn_confusion_free(&c);
}

static void test_layout(void) {
    nn_confusion c;
    nn_confusion_layout L;
    /* Ten digits: big cells with two lines, labels across. */
    CHECK(nn_confusion_init(&c, 10) == 0);
    nn_confusion_add(&c, 3, 5);
    CHECKF(nn_plot_confusion_layout(&c, NULL, "m on data/mnist", &L) == 0, "%s", nn_last_error());
    CHECK(L.cell == 72 && L.lines == 2 && !L.rotated);
    CHECK(L.left > 0 && L.top > 0 && L.left + 10 * L.cell < L.width && L.top + 10 * L.cell < L.height);
    CHECK(L.width < 1400 && L.height < 1400);
    nn_confusion_free(&c);
    /* Eighteen languages: names written upwards, still two lines a cell. */
    static const char *const langs[18] = {"Arabic",   "Chinese", "Czech",  "Dutch",      "English", "French",
                                          "German",   "Greek",   "Irish",  "Italian",    "Japanese", "Korean",
                                          "Polish",   "Portuguese", "Russian", "Scottish", "Spanish", "Vietnamese"};
    CHECK(nn_confusion_init(&c, 18) == 0);
    CHECK(nn_plot_confusion_layout(&c, langs, NULL, &L) == 0);
    CHECK(L.cell == 40 && L.lines == 2 && L.rotated);
    CHECK(L.left + 18 * L.cell < L.width && L.top + 18 * L.cell < L.height);
    /* The labels' band over the matrix holds the longest name. */
    CHECK(L.top > 10 * 13 * 0.62);
    nn_confusion_free(&c);
    /* Many classes: small cells, shade only. */
    CHECK(nn_confusion_init(&c, 60) == 0);
    CHECK(nn_plot_confusion_layout(&c, NULL, NULL, &L) == 0);
    CHECK(L.cell == 12 && L.lines == 0);
    nn_confusion_free(&c);
    CHECK(nn_confusion_init(&c, NN_CONFUSION_MAX_DRAWN + 1) == 0);
    CHECK(nn_plot_confusion_layout(&c, NULL, NULL, &L) == -1 && strstr(nn_last_error(), "101 classes"));
    nn_confusion_free(&c);
}

/* The gray value (as nn_image_load reads it) at pixel (x, y). */
static double gray_at(const nn_image *img, int x, int y) { return img->pixels[(size_t)y * img->width + x]; }

static void test_drawn(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/nn_test_confusion.XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        CHECKF(0, "mkdtemp: %s", tmp_dir);
        return;
    }
    nn_confusion c;
    confusion4(&c);
    char png[128], svg[128], gif[128];
    tmp_path(png, sizeof png, "c4.png");
    tmp_path(svg, sizeof svg, "c4.svg");
    tmp_path(gif, sizeof gif, "c4.gif");
    CHECKF(nn_plot_confusion(png, &c, names4, "a test") == 0, "%s", nn_last_error());
    nn_confusion_layout L;
    CHECK(nn_plot_confusion_layout(&c, names4, "a test", &L) == 0);
    CHECK(L.rotated && L.lines == 2);
    nn_image img;
    CHECKF(nn_image_load(&img, png) == 0, "%s", nn_last_error());
    CHECKF(img.width == L.width && img.height == L.height, "%dx%d drawn, %dx%d planned", img.width, img.height,
           L.width, L.height);
    nn_confusion_cell cells[N4 * N4];
    nn_plot_confusion_cells(&c, L.cell, L.lines, L.text_px, cells);
    /* Each cell's corner (clear of its text and of the grid lines) has its
     * shade, as nn_image_load turns colour into gray. */
    for (int r = 0; r < N4 && img.pixels; r++)
        for (int k = 0; k < N4; k++) {
            unsigned char rgb[3];
            nn_plot_confusion_shade(cells[r * N4 + k].level, rgb);
            double want = luminance(rgb);
            for (int corner = 0; corner < 2; corner++) {
                int x = L.left + k * L.cell + (corner ? L.cell - 5 : 4), y = L.top + r * L.cell + 4;
                double got = gray_at(&img, x, y);
                CHECKF(fabs(got - want) < 0.02, "cell (%d, %d) at (%d, %d): gray %.3f, its shade %.3f", r, k, x, y,
                       got, want);
            }
        }
    /* The diagonal of a good class is dark, its empty cells white, and the
     * page white beside the matrix. */
    if (img.pixels) {
        CHECK(gray_at(&img, L.left + 4, L.top + 4) < 0.3);
        CHECK(gray_at(&img, L.left + 3 * L.cell + 4, L.top + 4) > 0.99);
        CHECK(gray_at(&img, 2, 2) > 0.99 && gray_at(&img, L.width - 3, L.height / 2) > 0.99);
    }
    nn_image_free(&img);

    /* SVG by the extension. */
    CHECKF(nn_plot_confusion(svg, &c, NULL, NULL) == 0, "%s", nn_last_error());
    size_t len = 0;
    char *text = (char *)nn_read_file(svg, &len, 0);
    CHECK(text && strstr(text, "<svg") && strstr(text, "</svg>") && len > 5000);
    free(text);
    unlink(svg);

    /* Refused: another extension, an empty matrix, a folder that is not
     * there; a good picture is never replaced by a failed one. */
    CHECK(nn_plot_confusion(gif, &c, NULL, NULL) == -1 &&
          strstr(nn_last_error(), "unsupported plot format"));
    nn_confusion empty;
    CHECK(nn_confusion_init(&empty, 3) == 0);
    CHECK(nn_plot_confusion(png, &empty, NULL, NULL) == -1 && strstr(nn_last_error(), "empty"));
    nn_confusion_free(&empty);
    CHECK(nn_image_load(&img, png) == 0 && img.width == L.width);
    nn_image_free(&img);
    CHECK(nn_plot_confusion("/nonexistent/dir/c.png", &c, NULL, NULL) == -1 &&
          strstr(nn_last_error(), "/nonexistent/dir/c.png"));
    unlink(png);
    nn_confusion_free(&c);
    CHECKF(rmdir(tmp_dir) == 0, "%s left behind", tmp_dir);
}

TEST_MAIN(TEST(test_shade), TEST(test_cells), TEST(test_layout), TEST(test_drawn))
