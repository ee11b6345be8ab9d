/* Reporting for the training commands: line plots and image grids (PNG/SVG
 * through PLplot), the per-epoch metrics CSV, the terminal progress bar, the
 * confusion matrix and a model's most confident mistakes. Functions that can
 * fail on user input return -1 (or NULL) and leave a one-line message in
 * nn_last_error(). */
#ifndef NN_REPORT_H
#define NN_REPORT_H

#include <stdio.h>

#include "nn/data.h"
#include "nn/model.h"
#include "nn/api.h"

NN_BEGIN_DECLS

/* Seconds on a monotonic clock (never jumps like wall time): for durations. */
double nn_seconds(void);
/* Whether path names a picture nn can draw: .png or .svg, in either case. */
bool nn_is_picture_path(const char *path);

/* ---- Plots ---------------------------------------------------------------- */

/* One data series: n points (x[i], y[i]). A point with a NaN, infinite or
 * huge (|v| >= 1e100) coordinate is left out and breaks the line: a diverged
 * loss shows as a gap, not as garbage. */
typedef struct nn_series {
    const char *label; /* legend text; NULL = not in the legend */
    const double *x, *y;
    int n;
    int points; /* 1 = markers only (scatter), 0 = a line */
} nn_series;

/* One set of axes. ymin == ymax selects an automatic y range with a 5% margin;
 * otherwise the y range is fixed (e.g. 0..1 for accuracies). */
typedef struct nn_panel {
    const char *title, *xlabel, *ylabel;
    const nn_series *series;
    int n_series;
    double ymin, ymax;
} nn_panel;

#define NN_PLOT_MAX_PANELS 4

/* Draws 1..NN_PLOT_MAX_PANELS panels side by side into `path`; the format
 * follows the extension (.png or .svg). One panel is 800x600 px, n side by
 * side 550n x 550. The file is replaced atomically. Not thread-safe (PLplot
 * keeps global state). */
int nn_plot(const char *path, const nn_panel *panels, int n_panels);
/* The same, with the panels stacked top to bottom (800 x 450n). */
int nn_plot_stacked(const char *path, const nn_panel *panels, int n_panels);

/* ---- Image grids ---------------------------------------------------------- */

/* How an image grid maps values to colour, from lo to hi. */
typedef enum nn_grid_scale {
    NN_GRID_GRAY,      /* black to white: pictures */
    NN_GRID_DIVERGING, /* blue, white in the middle, red: signed values such as weights */
} nn_grid_scale;

#define NN_GRID_MAX_IMAGES 1024
#define NN_GRID_MAX_SIDE 512 /* rows or columns of one image */

/* n small images of rows x cols values, each with a caption under it, below
 * a title: a classifier's mistakes, a conv layer's kernels. */
typedef struct nn_image_grid {
    const char *title;    /* NULL = none */
    const char *subtitle; /* a smaller line under the title; NULL = none */
    int n, rows, cols;
    const float *pixels; /* n * rows * cols finite values, image after image, row-major */
    float lo, hi;        /* the values at the two ends of the scale (lo < hi); others are clamped */
    nn_grid_scale scale;
    const char *const *captions; /* n captions, '\n' starting a second line; NULL = none */
    int columns;                 /* images per row; 0 = about square (ceil(sqrt(n))) */
} nn_image_grid;

/* Draws the grid into `path`, PNG or SVG by its extension, each image scaled
 * up by a whole factor to about 112 px so its pixels stay sharp squares. The
 * file is replaced atomically. -1 with the error for n outside
 * 1..NN_GRID_MAX_IMAGES, a side outside 1..NN_GRID_MAX_SIDE, a value that is
 * not finite, lo >= hi or another extension. Not thread-safe. */
int nn_plot_image_grid(const char *path, const nn_image_grid *grid);

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

/* Draws the images of n mistakes in ds (from nn_find_mistakes; n_wrong of
 * them in all) as a grid, each captioned "true → predicted (confidence)",
 * with the classes' names when class_names (one per class) is not NULL.
 * `name` (e.g. "model.safetensors on data/mnist") goes under the title. */
int nn_plot_mistakes(const char *path, const nn_dataset *ds, const nn_mistake *mistakes, int n, int n_wrong,
                     const char *const *class_names, const char *name);

/* Draws the kernels of m's first conv layer (weight [out, in, k, k]) as a
 * grid captioned with their output channel, all on one diverging scale
 * -max|w|..max|w|; with several input channels each kernel is shown as its
 * mean over them. `name` (e.g. the checkpoint's file) goes under the title.
 * -1 with the error when m has no conv layer. */
int nn_plot_conv_filters(const char *path, const nn_model *m, const char *name);

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

/* ---- Progress bar --------------------------------------------------------- */

/* A one-line progress bar, redrawn in place with '\r' at most ~10 times a
 * second, when `out` is a terminal; otherwise it prints nothing. Usage:
 *     nn_progress p = {0};               // out = stderr
 *     nn_progress_begin(&p, "epoch 1/10", n_batches);
 *     ... nn_progress_update(&p, batch + 1, loss, images_per_sec); ...
 *     nn_progress_end(&p);               // erases the bar
 * then print the epoch's summary line. */
typedef struct nn_progress {
    FILE *out;     /* NULL = stderr */
    int force_tty; /* draw even when `out` is not a terminal (tests) */
    /* state, set by nn_progress_begin */
    char label[48];
    long total;
    int active;    /* drawing enabled for this run */
    int drawn;     /* something is on the line that end() must erase */
    double t_start, t_last_draw;
} nn_progress;

void nn_progress_begin(nn_progress *p, const char *label, long total_steps);
/* `done` steps of `total_steps` are finished; images_per_sec <= 0 hides it. */
void nn_progress_update(nn_progress *p, long done, double loss, double images_per_sec);
void nn_progress_end(nn_progress *p);

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
void nn_confusion_print(FILE *out, const nn_confusion *c, const char *const *class_names);

NN_END_DECLS

#endif
