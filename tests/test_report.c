/* Tests of the report layer: plots, image grids, metrics CSV, progress bar,
 * confusion matrix, most confident mistakes. Files go to a fresh folder under
 * /tmp, removed afterwards. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, open_memstream, nanosleep */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "nn/error.h"
#include "nn/image.h"
#include "nn/report.h"
#include "study_stats.h"
#include "plot/plot.h"
#include "progress.h"
#include "core/util.h"

/* ---- helpers -------------------------------------------------------------- */

static char tmp_dir[64];

static void make_tmp_dir(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/nn_test_report.XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        exit(1);
    }
}

static const char *tmp_path(const char *name) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

/* Removes the listed files, then the folder. */
static void remove_tmp_dir(const char *const *names, int n) {
    for (int i = 0; i < n; i++) unlink(tmp_path(names[i]));
    CHECKF(rmdir(tmp_dir) == 0, "%s left behind", tmp_dir);
}

static unsigned char *slurp(const char *path, size_t *len) {
    unsigned char *data = nn_read_file(path, len, 0);
    CHECKF(data != NULL, "%s", nn_last_error());
    return data;
}

/* A training run's two panels: accuracy (fixed range) and loss (automatic). */
enum { EPOCHS = 5 };
static const double epochs[EPOCHS] = {1, 2, 3, 4, 5};
static const double train_acc[EPOCHS] = {0.90, 0.95, 0.97, 0.98, 0.985};
static const double test_acc[EPOCHS] = {0.91, 0.94, 0.955, 0.96, 0.962};
static const double train_loss[EPOCHS] = {0.40, 0.20, 0.12, 0.08, 0.06};
static const double test_loss[EPOCHS] = {0.35, 0.22, 0.16, 0.15, 0.15};

static int plot_training(const char *path) {
    nn_series acc[2] = {{"train", epochs, train_acc, EPOCHS, 0},
                        {"test", epochs, test_acc, EPOCHS, 0}};
    nn_series loss[2] = {{"train", epochs, train_loss, EPOCHS, 0},
                         {"test", epochs, test_loss, EPOCHS, 0}};
    nn_panel panels[2] = {{"Accuracy", "epoch", "accuracy", acc, 2, 0.8, 1.0},
                          {"Loss", "epoch", "loss", loss, 2, 0, 0}};
    return nn_plot(path, panels, 2);
}

static unsigned be32(const unsigned char *p) {
    return (unsigned)p[0] << 24 | (unsigned)p[1] << 16 | (unsigned)p[2] << 8 | p[3];
}

/* ---- plots ---------------------------------------------------------------- */

static void test_plot_png(void) {
    make_tmp_dir();
    const char *path = tmp_path("train.png");
    CHECKF(plot_training(path) == 0, "%s", nn_last_error());
    size_t len = 0;
    unsigned char *png = slurp(path, &len);
    if (png) {
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        CHECKF(len > 10000, "PNG only %zu bytes", len);
        CHECK(len > 24 && memcmp(png, sig, 8) == 0);
        /* The IHDR chunk follows the signature: two panels are 1100 x 550. */
        CHECK(len > 24 && memcmp(png + 12, "IHDR", 4) == 0);
        CHECKF(len > 24 && be32(png + 16) == 1100 && be32(png + 20) == 550, "size %ux%u",
               be32(png + 16), be32(png + 20));
        free(png);
    }
    const char *files[] = {"train.png"};
    remove_tmp_dir(files, 1);
}

