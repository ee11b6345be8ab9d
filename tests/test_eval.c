/* End-to-end tests of `nn eval --errors/--filters/--confusion`: a tiny CNN
 * trained on a slice of MNIST by the nn binary ($NN, default build/nn), its
 * pictures, and the listed mistakes checked against the model run here on
 * those images; the confusion matrix drawn for an image classifier and for a
 * text classifier of names by language. (What the confusion picture shows,
 * cell by cell, is checked in test_confusion_plot.c.) */
#include <math.h>

#include "check.h"
#include "run_nn.h"
#include "nn/data.h"
#include "nn/error.h"
#include "nn/model.h"

#define CNN "conv(4,3) relu maxpool(2) flatten linear(10)"

static bool is_png(const char *path) {
    char buf[2048];
    slurp(path, buf, sizeof buf);
    return memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* A PNG's size from its IHDR chunk; false if the file is no PNG. */
static bool png_size(const char *path, int *w, int *h) {
    unsigned char buf[32] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    if (n < 24 || memcmp(buf, "\x89PNG\r\n\x1a\n", 8) != 0 || memcmp(buf + 12, "IHDR", 4) != 0) return false;
    *w = (int)((unsigned)buf[16] << 24 | (unsigned)buf[17] << 16 | (unsigned)buf[18] << 8 | buf[19]);
    *h = (int)((unsigned)buf[20] << 24 | (unsigned)buf[21] << 16 | (unsigned)buf[22] << 8 | buf[23]);
    return true;
}

/* stderr is one line. */
static bool one_line(void) { return strchr(err_text, '\n') == err_text + strlen(err_text) - 1; }

typedef struct listed {
    int index, truth, pred;
    double confidence; /* a probability */
} listed;

/* The mistakes eval printed after its header line; returns how many. */
static int parse_mistakes(const char *out, listed *l, int max) {
    const char *p = strstr(out, "  index  true  predicted  confidence\n");
    if (!p) return 0;
    p = strchr(p, '\n') + 1;
    int n = 0;
    double pct;
    while (n < max && sscanf(p, "%d %d %d %lf%%", &l[n].index, &l[n].truth, &l[n].pred, &pct) == 4) {
        l[n++].confidence = pct / 100;
        p = strchr(p, '\n');
        if (!p) break;
        p++;
    }
    return n;
}

/* Runs the checkpoint on test image `index`, normalised as the model was
 * trained, and returns its prediction and the probability of it. */
static int classify(nn_model *m, const nn_dataset *ds, int index, double *prob) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_grad_enabled(ctx, false);
    nn_set_training(ctx, false);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){1, 1, ds->rows, ds->cols});
    const uint8_t *img = ds->images + (size_t)index * ds->rows * ds->cols;
    for (size_t i = 0; i < x->size; i++) x->data[i] = (img[i] / 255.0f - m->input_mean) / m->input_std;
    const float *z = nn_model_forward(m, ctx, x, NULL)->data;
    int pred = 0;
    for (int k = 1; k < m->classes; k++)
        if (z[k] > z[pred]) pred = k;
    double sum = 0;
    for (int k = 0; k < m->classes; k++) sum += exp((double)z[k] - z[pred]);
    *prob = 1 / sum;
    nn_ctx_free(ctx);
    return pred;
}

