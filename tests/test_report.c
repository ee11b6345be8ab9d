/* Tests of the report layer: plots, metrics CSV, progress bar, confusion
 * matrix. Files go to a fresh folder under /tmp, removed afterwards. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, open_memstream, nanosleep */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "nn/error.h"
#include "nn/report.h"

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

/* ---- progress bar --------------------------------------------------------- */

static int count_char(const char *s, char c) {
    int n = 0;
    for (; *s; s++) n += *s == c;
    return n;
}

static void test_progress_tty(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    nn_progress p = {.out = out, .force_tty = 1};
    nn_progress_begin(&p, "epoch 1/3", 10);
    nn_progress_update(&p, 3, 0.5, 2500);
    fflush(out);
    CHECKF(strstr(buf, "ETA") && strstr(buf, "3/10") && strstr(buf, "loss 0.5000") &&
               strstr(buf, "2500 img/s") && strstr(buf, "epoch 1/3") && buf[0] == '\r',
           "line: %s", buf);
    nn_progress_update(&p, 10, 0.25, 2500); /* the final state is always drawn */
    nn_progress_end(&p);
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
    nn_progress p = {.out = out, .force_tty = 1};
    nn_progress_begin(&p, "", 100);
    for (int i = 1; i <= 50; i++) nn_progress_update(&p, i, 1.0, 0);
    fflush(out);
    /* 50 updates in well under 0.1 s: only the first is drawn (unless this
     * machine stalled for 0.1 s, which would allow one more). */
    CHECKF(count_char(buf, '\r') <= 2, "%d redraws", count_char(buf, '\r'));
    CHECK(strstr(buf, "img/s") == NULL); /* hidden when not given */
    /* Once 0.1 s has passed, the next update is drawn again. */
    int before = count_char(buf, '\r');
    nanosleep(&(struct timespec){.tv_nsec = 120000000}, NULL);
    nn_progress_update(&p, 60, 1.0, 0);
    fflush(out);
    CHECK(count_char(buf, '\r') == before + 1 && strstr(buf, "60/100"));
    nn_progress_end(&p);
    fclose(out);
    free(buf);
}

static void test_progress_silent_off_tty(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len); /* not a terminal */
    nn_progress p = {.out = out};
    nn_progress_begin(&p, "epoch 1/1", 5);
    for (int i = 1; i <= 5; i++) nn_progress_update(&p, i, 0.1, 100);
    nn_progress_end(&p);
    fclose(out);
    CHECKF(len == 0, "wrote %zu bytes", len);
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
    nn_confusion_print(out, &c, names);
    fclose(out);
    CHECKF(strstr(buf, "0 cat     3    1    0      4    75.00%") != NULL, "table:\n%s", buf);
    CHECKF(strstr(buf, "2 bird    0    0    0      0         -") != NULL, "table:\n%s", buf);
    CHECKF(strstr(buf, "overall accuracy: 66.67% (4 of 6)") != NULL, "table:\n%s", buf);
    free(buf);
    nn_confusion_free(&c);
    CHECK(c.counts == NULL);
}

TEST_MAIN(TEST(test_plot_png), TEST(test_plot_svg_and_scatter), TEST(test_plot_errors),
          TEST(test_metrics_csv), TEST(test_metrics_missing_dir), TEST(test_progress_tty),
          TEST(test_progress_throttled), TEST(test_progress_silent_off_tty),
          TEST(test_confusion))