static void test_plot_svg_and_scatter(void) {
    make_tmp_dir();
    CHECKF(plot_training(tmp_path("train.svg")) == 0, "%s", nn_last_error());
    size_t len = 0;
    unsigned char *svg = slurp(tmp_path("train.svg"), &len);
    if (svg) {
        CHECK(strncmp((char *)svg, "<?xml", 5) == 0 || strstr((char *)svg, "<svg"));
        CHECK(strstr((char *)svg, "</svg>") != NULL);
        free(svg);
    }

    /* Linear regression: points plus a line, stacked over a one-point and a
     * constant series (ranges that must not collapse to zero width). */
    double x[6] = {0, 1, 2, 3, 4, 5}, y[6] = {1.1, 2.9, 5.2, 7.1, 8.8, 11.2};
    double fx[2] = {0, 5}, fy[2] = {1, 11}, one = 3, flat[3] = {0.5, 0.5, 0.5};
    nn_series fit[2] = {{"data", x, y, 6, 1}, {"fit y = 2x + 1 (#1)", fx, fy, 2, 0}};
    nn_series odd[2] = {{"single", &one, &one, 1, 0}, {"constant", x, flat, 3, 0}};
    nn_panel panels[2] = {{"Linear regression", "x", "y", fit, 2, 0, 0},
                          {"Degenerate", "x", "y", odd, 2, 0, 0}};
    CHECKF(nn_plot_stacked(tmp_path("linreg.png"), panels, 2) == 0, "%s", nn_last_error());
    unsigned char *png = slurp(tmp_path("linreg.png"), &len);
    if (png) {
        CHECK(len > 24 && be32(png + 16) == 800 && be32(png + 20) == 900);
        free(png);
    }
    const char *files[] = {"train.svg", "linreg.png"};
    remove_tmp_dir(files, 2);
}

static void test_plot_errors(void) {
    make_tmp_dir();
    const char *jpg = tmp_path("plot.jpg");
    CHECK(plot_training(jpg) == -1);
    CHECKF(strstr(nn_last_error(), jpg) && strstr(nn_last_error(), "unsupported plot format"),
           "message: %s", nn_last_error());
    CHECK(access(jpg, F_OK) != 0);
    CHECK(plot_training(tmp_path("no_extension")) == -1);

    nn_panel reversed = {"t", "x", "y", NULL, 0, 1.0, 0.0};
    CHECK(nn_plot(tmp_path("r.png"), &reversed, 1) == -1);
    CHECKF(strstr(nn_last_error(), "y range") != NULL, "message: %s", nn_last_error());
    CHECK(nn_plot(tmp_path("r.png"), &reversed, 0) == -1);
    CHECK(access(tmp_path("r.png"), F_OK) != 0);

    CHECK(plot_training("/nonexistent-nn-dir/plot.png") == -1);
    CHECKF(strstr(nn_last_error(), "/nonexistent-nn-dir/plot.png") != NULL, "message: %s",
           nn_last_error());
    remove_tmp_dir(NULL, 0);
}

/* ---- image grids ---------------------------------------------------------- */

/* Six 7x5 images: all black, all white, a gradient, and three more; captions
 * with PLplot's escape character, the arrow and a second line. */
enum { G_N = 6, G_ROWS = 7, G_COLS = 5 };
static float grid_pixels[G_N * G_ROWS * G_COLS];
static const char *const grid_captions[G_N] = {"black", "white", "7 \xe2\x86\x92 1 (99.9%)", "#3",
                                               "two\nlines", ""};

static nn_image_grid test_grid(void) {
    for (int i = 0; i < G_N * G_ROWS * G_COLS; i++) {
        int img = i / (G_ROWS * G_COLS), p = i % (G_ROWS * G_COLS);
        grid_pixels[i] = img == 0 ? 0.0f : img == 1 ? 1.0f : (float)p / (G_ROWS * G_COLS - 1) * 1.5f - 0.25f;
    }
    return (nn_image_grid){.title = "A test grid", .subtitle = "values clamped to 0..1", .n = G_N,
                           .rows = G_ROWS, .cols = G_COLS, .pixels = grid_pixels, .lo = 0.0f, .hi = 1.0f,
                           .scale = NN_GRID_GRAY, .captions = grid_captions};
}

