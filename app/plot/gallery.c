/* Image grids through PLplot (the session is plplot_util.c's): small images,
 * each with a caption under it, below a title. What a learner looks at to see
 * what a CNN does: the test digits it gets wrong, its first layer's kernels.
 *
 * The page is laid out in pixels: the viewport is the whole page and world
 * coordinates are pixels with y up, so every image lands on whole pixels. */
#include "plot/plot.h"

#include <math.h>
#include <plplot.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "plot/plplot_util.h"
#include "core/util.h"

/* cmap0 slots; cmap1 holds the images' scale in LEVELS steps, an odd
 * number so that the middle of a diverging scale is exactly white. */
enum { COL_BG, COL_FG, COL_FRAME, COL_SUBTITLE, N_COLOURS };
enum { LEVELS = 255 };

/* Sizes in pixels (PLplot's text heights in mm are converted with
 * REPORT_PX_PER_MM). */
#define TILE_PX 112 /* an image is scaled up by a whole factor to about this */
#define MARGIN_PX 16
#define GAP_X_PX 18      /* between columns */
#define GAP_Y_PX 14      /* between a caption and the next row */
#define CAPTION_GAP_PX 4 /* between an image and its caption */
#define MIN_WIDTH_PX 360
#define MAX_PAGE_PX 16384 /* either side of the page */
#define TITLE_PX 19.0     /* text heights (Pango's em) */
#define SUBTITLE_PX 14.0
#define CAPTION_PX 14.0
#define LINE_SPACING 1.4 /* line height, in text heights */
#define MAX_CAPTION_LINES 2

/* The lines of a caption: how many, and the width of the widest. */
static int caption_lines(const char *s, double *widest_px) {
    int n = 0;
    *widest_px = 0;
    if (!s) return 0;
    for (const char *line = s;; n++) {
        size_t len = strcspn(line, "\n");
        *widest_px = fmax(*widest_px, report_text_width_px(line, len, CAPTION_PX));
        if (!line[len]) return n + 1;
        line += len + 1;
    }
}

typedef struct layout {
    const nn_image_grid *g;
    int columns, grid_rows;
    int scale;              /* screen pixels per image pixel */
    int cell_w, cell_h;     /* an image with its caption and the gaps after them */
    int lines;              /* caption lines under every image */
    int width, height, top; /* the page; where the first row of images starts */
    int left;               /* where the first column starts (the grid is centred) */
} layout;

static double line_px(double text_px) { return LINE_SPACING * text_px; }

static int plan_layout(const char *path, const nn_image_grid *g, layout *L) {
    memset(L, 0, sizeof *L);
    L->g = g;
    L->columns = g->columns > 0 ? g->columns : (int)ceil(sqrt((double)g->n));
    if (L->columns > g->n) L->columns = g->n;
    L->grid_rows = (g->n + L->columns - 1) / L->columns;
    int side = g->rows > g->cols ? g->rows : g->cols;
    L->scale = side >= TILE_PX ? 1 : TILE_PX / side;
    double caption_w = 0;
    for (int i = 0; g->captions && i < g->n; i++) {
        double w;
        int lines = caption_lines(g->captions[i], &w);
        if (lines > MAX_CAPTION_LINES)
            return nn_error("%s: caption %d has %d lines (at most %d)", path, i + 1, lines, MAX_CAPTION_LINES);
        if (lines > L->lines) L->lines = lines;
        caption_w = fmax(caption_w, w);
    }
    double tile_w = (double)L->scale * g->cols, tile_h = (double)L->scale * g->rows;
    L->cell_w = (int)ceil(fmax(tile_w, caption_w)) + GAP_X_PX;
    L->cell_h = (int)ceil(tile_h + (L->lines ? CAPTION_GAP_PX + L->lines * line_px(CAPTION_PX) : 0)) + GAP_Y_PX;
    double title_w = g->title ? report_text_width_px(g->title, strlen(g->title), TITLE_PX) : 0;
    double subtitle_w = g->subtitle ? report_text_width_px(g->subtitle, strlen(g->subtitle), SUBTITLE_PX) : 0;
    double grid_w = (double)L->columns * L->cell_w - GAP_X_PX;
    double width = 2 * MARGIN_PX + fmax(fmax(grid_w, MIN_WIDTH_PX), fmax(title_w, subtitle_w));
    L->top = MARGIN_PX + (int)ceil((g->title ? line_px(TITLE_PX) : 0) + (g->subtitle ? line_px(SUBTITLE_PX) : 0));
    if (g->title || g->subtitle) L->top += GAP_Y_PX;
    double height = L->top + (double)L->grid_rows * L->cell_h - GAP_Y_PX + MARGIN_PX;
    if (width > MAX_PAGE_PX || height > MAX_PAGE_PX)
        return nn_error("%s: %d images of %dx%d make a %.0fx%.0f px page (at most %d on a side)", path, g->n,
                        g->rows, g->cols, width, height, MAX_PAGE_PX);
    L->width = (int)ceil(width);
    L->height = (int)ceil(height);
    L->left = (int)((L->width - grid_w) / 2);
    return 0;
}

