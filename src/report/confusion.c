/* Confusion matrix and per-class accuracy for `nn eval`. */
#include "nn/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "core/util.h"

#define MAX_CLASSES 1000

int nn_confusion_init(nn_confusion *c, int n_classes) {
    c->n_classes = 0;
    c->counts = NULL;
    if (n_classes < 2 || n_classes > MAX_CLASSES)
        return nn_error("confusion matrix: %d classes (2 to %d supported)", n_classes,
                        MAX_CLASSES);
    c->n_classes = n_classes;
    c->counts = nn_xcalloc((size_t)n_classes * (size_t)n_classes, sizeof *c->counts);
    return 0;
}

void nn_confusion_free(nn_confusion *c) {
    free(c->counts);
    c->counts = NULL;
    c->n_classes = 0;
}

int nn_confusion_add(nn_confusion *c, int truth, int pred) {
    int n = c->n_classes;
    if (truth < 0 || truth >= n || pred < 0 || pred >= n)
        return nn_error("confusion matrix: class pair (%d, %d) outside 0..%d", truth, pred, n - 1);
    c->counts[truth * n + pred]++;
    return 0;
}

static long row_total(const nn_confusion *c, int k) {
    long sum = 0;
    for (int j = 0; j < c->n_classes; j++) sum += c->counts[k * c->n_classes + j];
    return sum;
}

long nn_confusion_total(const nn_confusion *c) {
    long sum = 0;
    for (int k = 0; k < c->n_classes; k++) sum += row_total(c, k);
    return sum;
}

static long diagonal(const nn_confusion *c) {
    long sum = 0;
    for (int k = 0; k < c->n_classes; k++) sum += c->counts[k * c->n_classes + k];
    return sum;
}

double nn_confusion_accuracy(const nn_confusion *c) {
    long total = nn_confusion_total(c);
    return total ? (double)diagonal(c) / (double)total : NAN;
}

double nn_confusion_class_accuracy(const nn_confusion *c, int k) {
    long total = row_total(c, k);
    return total ? (double)c->counts[k * c->n_classes + k] / (double)total : NAN;
}

static int digits(long v) {
    int d = 1;
    for (; v >= 10; v /= 10) d++;
    return d;
}

void nn_confusion_print(const nn_confusion *c, FILE *out, const char *const *class_names) {
    int n = c->n_classes;
    long total = nn_confusion_total(c), most = 0;
    for (int i = 0; i < n * n; i++)
        if (c->counts[i] > most) most = c->counts[i];
    /* Columns fit the largest count and class index, and are at least 5 wide. */
    int cw = digits(most) > digits(n - 1) ? digits(most) : digits(n - 1);
    cw = 2 + (cw > 3 ? cw : 3);
    int tw = 2 + (digits(total) > 5 ? digits(total) : 5); /* "total" */
    int iw = digits(n - 1), nw = 0;
    if (class_names)
        for (int k = 0; k < n; k++)
            if (class_names[k] && (int)strlen(class_names[k]) > nw) nw = (int)strlen(class_names[k]);
    int label_w = iw + (nw ? nw + 1 : 0);

    fprintf(out, "confusion matrix (rows: true class, columns: predicted class)\n");
    fprintf(out, "%*s", label_w, "");
    for (int j = 0; j < n; j++) fprintf(out, "%*d", cw, j);
    fprintf(out, "%*s  accuracy\n", tw, "total");
    for (int k = 0; k < n; k++) {
        if (nw)
            fprintf(out, "%*d %-*s", iw, k, nw, class_names[k] ? class_names[k] : "");
        else
            fprintf(out, "%*d", iw, k);
        for (int j = 0; j < n; j++) fprintf(out, "%*ld", cw, c->counts[k * n + j]);
        fprintf(out, "%*ld", tw, row_total(c, k));
        double acc = nn_confusion_class_accuracy(c, k);
        if (isnan(acc))
            fprintf(out, "  %8s\n", "-");
        else
            fprintf(out, "  %7.2f%%\n", 100 * acc);
    }
    if (total)
        fprintf(out, "overall accuracy: %.2f%% (%ld of %ld)\n", 100 * nn_confusion_accuracy(c),
                diagonal(c), total);
    else
        fprintf(out, "overall accuracy: - (no examples)\n");
}