/* The longest run of pixels within tol of gray level v in any row. */
static int longest_run(const nn_image *img, float v, float tol) {
    int best = 0;
    for (int y = 0; y < img->height; y++)
        for (int x = 0, run = 0; x < img->width; x++) {
            run = fabsf(img->pixels[(size_t)y * img->width + x] - v) <= tol ? run + 1 : 0;
            if (run > best) best = run;
        }
    return best;
}

static void test_image_grid_png(void) {
    make_tmp_dir();
    nn_image_grid g = test_grid();
    const char *path = tmp_path("grid.png");
    CHECKF(nn_plot_image_grid(path, &g) == 0, "%s", nn_last_error());
    size_t len = 0;
    unsigned char *png = slurp(path, &len);
    if (png) {
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        CHECK(len > 24 && memcmp(png, sig, 8) == 0 && memcmp(png + 12, "IHDR", 4) == 0);
        CHECKF(len > 3000, "PNG only %zu bytes", len);
        /* Three columns of images scaled up to about 112 px, two rows. */
        CHECKF(len > 24 && be32(png + 16) >= 3 * 100 && be32(png + 20) >= 2 * 100, "size %ux%u", be32(png + 16),
               be32(png + 20));
        free(png);
    }
    /* The black image is a solid block as wide as the scaled image (5 pixels
     * at a whole factor of 112 / 7 = 16: 80 px), and nothing else on the page
     * (text, the white background) makes such a run. */
    nn_image img;
    CHECKF(nn_image_load(&img, path) == 0, "%s", nn_last_error());
    if (img.pixels) {
        int run = longest_run(&img, 0.0f, 0.01f);
        CHECKF(run >= 78 && run <= 82, "longest black run %d px", run);
        nn_image_free(&img);
    }
    const char *files[] = {"grid.png"};
    remove_tmp_dir(files, 1);
}

static void test_image_grid_svg_diverging(void) {
    make_tmp_dir();
    nn_image_grid g = test_grid();
    g.scale = NN_GRID_DIVERGING;
    g.lo = -1.0f;
    g.columns = 6; /* one row */
    CHECKF(nn_plot_image_grid(tmp_path("grid.svg"), &g) == 0, "%s", nn_last_error());
    size_t len = 0;
    unsigned char *svg = slurp(tmp_path("grid.svg"), &len);
    if (svg) {
        CHECK(strstr((char *)svg, "<svg") && strstr((char *)svg, "</svg>"));
        CHECKF(len > 3000, "SVG only %zu bytes", len);
        free(svg);
    }
    /* On the diverging scale 0 (image 0, now mid-scale) is white and 1 red. */
    CHECKF(nn_plot_image_grid(tmp_path("grid.png"), &g) == 0, "%s", nn_last_error());
    nn_image img;
    CHECKF(nn_image_load(&img, tmp_path("grid.png")) == 0, "%s", nn_last_error());
    if (img.pixels) {
        CHECKF(img.width > 6 * 80 && img.height < 300, "%dx%d: not one row", img.width, img.height);
        float red = (0.299f * 178 + 0.587f * 24 + 0.114f * 43) / 255; /* its luminance */
        int run = longest_run(&img, red, 0.02f);
        CHECKF(run >= 78 && run <= 82, "longest red run %d px", run);
        nn_image_free(&img);
    }
    const char *files[] = {"grid.svg", "grid.png"};
    remove_tmp_dir(files, 2);
}