static int check_grid(const char *path, const nn_image_grid *g) {
    if (g->n < 1 || g->n > NN_GRID_MAX_IMAGES)
        return nn_error("%s: %d images (1 to %d supported)", path, g->n, NN_GRID_MAX_IMAGES);
    if (g->rows < 1 || g->rows > NN_GRID_MAX_SIDE || g->cols < 1 || g->cols > NN_GRID_MAX_SIDE)
        return nn_error("%s: %dx%d images (each side 1 to %d)", path, g->rows, g->cols, NN_GRID_MAX_SIDE);
    if (g->columns < 0) return nn_error("%s: %d columns", path, g->columns);
    if (!(g->lo < g->hi) || !isfinite(g->lo) || !isfinite(g->hi))
        return nn_error("%s: bad value range %g..%g", path, g->lo, g->hi);
    if (g->scale != NN_GRID_GRAY && g->scale != NN_GRID_DIVERGING)
        return nn_error("%s: unknown colour scale %d", path, (int)g->scale);
    if (!g->pixels) return nn_error("%s: no pixels", path);
    size_t per_image = (size_t)g->rows * (size_t)g->cols;
    for (size_t i = 0; i < (size_t)g->n * per_image; i++)
        if (!isfinite(g->pixels[i]))
            return nn_error("%s: image %zu: pixel %zu is %g", path, i / per_image + 1, i % per_image, g->pixels[i]);
    return 0;
}

/* ---- Drawing ---------------------------------------------------------------- */

/* cmap0: white page, black text, grey frames. cmap1, what the images use:
 * gray, or ColorBrewer's RdBu ends (blue 33,102,172 and red 178,24,43)
 * through white. */
static void set_colours(const void *user) {
    const layout *L = user;
    PLINT r0[N_COLOURS] = {255, 0, 150, 70}, g0[N_COLOURS] = {255, 0, 150, 70}, b0[N_COLOURS] = {255, 0, 150, 70};
    plscmap0(r0, g0, b0, N_COLOURS);
    PLINT r[LEVELS], g[LEVELS], b[LEVELS];
    for (int i = 0; i < LEVELS; i++) {
        double t = (double)i / (LEVELS - 1);
        if (L->g->scale == NN_GRID_GRAY) {
            r[i] = g[i] = b[i] = (PLINT)lround(255 * t);
        } else {
            /* Blue to white over the first half, white to red over the second. */
            static const double blue[3] = {33, 102, 172}, red[3] = {178, 24, 43};
            const double *end = t < 0.5 ? blue : red;
            double w = t < 0.5 ? 2 * t : 2 * (1 - t); /* weight of white */
            r[i] = (PLINT)lround(w * 255 + (1 - w) * end[0]);
            g[i] = (PLINT)lround(w * 255 + (1 - w) * end[1]);
            b[i] = (PLINT)lround(w * 255 + (1 - w) * end[2]);
        }
    }
    plscmap1n(LEVELS);
    plscmap1(r, g, b, LEVELS);
}