static void test_errors_and_filters(void) {
    if (!have_mnist()) return;
    char model[256]; /* tmp()'s buffers rotate */
    snprintf(model, sizeof model, "%s", tmp("cnn.safetensors"));
    int rc = nn("train --arch '" CNN "' --train-limit 2000 --epochs 1 --threads 1 --save %s", model);
    CHECKF(rc == 0, "train exited %d: %s", rc, err_text);
    if (rc != 0) return;

    rc = nn("eval --model %s --threads 1", model);
    CHECKF(rc == 0, "eval exited %d: %s", rc, err_text);
    char plain[sizeof out_text];
    strcpy(plain, out_text);

    rc = nn("eval --model %s --threads 1 --errors %s --filters %s", model, tmp("errors.png"), tmp("filters.png"));
    CHECKF(rc == 0, "eval --errors --filters exited %d: %s", rc, err_text);
    /* What eval printed before stays as it was; the list and notes follow. */
    CHECKF(strncmp(out_text, plain, strlen(plain)) == 0, "the output changed:\n%s", out_text);
    CHECK(is_png(tmp("errors.png")) && file_size(tmp("errors.png")) > 20000);
    CHECK(is_png(tmp("filters.png")) && file_size(tmp("filters.png")) > 2000);
    CHECK(strstr(out_text, tmp("filters.png")) != NULL);

    listed l[64];
    int n = parse_mistakes(out_text, l, 64);
    CHECKF(n == 36, "eval listed %d mistakes:\n%s", n, out_text);
    /* "test accuracy 83.44% (8344 of 10000)" and "the 36 most confident of 1656 mistakes" agree. */
    int right = -1, total = -1, wrong = -2;
    const char *p = strstr(out_text, "% ("), *q = strstr(out_text, "most confident of ");
    if (p) sscanf(p, "%% (%d of %d)", &right, &total);
    if (q) sscanf(q, "most confident of %d", &wrong);
    CHECKF(total == 10000 && wrong == total - right, "%d of %d right, %d mistakes", right, total, wrong);
    for (int i = 1; i < n; i++) CHECKF(l[i].confidence <= l[i - 1].confidence, "mistake %d out of order", i);

    /* The first, a middle and the last listed are mistakes of this model,
     * with the probability it gives its prediction. */
    nn_model m;
    nn_dataset test;
    CHECKF(nn_model_load(&m, model) == 0, "%s", nn_last_error());
    CHECKF(nn_dataset_load(&test, "data/mnist", "t10k") == 0, "%s", nn_last_error());
    for (int k = 0; k < 3 && n > 0; k++) {
        const listed *e = &l[(n - 1) * k / 2];
        CHECK(e->index >= 0 && e->index < test.n);
        if (e->index < 0 || e->index >= test.n) continue;
        double prob;
        int pred = classify(&m, &test, e->index, &prob);
        CHECKF(e->truth == test.labels[e->index] && pred == e->pred && pred != e->truth,
               "image %d: label %d, model says %d; listed as %d -> %d", e->index, test.labels[e->index], pred,
               e->truth, e->pred);
        CHECK_NEAR(prob, e->confidence, 2e-4);
    }
    nn_dataset_free(&test);
    nn_model_free(&m);

    rc = nn("eval --model %s --threads 1 --errors %s --errors-count 5 --filters %s", model, tmp("errors.svg"),
            tmp("filters.svg"));
    CHECKF(rc == 0, "eval with SVGs exited %d: %s", rc, err_text);
    CHECKF(parse_mistakes(out_text, l, 64) == 5, "%s", out_text);
    char svg[1 << 12];
    slurp(tmp("filters.svg"), svg, sizeof svg);
    CHECK(strstr(svg, "<svg") != NULL);
    CHECK(file_size(tmp("errors.svg")) > 20000);
}

static void test_filters_need_a_conv_layer(void) {
    if (!have_mnist()) return;
    char mlp[256];
    snprintf(mlp, sizeof mlp, "%s", tmp("mlp.safetensors"));
    int rc = nn("train --hidden 16 --train-limit 500 --epochs 1 --threads 1 --save %s", mlp);
    CHECKF(rc == 0, "train exited %d: %s", rc, err_text);
    rc = nn("eval --model %s --filters %s", mlp, tmp("mlp_filters.png"));
    CHECKF(rc == 1, "eval --filters on an MLP exited %d", rc);
    CHECKF(one_line_error("no conv layer") && strstr(err_text, mlp), "stderr: %s", err_text);
    CHECKF(strchr(err_text, '\n') == err_text + strlen(err_text) - 1, "not one line: %s", err_text);
    CHECK(access(tmp("mlp_filters.png"), F_OK) != 0);
    CHECK(out_text[0] == '\0');
}