static void test_image_grid_errors(void) {
    make_tmp_dir();
    nn_image_grid g = test_grid();
    const char *jpg = tmp_path("grid.jpg");
    CHECK(nn_plot_image_grid(jpg, &g) == -1);
    CHECKF(strstr(nn_last_error(), jpg) && strstr(nn_last_error(), "unsupported plot format"), "message: %s",
           nn_last_error());
    CHECK(nn_plot_image_grid(tmp_path("grid"), &g) == -1);
    const char *png = tmp_path("grid.png");
    struct {
        const char *what, *message;
        nn_image_grid g;
    } bad[] = {
        {"n = 0", "0 images", g},           {"n too big", "1025 images", g},  {"rows = 0", "0x5 images", g},
        {"cols too big", "7x513 images", g}, {"lo == hi", "value range", g}, {"no pixels", "no pixels", g},
        {"NaN", "image 2: pixel 3 is nan", g}, {"three lines", "caption 4 has 3 lines", g},
        {"columns < 0", "-1 columns", g},
    };
    bad[0].g.n = 0;
    bad[1].g.n = NN_GRID_MAX_IMAGES + 1;
    bad[2].g.rows = 0;
    bad[3].g.cols = NN_GRID_MAX_SIDE + 1;
    bad[4].g.lo = bad[4].g.hi;
    bad[5].g.pixels = NULL;
    float nan_pixels[G_N * G_ROWS * G_COLS];
    memcpy(nan_pixels, grid_pixels, sizeof nan_pixels);
    nan_pixels[G_ROWS * G_COLS + 3] = NAN;
    bad[6].g.pixels = nan_pixels;
    const char *three[G_N] = {"a", "b", "c", "1\n2\n3", "e", "f"};
    bad[7].g.captions = three;
    bad[8].g.columns = -1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(nn_plot_image_grid(png, &bad[i].g) == -1, "%s accepted", bad[i].what);
        CHECKF(strstr(nn_last_error(), png) && strstr(nn_last_error(), bad[i].message), "%s: message: %s",
               bad[i].what, nn_last_error());
    }
    CHECK(access(png, F_OK) != 0 && access(jpg, F_OK) != 0);
    remove_tmp_dir(NULL, 0);
}

/* ---- kernels and mistakes ---------------------------------------------------- */

static void test_plot_conv_filters(void) {
    make_tmp_dir();
    nn_rng rng;
    nn_rng_seed(&rng, 7, 1);
    nn_model m;
    /* Two input channels: each kernel is drawn as their mean. */
    CHECK(nn_model_init(&m, "conv(3,3) relu flatten linear(10)", (int[]){2, 8, 8}, 10, &rng) == 0);
    CHECKF(nn_plot_conv_filters(tmp_path("k.png"), &m, "test model") == 0, "%s", nn_last_error());
    size_t len = 0;
    unsigned char *png = slurp(tmp_path("k.png"), &len);
    if (png) {
        CHECK(len > 2000 && memcmp(png, "\x89PNG", 4) == 0);
        free(png);
    }
    nn_model_free(&m);
    CHECK(nn_model_init(&m, "flatten linear(16) relu linear(10)", (int[]){1, 8, 8}, 10, &rng) == 0);
    CHECK(nn_plot_conv_filters(tmp_path("mlp.png"), &m, "mlp.safetensors") == -1);
    CHECKF(strstr(nn_last_error(), "mlp.safetensors: the model has no conv layer") &&
               strstr(nn_last_error(), "flatten linear(16) relu linear(10)"),
           "message: %s", nn_last_error());
    CHECK(access(tmp_path("mlp.png"), F_OK) != 0);
    nn_model_free(&m);
    const char *files[] = {"k.png"};
    remove_tmp_dir(files, 1);
}

/* A 2x2 "dataset" and a model that always predicts class 3, more surely the
 * brighter the image: logit 3 = the sum of the pixels (in 0..1), the others
 * 0. So the mistakes are the images not labelled 3, ranked by brightness. */