/* Text of the given height centred on x, its line's top at y_top (pixels
 * from the page's top). */
static void centred_text(const layout *L, double x, double y_top, double text_px, const char *s, size_t len) {
    char *line = nn_xmalloc(len + 1);
    memcpy(line, s, len);
    line[len] = '\0';
    char *text = report_pl_text(line);
    plschr(text_px / REPORT_PX_PER_MM, 1.0);
    /* plptex centres the text vertically on its reference point. */
    plptex(x, L->height - (y_top + 0.5 * line_px(text_px)), 1, 0, 0.5, text);
    free(text);
    free(line);
}

/* A value's step on the scale: 0 at lo (or below), LEVELS - 1 at hi. */
static long level(const nn_image_grid *g, float v) {
    return lround((LEVELS - 1) * (fmin(fmax(v, g->lo), g->hi) - g->lo) / ((double)g->hi - g->lo));
}

static void fill_rect(double x0, double x1, double y0, double y1, long l) {
    PLFLT x[4] = {x0, x1, x1, x0}, y[4] = {y0, y0, y1, y1};
    plcol1((double)l / (LEVELS - 1));
    plfill(4, x, y);
}

/* One image, its top left corner at (x0, y_top) in pixels from the page's
 * top left: a rectangle of its most common colour (a digit's background),
 * then a rectangle per run of pixels of another colour in a row. So an SVG
 * holds a few thousand rectangles, not one per pixel. */
static void draw_image(const layout *L, const float *img, double x0, double y_top) {
    const nn_image_grid *g = L->g;
    long count[LEVELS] = {0}, common = 0;
    for (size_t i = 0; i < (size_t)g->rows * g->cols; i++) count[level(g, img[i])]++;
    for (long l = 1; l < LEVELS; l++)
        if (count[l] > count[common]) common = l;
    double s = L->scale, top = L->height - y_top;
    fill_rect(x0, x0 + g->cols * s, top - g->rows * s, top, common);
    for (int r = 0; r < g->rows; r++) {
        const float *row = img + (size_t)r * g->cols;
        double y1 = top - r * s;
        for (int c = 0, end; c < g->cols; c = end) {
            long l = level(g, row[c]);
            for (end = c + 1; end < g->cols && level(g, row[end]) == l;) end++;
            if (l != common) fill_rect(x0 + c * s, x0 + end * s, y1 - s, y1, l);
        }
    }
}

static void draw_grid(const void *user) {
    const layout *L = user;
    const nn_image_grid *g = L->g;
    pladv(0);
    plvpor(0, 1, 0, 1);
    plwind(0, L->width, 0, L->height);
    plcol0(COL_FG);
    double y = MARGIN_PX;
    if (g->title) {
        centred_text(L, L->width / 2.0, y, TITLE_PX, g->title, strlen(g->title));
        y += line_px(TITLE_PX);
    }
    if (g->subtitle) {
        plcol0(COL_SUBTITLE);
        centred_text(L, L->width / 2.0, y, SUBTITLE_PX, g->subtitle, strlen(g->subtitle));
    }

    double tile_w = (double)L->scale * g->cols, tile_h = (double)L->scale * g->rows;
    for (int i = 0; i < g->n && !report_aborted(); i++) {
        double cx = L->left + (i % L->columns) * L->cell_w + (L->cell_w - GAP_X_PX) / 2.0;
        double top = L->top + (double)(i / L->columns) * L->cell_h;
        double x0 = round(cx - tile_w / 2), x1 = x0 + tile_w, y1 = L->height - top, y0 = y1 - tile_h;
        draw_image(L, g->pixels + (size_t)i * g->rows * g->cols, x0, top);
        /* A frame, so an image whose edge is white (a kernel of small
         * weights) still shows where it ends. */
        plcol0(COL_FRAME);
        PLFLT fx[5] = {x0, x1, x1, x0, x0}, fy[5] = {y0, y0, y1, y1, y0};
        plline(5, fx, fy);
        plcol0(COL_FG);
        const char *caption = g->captions ? g->captions[i] : NULL;
        double line_top = top + tile_h + CAPTION_GAP_PX;
        for (const char *line = caption; line; line_top += line_px(CAPTION_PX)) {
            size_t len = strcspn(line, "\n");
            centred_text(L, cx, line_top, CAPTION_PX, line, len);
            line = line[len] ? line + len + 1 : NULL;
        }
    }
}

