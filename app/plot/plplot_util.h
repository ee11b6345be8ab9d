/* The PLplot session behind the report's pictures (plot.c's line plots,
 * gallery.c's image grids): one page, PNG or SVG by the file's extension,
 * through PLplot's cairo drivers (pngcairo, svgcairo).
 *
 * PLplot is a process-wide state machine that, left to itself, prompts on
 * stdin/stdout for a missing file name or device and calls exit() on a fatal
 * error. So: the device is checked before plinit, PLplot draws into a memory
 * stream (never a named file), its "abort operation" messages go to a buffer
 * (plsError), and its exit handler jumps back here instead of exiting. The
 * finished image is then checked and written with nn_write_file_atomic, so a
 * failed picture never replaces an earlier good one. Not thread-safe. */
#ifndef NN_APP_PLOT_PLPLOT_UTIL_H
#define NN_APP_PLOT_PLPLOT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include "core/util.h"

/* The format a picture's path asks for: 1 for .svg, 0 for .png (either
 * case), else -1 with "PATH: unsupported plot format (use .png or .svg)". */
int report_image_format(const char *path);

/* One page of width x height pixels. */
typedef struct report_picture {
    int width, height;
    /* Before plinit: the colour maps (cmap0's colour 0 is the background). */
    void (*set_colours)(const void *user);
    /* Between plinit and plend. PLplot reports some failures by aborting
     * only the current call: a long drawing stops once report_aborted(). */
    void (*draw)(const void *user);
    const void *user;
} report_picture;

/* Draws the picture and replaces path with it atomically (the format from
 * report_image_format, which the caller has checked). Returns 0, or -1 with
 * the error naming path: a missing cairo driver, PLplot's own message, an
 * incomplete image, a failed write. */
int report_render(const char *path, const report_picture *pic);

/* Whether PLplot aborted an operation in the drawing under way. */
bool report_aborted(void);

/* The cairo drivers draw text through Pango at 96 dpi; PLplot takes text
 * heights in mm. */
#define REPORT_PX_PER_MM (96.0 / 25.4)

/* The width in pixels of the first len bytes of s drawn px pixels high,
 * estimated (PLplot can only measure text by drawing it) for the default
 * sans font, DejaVu Sans: about 0.62 em per ASCII character (digits are
 * 0.64, a space 0.32), 0.85 for others such as an arrow or an accented
 * letter. Counts UTF-8 code points. */
double report_text_width_px(const char *s, size_t len, double px);

/* PLplot treats '#' as an escape character: the text with it doubled, so
 * it prints as given. NULL becomes "". The caller frees the result. */
char *report_pl_text(const char *s);

#endif