static void test_find_mistakes(void) {
    enum { N = 7 };
    static uint8_t images[N * 4] = {
        255, 255, 255, 255, /* 0: label 3, right */
        10,  0,   0,   0,   /* 1: dim, wrong */
        200, 200, 200, 200, /* 2: bright, wrong */
        100, 0,   0,   0,   /* 3: wrong */
        200, 200, 200, 200, /* 4: as bright as 2, wrong: after 2 */
        50,  50,  50,  50,  /* 5: label 3, right */
        0,   0,   0,   0,   /* 6: all logits 0, predicted 0 = its label: right */
    };
    static uint8_t labels[N] = {3, 1, 9, 0, 2, 3, 0};
    nn_dataset ds = {.n = N, .rows = 2, .cols = 2, .images = images, .labels = labels};
    nn_rng rng;
    nn_rng_seed(&rng, 1, 1);
    nn_model m;
    CHECK(nn_model_init(&m, "flatten linear(10)", (int[]){1, 2, 2}, 10, &rng) == 0);
    memset(m.params.data, 0, m.params.count * sizeof(float));
    nn_tensor *w = nn_layer_tensor(&m.layers[1], "weight"); /* [10, 4] */
    for (int p = 0; p < 4; p++) w->data[3 * 4 + p] = 1.0f;
    m.input_mean = 0.0f;
    m.input_std = 1.0f;
    nn_ctx *ctx = nn_ctx_new(0);
    nn_mistake top[N];
    int wrong = -1, n = nn_find_mistakes(&m, ctx, &ds, top, N, &wrong);
    CHECKF(n == 4 && wrong == 4, "kept %d of %d mistakes", n, wrong);
    static const int order[4] = {2, 4, 3, 1};
    for (int i = 0; i < 4 && i < n; i++) {
        CHECKF(top[i].index == order[i], "mistake %d is example %d", i, top[i].index);
        CHECK(top[i].pred == 3 && top[i].truth == labels[top[i].index]);
        double s = 0;
        for (int p = 0; p < 4; p++) s += images[top[i].index * 4 + p] / 255.0;
        CHECK_NEAR(top[i].confidence, exp(s) / (exp(s) + 9), 1e-6);
    }
    /* Room for two: the two most confident. */
    n = nn_find_mistakes(&m, ctx, &ds, top, 2, NULL);
    CHECK(n == 2 && top[0].index == 2 && top[1].index == 4);
    CHECK(nn_find_mistakes(&m, ctx, &ds, top, 0, NULL) == -1);
    /* The context is left as it was found: gradients on, training mode. */
    CHECK(nn_grad_enabled(ctx) && nn_training(ctx));
    nn_dataset wide = ds;
    wide.cols = 1;
    wide.n = 2 * N;
    CHECK(nn_find_mistakes(&m, ctx, &wide, top, N, NULL) == -1);
    CHECKF(strstr(nn_last_error(), "[1, 2, 2]") && strstr(nn_last_error(), "2x1"), "message: %s", nn_last_error());

    make_tmp_dir();
    n = nn_find_mistakes(&m, ctx, &ds, top, N, &wrong);
    CHECKF(nn_plot_mistakes(tmp_path("m.png"), &ds, top, n, wrong, NULL, "test") == 0, "%s", nn_last_error());
    static const char *const names[10] = {"zero", "one", "two", "three", "four",
                                          "five", "six", "seven", "eight", "nine"};
    CHECKF(nn_plot_mistakes(tmp_path("m.svg"), &ds, top, n, wrong, names, NULL) == 0, "%s", nn_last_error());
    top[0].index = N;
    CHECK(nn_plot_mistakes(tmp_path("bad.png"), &ds, top, n, wrong, NULL, "test") == -1);
    CHECK(nn_plot_mistakes(tmp_path("bad.png"), &ds, top, 0, wrong, NULL, "test") == -1);
    CHECK(access(tmp_path("bad.png"), F_OK) != 0);
    const char *files[] = {"m.png", "m.svg"};
    remove_tmp_dir(files, 2);
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

/* ---- metrics CSV ---------------------------------------------------------- */

static void test_metrics_csv(void) {
    make_tmp_dir();
    const char *path = tmp_path("metrics.csv");
    const char *extra_cols[2] = {"val_loss", "val_acc"};
    nn_metrics_file *f = nn_metrics_open(path, extra_cols, 2);
    CHECKF(f != NULL, "%s", nn_last_error());
    if (f) {
        nn_epoch_metrics m = {1, 0.5, 0.875, 0.25, 0.9375, 0.01, 12.5, 4800};
        double extra[2] = {0.3, 0.91};
        CHECK(nn_metrics_write(f, &m, extra) == 0);
        /* Read back before closing: the row must already be on disk. */
        size_t len = 0;
        char *text = (char *)slurp(path, &len);
        if (text) {
            const char *expected =
                "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,images_per_sec,"
                "val_loss,val_acc\n"
                "1,0.5,0.875,0.25,0.9375,0.01,12.5,4800,0.3,0.91\n";
            CHECKF(strcmp(text, expected) == 0, "got:\n%s", text);
            free(text);
        }
        m = (nn_epoch_metrics){2, 1.0 / 3, 0.123456789, 2e-7, 1, 0.001, 3600.25, 123456789};
        CHECK(nn_metrics_write(f, &m, extra) == 0);
        CHECK(nn_metrics_write(f, &m, NULL) == -1); /* extras promised, none given */
        CHECK(nn_metrics_close(f) == 0);
        text = (char *)slurp(path, &len);
        if (text) {
            const char *row2 = strchr(strchr(text, '\n') + 1, '\n') + 1;
            CHECKF(strcmp(row2, "2,0.333333,0.123457,2e-07,1,0.001,3600.25,1.23457e+08,0.3,0.91\n") == 0,
                   "got: %s", row2);
            free(text);
        }
    }

    /* Without extra columns the header is exactly the eight fixed names. */
    f = nn_metrics_open(path, NULL, 0);
    CHECK(f != NULL && nn_metrics_close(f) == 0);
    size_t len = 0;
    char *text = (char *)slurp(path, &len);
    if (text) {
        CHECK(strcmp(text, "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,"
                           "images_per_sec\n") == 0);
        free(text);
    }
    CHECK(nn_metrics_close(NULL) == 0);

    const char *bad_cols[1] = {"a,b"};
    CHECK(nn_metrics_open(tmp_path("bad.csv"), bad_cols, 1) == NULL);
    CHECK(access(tmp_path("bad.csv"), F_OK) != 0);
    const char *files[] = {"metrics.csv"};
    remove_tmp_dir(files, 1);
}

static void test_metrics_missing_dir(void) {
    const char *path = "/nonexistent-nn-dir/metrics.csv";
    CHECK(nn_metrics_open(path, NULL, 0) == NULL);
    CHECKF(strstr(nn_last_error(), path) && strstr(nn_last_error(), "No such file"),
           "message: %s", nn_last_error());
}

/* ---- progress bar (the nn program's, cli/progress.h) ----------------------- */

static int count_char(const char *s, char c) {
    int n = 0;
    for (; *s; s++) n += *s == c;
    return n;
}

static void test_progress_tty(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    progress_bar p = {.out = out, .force_tty = true};
    progress_begin(&p, "epoch 1/3", 10);
    progress_update(&p, 3, 0.5, 2500);
    fflush(out);
    CHECKF(strstr(buf, "ETA") && strstr(buf, "3/10") && strstr(buf, "loss 0.5000") &&
               strstr(buf, "2500 img/s") && strstr(buf, "epoch 1/3") && buf[0] == '\r',
           "line: %s", buf);
    progress_update(&p, 10, 0.25, 2500); /* the final state is always drawn */
    progress_end(&p);
    fclose(out);
    CHECKF(count_char(buf, '\r') == 3, "%d redraws+erase in: %s", count_char(buf, '\r'), buf);
    CHECK(strstr(buf, "10/10") && strstr(buf, "[####################]"));
    CHECK(len >= 4 && strcmp(buf + len - 4, "\r\033[K") == 0); /* the bar is erased */
    free(buf);
}

static void test_progress_throttled(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    progress_bar p = {.out = out, .force_tty = true};
    progress_begin(&p, "", 100);
    for (int i = 1; i <= 50; i++) progress_update(&p, i, 1.0, 0);
    fflush(out);
    /* 50 updates in well under 0.1 s: only the first is drawn (unless this
     * machine stalled for 0.1 s, which would allow one more). */
    CHECKF(count_char(buf, '\r') <= 2, "%d redraws", count_char(buf, '\r'));
    CHECK(strstr(buf, "img/s") == NULL); /* hidden when not given */
    /* Once 0.1 s has passed, the next update is drawn again. */
    int before = count_char(buf, '\r');
    nanosleep(&(struct timespec){.tv_nsec = 120000000}, NULL);
    progress_update(&p, 60, 1.0, 0);
    fflush(out);
    CHECK(count_char(buf, '\r') == before + 1 && strstr(buf, "60/100"));
    progress_end(&p);
    fclose(out);
    free(buf);
}

static void test_progress_silent_off_tty(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len); /* not a terminal */
    progress_bar p = {.out = out};
    progress_begin(&p, "epoch 1/1", 5);
    for (int i = 1; i <= 5; i++) progress_update(&p, i, 0.1, 100);
    progress_end(&p);
    fclose(out);
    CHECKF(len == 0, "wrote %zu bytes", len);
    free(buf);
}