int nn_plot_image_grid(const char *path, const nn_image_grid *grid) {
    layout L;
    if (report_image_format(path) < 0 || check_grid(path, grid) != 0 || plan_layout(path, grid, &L) != 0) return -1;
    report_picture pic = {
        .width = L.width, .height = L.height, .set_colours = set_colours, .draw = draw_grid, .user = &L};
    return report_render(path, &pic);
}

/* ---- Mistakes and kernels ------------------------------------------------------ */

/* Characters beyond ASCII, which the cairo drivers render through Pango. */
#define ARROW "\xe2\x86\x92" /* U+2192 */
#define MINUS "\xe2\x88\x92" /* U+2212 */
#define CAPTION_MAX 96

/* n captions of up to CAPTION_MAX bytes, in one block. */
typedef struct caption_list {
    char (*text)[CAPTION_MAX];
    const char **lines; /* lines[i] = text[i], what nn_image_grid takes */
} caption_list;

static caption_list captions_new(int n) {
    caption_list c = {nn_xcalloc((size_t)n, sizeof *c.text), nn_xcalloc((size_t)n, sizeof *c.lines)};
    for (int i = 0; i < n; i++) c.lines[i] = c.text[i];
    return c;
}

static void captions_free(caption_list *c) {
    free(c->text);
    free(c->lines);
}

int nn_plot_mistakes(const char *path, const nn_dataset *ds, const nn_mistake *mistakes, int n, int n_wrong,
                     const char *const *class_names, const char *name) {
    if (n < 1 || n > NN_GRID_MAX_IMAGES)
        return nn_error("%s: %d mistakes to draw (1 to %d supported)", path, n, NN_GRID_MAX_IMAGES);
    size_t per_image = (size_t)ds->rows * ds->cols;
    float *pixels = nn_xmalloc((size_t)n * per_image * sizeof *pixels);
    caption_list captions = captions_new(n);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const nn_mistake *e = &mistakes[i];
        if (e->index < 0 || e->index >= ds->n || e->truth < 0 || e->pred < 0 ||
            (class_names && (e->truth >= NN_DATA_CLASSES || e->pred >= NN_DATA_CLASSES))) {
            rc = nn_error("%s: mistake %d (example %d, classes %d and %d) is not one of the dataset's", path, i + 1,
                          e->index, e->truth, e->pred);
            break;
        }
        /* As stored: white ink on black, which is also how a kernel's
         * positive weights (red) line up with the strokes it responds to. */
        const uint8_t *img = ds->images + (size_t)e->index * per_image;
        for (size_t p = 0; p < per_image; p++) pixels[(size_t)i * per_image + p] = img[p] / 255.0f;
        /* Truncated, so a probability of 0.9996 does not read as a certain 100%. */
        double pct = floor(1000.0 * e->confidence) / 10.0;
        if (class_names) /* names are long: the prediction goes on a second line */
            snprintf(captions.text[i], CAPTION_MAX, "%s " ARROW "\n%s (%.1f%%)", class_names[e->truth],
                     class_names[e->pred], pct);
        else
            snprintf(captions.text[i], CAPTION_MAX, "%d " ARROW " %d (%.1f%%)", e->truth, e->pred, pct);
    }
    if (rc == 0) {
        char title[128], subtitle[512];
        if (n < n_wrong)
            snprintf(title, sizeof title, "The %d most confident of %d mistakes", n, n_wrong);
        else
            snprintf(title, sizeof title, "All %d mistakes, the most confident first", n);
        const char *key = "caption: true " ARROW " predicted (its probability)";
        if (name)
            snprintf(subtitle, sizeof subtitle, "%s (%d images); %s", name, ds->n, key);
        else
            snprintf(subtitle, sizeof subtitle, "%d images; %s", ds->n, key);
        nn_image_grid g = {
            .title = title,
            .subtitle = subtitle,
            .n = n,
            .rows = ds->rows,
            .cols = ds->cols,
            .pixels = pixels,
            .lo = 0.0f,
            .hi = 1.0f,
            .scale = NN_GRID_GRAY,
            .captions = captions.lines,
        };
        rc = nn_plot_image_grid(path, &g);
    }
    captions_free(&captions);
    free(pixels);
    return rc;
}