static void test_confusion_image(void) {
    if (!have_mnist()) return;
    char mlp[256], png[256], svg[256];
    snprintf(mlp, sizeof mlp, "%s", tmp("conf_mlp.safetensors"));
    snprintf(png, sizeof png, "%s", tmp("confusion.png"));
    snprintf(svg, sizeof svg, "%s", tmp("confusion.svg"));
    int rc = nn("train --hidden 16 --train-limit 1000 --epochs 1 --threads 1 --save %s", mlp);
    CHECKF(rc == 0, "train exited %d: %s", rc, err_text);
    rc = nn("eval --model %s --threads 1", mlp);
    CHECKF(rc == 0, "eval exited %d: %s", rc, err_text);
    char plain[sizeof out_text];
    strcpy(plain, out_text);

    rc = nn("eval --model %s --threads 1 --confusion %s", mlp, png);
    CHECKF(rc == 0, "eval --confusion exited %d: %s", rc, err_text);
    /* The printed report as before, then where the picture went. */
    CHECKF(strncmp(out_text, plain, strlen(plain)) == 0, "the output changed:\n%s", out_text);
    CHECKF(strstr(out_text + strlen(plain), "confusion matrix drawn in ") && strstr(out_text, png), "%s", out_text);
    /* 10 x 10 cells of 72 px with the labels and titles around them. */
    int w = 0, h = 0;
    CHECKF(png_size(png, &w, &h), "%s is not a PNG", png);
    CHECKF(w >= 10 * 72 && w < 1400 && h >= 10 * 72 && h < 1400, "%dx%d", w, h);
    CHECK(file_size(png) > 20000);

    rc = nn("eval --model %s --threads 1 --confusion %s", mlp, svg);
    CHECKF(rc == 0, "eval --confusion .svg exited %d: %s", rc, err_text);
    char text[1 << 12];
    slurp(svg, text, sizeof text);
    CHECK(strstr(text, "<svg") != NULL && file_size(svg) > 20000);

    /* A folder that is not there: the report, then a one-line error naming the file. */
    rc = nn("eval --model %s --threads 1 --confusion /nonexistent/dir/c.png", mlp);
    CHECKF(rc == 1 && one_line_error("/nonexistent/dir/c.png") && one_line(), "exited %d: %s", rc, err_text);
    CHECK(strncmp(out_text, plain, strlen(plain)) == 0);
}

static void test_confusion_text(void) {
    const char *data = "datasets/names-by-language";
    if (access("datasets/names-by-language/Russian.txt", R_OK) != 0) {
        SKIP("%s is missing", data);
        return;
    }
    char model[256], png[256];
    snprintf(model, sizeof model, "%s", tmp("lang.safetensors"));
    snprintf(png, sizeof png, "%s", tmp("lang_confusion.png"));
    int rc = nn("train --data %s --epochs 1 --threads 1 --save %s", data, model);
    CHECKF(rc == 0, "train exited %d: %s", rc, err_text);
    rc = nn("eval --model %s --data %s --threads 1 --confusion %s", model, data, png);
    CHECKF(rc == 0, "eval --confusion exited %d: %s", rc, err_text);
    CHECKF(strstr(out_text, "Vietnamese") && strstr(out_text, "confusion matrix drawn in ") && strstr(out_text, png),
           "%s", out_text);
    /* 18 x 18 cells of 40 px under the languages' names written upwards. */
    int w = 0, h = 0;
    CHECKF(png_size(png, &w, &h), "%s is not a PNG", png);
    CHECKF(w >= 18 * 40 && w < 1600 && h >= 18 * 40 + 10 * 13 * 0.6 && h < 1600, "%dx%d", w, h);
    CHECK(file_size(png) > 40000);
    rc = nn("eval --model %s --data %s --threads 1 --confusion %s", model, data, "/nonexistent/dir/t.svg");
    CHECKF(rc == 1 && one_line_error("/nonexistent/dir/t.svg") && one_line(), "exited %d: %s", rc, err_text);
    rc = nn("eval --model %s --data %s --confusion t.jpg", model, data);
    CHECKF(rc == 2 && strncmp(err_text, "nn eval: ", 9) == 0 && strstr(err_text, "t.jpg"), "exited %d: %s", rc,
           err_text);
}

static void test_usage_errors(void) {
    CHECK(nn("eval --help") == 0);
    CHECK(strstr(out_text, "--errors FILE") && strstr(out_text, "--errors-count N") &&
          strstr(out_text, "--filters FILE") && strstr(out_text, "--confusion FILE"));
    /* Flags are checked before the checkpoint is read: none needs to exist. */
    const char *bad[] = {"--errors e.gif",        "--errors e",          "--filters f.jpg",
                         "--errors-count 0 --errors e.png", "--errors-count x --errors e.png",
                         "--errors-count 1025 --errors e.png", "--errors-count 5", "--errors",
                         "--confusion c.gif",   "--confusion c",       "--confusion"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = nn("eval --model %s %s", tmp("none.safetensors"), bad[i]);
        CHECKF(rc == 2, "eval %s exited %d", bad[i], rc);
        CHECKF(strncmp(err_text, "nn eval: ", 9) == 0, "eval %s: stderr %s", bad[i], err_text);
    }
}

TEST_MAIN(TEST(test_errors_and_filters), TEST(test_filters_need_a_conv_layer), TEST(test_confusion_image),
          TEST(test_confusion_text), TEST(test_usage_errors))
