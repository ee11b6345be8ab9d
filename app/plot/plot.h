/* Pictures for the nn program: line plots, image grids and confusion
 * matrices, PNG or SVG through PLplot. Not part of libnn, so that programs
 * which embed the library do not link PLplot; the functions still follow
 * its conventions (-1 with a one-line message in nn_last_error()). */
#ifndef NN_APP_PLOT_H
#define NN_APP_PLOT_H

#include <stdbool.h>

#include "nn/report.h"
#include "nn/train.h"

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

/* ---- Confusion matrix ------------------------------------------------------ */

/* A confusion matrix as a picture: rows are the true classes, columns the
 * predicted ones, each cell shaded by its share of its row (white 0%, dark
 * blue 100%, on a square-root scale so that the few per cent of a common
 * confusion show) with its count and that share written in it where they
 * fit; each row's accuracy beside it. The pieces are public so that what is
 * drawn can be checked. */

#define NN_CONFUSION_MAX_DRAWN 100 /* classes a picture can show */
#define NN_CONFUSION_LEVELS 256    /* steps of the shade */

/* One cell as drawn. */
typedef struct nn_confusion_cell {
    long count;
    double share;     /* count over its row's total (the true class's examples); 0 in an empty row */
    int level;        /* the shade, nn_plot_confusion_level(share): 0 is white */
    bool light_text;  /* white text, on a dark shade */
    char text[2][24]; /* what is written in it, line by line ("" for none): the count, the share */
} nn_confusion_cell;

/* Where things go, in pixels from the page's top left. */
typedef struct nn_confusion_layout {
    int width, height;   /* the page */
    int left, top, cell; /* the matrix's top left corner and a cell's side */
    int lines;           /* lines of text a cell holds: 2 (count and share), 1 (count) or 0 */
    double text_px;      /* their height */
    bool rotated;        /* the column labels are written upwards (too wide for a column) */
} nn_confusion_layout;

/* The layout of c's picture with these class names (NULL: the class
 * numbers) and `name` under the title (NULL: none). -1 with the error for
 * more than NN_CONFUSION_MAX_DRAWN classes or a page too large. */
int nn_plot_confusion_layout(const nn_confusion *c, const char *const *class_names, const char *name,
                             nn_confusion_layout *L);

/* Fills the n x n cells (row-major, row = true class) as drawn in a layout
 * whose cells are cell_px wide and hold `lines` lines of text_px high text:
 * nothing is written in a cell with no examples, nor a line wider than the
 * cell. A share is written with one decimal, truncated (99.96% is "99.9%",
 * only all of a row "100%"), and a share under 0.1% as "<0.1%". */
void nn_plot_confusion_cells(const nn_confusion *c, int cell_px, int lines, double text_px,
                             nn_confusion_cell *cells);

/* The shade of a share in [0, 1]: round(sqrt(share) * (NN_CONFUSION_LEVELS
 * - 1)), so 1% is a tenth of the way to the darkest, 25% half way. */
int nn_plot_confusion_level(double share);

/* The colour of shade level 0 .. NN_CONFUSION_LEVELS - 1: white through
 * ColorBrewer's "Blues" to dark blue. */
void nn_plot_confusion_shade(int level, unsigned char rgb[3]);

/* PLplot's colour map 1 set to those levels, for a picture being drawn
 * (the confusion matrix and the attention maps share the shade). */
void nn_plot_confusion_shade_cmap1(void);

/* Draws c into path, PNG or SVG by its extension, replacing it atomically.
 * `name` (e.g. "model.safetensors on data/mnist") goes under the title.
 * -1 with the error for an empty matrix, a wrong extension, too many
 * classes or a failed write. Not thread-safe. */
int nn_plot_confusion(const char *path, const nn_confusion *c, const char *const *class_names, const char *name);

/* ---- Attention weights ------------------------------------------------------- */

#define NN_ATTENTION_MAX_DRAWN 256 /* positions an attention picture shows */

/* Draws the n_maps attention layers' weights over one sequence (from
 * nn_model_attention_maps, all over the same T positions, 1 to
 * NN_ATTENTION_MAX_DRAWN) into path, PNG or SVG by its extension, replacing
 * it atomically: a heat map per layer and head, titled "layer L, head H"
 * (L counts the attention layers from 1), rows the query positions and
 * columns the key positions, shaded on the confusion matrix's square-root
 * scale, masked keys grey, with a colour scale. tokens (T of them, UTF-8, as
 * the vocabulary writes them) go along both sides; a space, a line break, a
 * tab and padding are drawn as ␣, ↵, ⇥ and ∅ (explained under the title),
 * and in cells too small for them only every k-th token is written (also
 * said there). `name` (e.g. the checkpoint) goes under the
 * title. -1 with the error for no maps, T out of range or differing, a
 * weight outside [0, 1], a page too large, a wrong extension or a failed
 * write. Not thread-safe. */
int nn_plot_attention(const char *path, const nn_attention_map *maps, int n_maps, const char *const *tokens,
                      const char *name);

/* The training curves of a run: accuracy and loss per epoch, train vs test
 * (and validation when the history has it), two panels side by side. */
int nn_plot_history(const char *path, const nn_history *h);

#endif