/* nn_train's progress reports: one bar per epoch, labelled from the run. */
static void test_progress_train(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    progress_bar p = {.out = out, .force_tty = true};
    progress_train(&p, &(nn_train_progress){.label = "run", .epoch = 1, .epochs = 2, .batch = 1, .batches = 4, .loss = 2});
    progress_train(&p, &(nn_train_progress){.epoch = 2, .epochs = 2, .batch = 1, .batches = 4, .loss = 1});
    progress_end(&p);
    fclose(out);
    CHECKF(strstr(buf, "run 1/2 [#####") && strstr(buf, "epoch 2/2 [#####") && strstr(buf, "1/4"), "%s", buf);
    free(buf);
}

/* The epoch line of nn train and nn experiment. */
static void test_epoch_line(void) {
    nn_epoch_metrics e[2] = {{.epoch = 1, .train_loss = 0.5, .train_acc = 0.9, .test_loss = 0.25, .test_acc = 0.95,
                              .lr = 0.05, .seconds = 1.5, .images_per_sec = 4000}};
    double val_loss[2] = {0.3}, val_acc[2] = {0.93};
    nn_history h = {.n = 1, .epochs = e, .val_loss = val_loss, .val_acc = val_acc};
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    print_epoch_line(out, "epoch", 6, &h, NULL);
    h.has_val = true;
    print_epoch_line(out, "[1/2] adam seed 1 epoch", 6, &h, "  [1s elapsed]");
    fclose(out);
    CHECKF(strcmp(buf, "epoch  1/6  train loss 0.5000 acc  90.00%  test loss 0.2500 acc  95.00%  lr 0.05  1.5 s  "
                       "4000 img/s\n"
                       "[1/2] adam seed 1 epoch  1/6  train loss 0.5000 acc  90.00%  val loss 0.3000 acc  93.00%  "
                       "test loss 0.2500 acc  95.00%  lr 0.05  1.5 s  4000 img/s  [1s elapsed]\n") == 0,
           "%s", buf);
    free(buf);
}

