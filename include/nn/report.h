/* Reporting for the training commands: the per-epoch metrics CSV, the
 * confusion matrix and a model's most confident mistakes. (Pictures and the
 * terminal's progress bar are the nn program's: app/plot/plot.h, cli/.)
 * Functions that can fail on user input return -1 (or NULL) and leave a
 * one-line message in nn_last_error(). */
#ifndef NN_REPORT_H
#define NN_REPORT_H

#include <stdio.h>

#include "nn/data.h"
#include "nn/model.h"
#include "nn/api.h"

NN_BEGIN_DECLS

/* Seconds on a monotonic clock (never jumps like wall time): for durations. */
double nn_seconds(void);

/* ---- Mistakes -------------------------------------------------------------- */

/* An example the model gets wrong. */
typedef struct nn_mistake {
    int index;        /* in the dataset */
    int truth, pred;  /* classes */
    float confidence; /* the softmax probability of the (wrong) prediction */
} nn_mistake;

/* Runs m over ds in evaluation mode without gradients, in batches as
 * nn_evaluate does (input [B, 1, rows, cols] normalised with the model's
 * input_mean/std), and keeps in out the up to max examples it gets wrong
 * with the highest confidence, most confident first (ties: lower index
 * first). Returns how many it kept, and in *n_wrong (may be NULL) how many
 * mistakes there were in all; -1 with the error when max < 1 or the model
 * does not take [1, ds->rows, ds->cols] images. Per batch it allocates only
 * from ctx's arena. */
int nn_find_mistakes(nn_model *m, nn_ctx *ctx, const nn_dataset *ds, nn_mistake *out, int max, int *n_wrong);

/* ---- Metrics CSV ---------------------------------------------------------- */

/* One row of the metrics file. Accuracies are fractions in [0, 1]. */
typedef struct nn_epoch_metrics {
    int epoch;
    double train_loss, train_acc, test_loss, test_acc, lr, seconds, images_per_sec;
} nn_epoch_metrics;

typedef struct nn_metrics_file nn_metrics_file;

/* Creates (truncates) `path` and writes the header
 * epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,images_per_sec
 * followed by the n_extra names in extra_cols (e.g. "val_loss"). */
nn_metrics_file *nn_metrics_open(const char *path, const char *const *extra_cols, int n_extra);
/* Appends one row; `extra` holds n_extra values (NULL if n_extra is 0). The
 * row is flushed, so a run killed later keeps it. */
int nn_metrics_write(nn_metrics_file *f, const nn_epoch_metrics *m, const double *extra);
/* Closes the file (NULL is a no-op); reports a late write error. */
int nn_metrics_close(nn_metrics_file *f);

/* ---- Confusion matrix ----------------------------------------------------- */

typedef struct nn_confusion {
    int n_classes;
    long *counts; /* counts[truth * n_classes + pred] */
} nn_confusion;

/* Allocates an all-zero n x n matrix (2 <= n <= 1000). */
int nn_confusion_init(nn_confusion *c, int n_classes);
void nn_confusion_free(nn_confusion *c);
/* Counts one example; -1 if a class index is out of range. */
int nn_confusion_add(nn_confusion *c, int truth, int pred);
long nn_confusion_total(const nn_confusion *c);
/* Fraction of all examples on the diagonal (NaN if empty). */
double nn_confusion_accuracy(const nn_confusion *c);
/* Fraction of class k's examples predicted as k (NaN if class k is empty). */
double nn_confusion_class_accuracy(const nn_confusion *c, int k);
/* Prints the matrix (rows: true class, columns: predicted), each row's total
 * and accuracy, then the overall accuracy. class_names may be NULL. */
void nn_confusion_print(const nn_confusion *c, FILE *out, const char *const *class_names);

NN_END_DECLS

#endif