int nn_plot_conv_filters(const char *path, const nn_model *m, const char *name) {
    const nn_layer *conv = NULL;
    for (int i = 0; i < m->n_layers && !conv; i++)
        if (strcmp(nn_layer_kind_name(m->layers[i].kind), "conv") == 0) conv = &m->layers[i];
    if (!conv)
        return nn_error("%s%sthe model has no conv layer, so no filters to draw (it is '%s')", name ? name : "",
                        name ? ": " : "", nn_model_spec(m));
    const nn_tensor *w = nn_layer_tensor(conv, "weight"); /* [out, in, kh, kw] */
    int out = w->shape[0], in = w->shape[1], kh = w->shape[2], kw = w->shape[3];
    size_t per_kernel = (size_t)kh * kw;
    float *pixels = nn_xcalloc((size_t)out * per_kernel, sizeof *pixels);
    /* Several input channels: their mean, the kernel's response to a gray input. */
    for (int o = 0; o < out; o++)
        for (int c = 0; c < in; c++)
            for (size_t p = 0; p < per_kernel; p++)
                pixels[o * per_kernel + p] += w->data[((size_t)o * in + c) * per_kernel + p] / (float)in;
    /* One scale for all kernels, so a weak kernel looks weak. It is
     * diverging, white at 0: what a kernel does is in the signs of its
     * weights (red where it wants ink, blue where it wants background), and
     * on a gray scale 0 would be a mid-grey that reads as signal. */
    float max = 0.0f;
    for (size_t i = 0; i < (size_t)out * per_kernel; i++) max = fmaxf(max, fabsf(pixels[i]));
    if (max == 0.0f) max = 1.0f; /* all zero: any range shows them white */
    caption_list captions = captions_new(out);
    for (int o = 0; o < out; o++) snprintf(captions.text[o], CAPTION_MAX, "%d", o);
    char title[256], subtitle[512], channels[64] = "";
    if (in > 1) snprintf(channels, sizeof channels, ", mean over its %d input channels", in);
    snprintf(title, sizeof title, "The %d kernels of %s, the first conv layer (%dx%d%s)", out, conv->name, kh, kw,
             channels);
    snprintf(subtitle, sizeof subtitle, "%s%sblue " MINUS "%.3g, white 0, red +%.3g; caption: output channel",
             name ? name : "", name ? "; " : "", (double)max, (double)max);
    nn_image_grid g = {
        .title = title,
        .subtitle = subtitle,
        .n = out,
        .rows = kh,
        .cols = kw,
        .pixels = pixels,
        .lo = -max,
        .hi = max,
        .scale = NN_GRID_DIVERGING,
        .captions = captions.lines,
    };
    int rc = nn_plot_image_grid(path, &g);
    captions_free(&captions);
    free(pixels);
    return rc;
}