/* ---- confusion matrix ----------------------------------------------------- */

static void test_confusion(void) {
    nn_confusion c;
    CHECK(nn_confusion_init(&c, 1) == -1);
    CHECK(nn_confusion_init(&c, 3) == 0);
    /* truth -> pred: class 0 right 3 of 4, class 1 right 1 of 2, class 2 empty. */
    static const int pairs[][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 1}, {1, 1}, {1, 2}};
    for (int i = 0; i < 6; i++) CHECK(nn_confusion_add(&c, pairs[i][0], pairs[i][1]) == 0);
    CHECK(nn_confusion_add(&c, 3, 0) == -1);
    CHECK(nn_confusion_add(&c, 0, -1) == -1);
    CHECK(c.counts[0 * 3 + 0] == 3 && c.counts[0 * 3 + 1] == 1 && c.counts[1 * 3 + 2] == 1);
    CHECK(nn_confusion_total(&c) == 6);
    CHECK_NEAR(nn_confusion_accuracy(&c), 4.0 / 6, 1e-12);
    CHECK_NEAR(nn_confusion_class_accuracy(&c, 0), 0.75, 1e-12);
    CHECK_NEAR(nn_confusion_class_accuracy(&c, 1), 0.5, 1e-12);
    CHECK(isnan(nn_confusion_class_accuracy(&c, 2)));

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    const char *names[3] = {"cat", "dog", "bird"};
    nn_confusion_print(&c, out, names);
    fclose(out);
    CHECKF(strstr(buf, "0 cat     3    1    0      4    75.00%") != NULL, "table:\n%s", buf);
    CHECKF(strstr(buf, "2 bird    0    0    0      0         -") != NULL, "table:\n%s", buf);
    CHECKF(strstr(buf, "overall accuracy: 66.67% (4 of 6)") != NULL, "table:\n%s", buf);
    free(buf);
    nn_confusion_free(&c);
    CHECK(c.counts == NULL);
}

/* Worked by hand: two finished runs of configuration 0, one diverged run
 * of it, and a run of configuration 1 that must not count. */
static void test_study_summary(void) {
    double mean, std;
    CHECK(mean_std((double[]){1, 2, 3, NAN}, 4, &mean, &std) == 3);
    CHECK_NEAR(mean, 2.0, 1e-12);
    CHECK_NEAR(std, 1.0, 1e-12);
    CHECK(mean_std((double[]){NAN}, 1, &mean, &std) == 0 && isnan(mean) && isnan(std));
    double a1[] = {0.5, 0.9, 0.8}, a2[] = {0.6, 0.7, 0.95}, a3[] = {0.99, 0.99, 0.99};
    nn_study_run runs[] = {
        {.config = 0, .done = true, .n = 3, .test_acc = a1, .final_train_acc = 0.9, .wall_seconds = 10},
        {.config = 1, .done = true, .n = 3, .test_acc = a3, .final_train_acc = 1.0, .wall_seconds = 99},
        {.config = 0, .done = true, .n = 3, .test_acc = a2, .final_train_acc = 1.0, .wall_seconds = 20},
        {.config = 0, .done = true, .diverged = true, .n = 1, .test_acc = a3, .wall_seconds = 30},
        {.config = 0, .done = false, .n = 0},
    };
    study_summary s;
    study_summarise(runs, 5, 0, 0.85, &s);
    CHECK(s.runs == 3 && s.ok == 2 && s.reached == 2);
    CHECK_NEAR(s.final_acc[0], 0.875, 1e-12);
    CHECK_NEAR(s.final_acc[1], sqrt(2 * 0.075 * 0.075), 1e-12);
    CHECK_NEAR(s.best_acc[0], 0.925, 1e-12);
    CHECK_NEAR(s.best_epoch, 2.5, 1e-12);
    CHECK_NEAR(s.to_target, 2.5, 1e-12);
    CHECK_NEAR(s.gap[0], ((0.9 - 0.8) + (1.0 - 0.95)) / 2, 1e-12);
    CHECK_NEAR(s.seconds[0], 20.0, 1e-12); /* the diverged run's time counts */
}

TEST_MAIN(TEST(test_study_summary), TEST(test_plot_png), TEST(test_plot_svg_and_scatter), TEST(test_plot_errors),
          TEST(test_image_grid_png), TEST(test_image_grid_svg_diverging), TEST(test_image_grid_errors),
          TEST(test_plot_conv_filters), TEST(test_find_mistakes),
          TEST(test_metrics_csv), TEST(test_metrics_missing_dir), TEST(test_progress_tty),
          TEST(test_progress_throttled), TEST(test_progress_silent_off_tty), TEST(test_progress_train), TEST(test_epoch_line),
          TEST(test_confusion))
