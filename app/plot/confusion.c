/* Confusion matrices as pictures through PLplot (the session is
 * plplot_util.c's): rows the true classes, columns the predicted ones, each
 * cell shaded by its share of its row, with its count and that share
 * written in it where they fit, and each row's accuracy beside it.
 *
 * As gallery.c's grids, the page is laid out in pixels: the viewport is the
 * whole page and world coordinates are pixels with y up, so the cells land
 * on whole pixels. What each cell shows is computed first, apart from the
 * drawing (nn_plot_confusion_cells), so that it can be checked. */
#include "plot/plot.h"

#include <math.h>
#include <plplot.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "plot/plplot_util.h"
#include "core/util.h"

/* cmap0 slots; cmap1 holds the shade in NN_CONFUSION_LEVELS steps. */
enum { COL_BG, COL_FG, COL_GRID, COL_SUBTITLE, COL_LIGHT, N_COLOURS };

/* Sizes in pixels. */
#define MARGIN_PX 16
#define GAP_PX 14       /* between the titles and the matrix's headings, the matrix and the scale */
#define LABEL_GAP_PX 6  /* between a label and the matrix */
#define TITLE_PX 19.0   /* text heights (Pango's em) */
#define SUBTITLE_PX 14.0
#define AXIS_PX 14.0    /* "predicted", "true class" */
#define LABEL_PX 13.0   /* the classes' names, the rows' accuracies */
#define LINE_SPACING 1.4
#define MATRIX_PX 720   /* about the matrix's side: cells of whole pixels, CELL_MIN_PX to CELL_MAX_PX */
#define CELL_MIN_PX 12
#define CELL_MAX_PX 72
#define CELL_PAD_PX 4   /* the least room left beside a cell's text */
#define SCALE_W_PX 240  /* the colour scale under the matrix */
#define SCALE_H_PX 12
#define MAX_PAGE_PX 16384
#define LABEL_MAX 96    /* bytes of a class's label */

static double line_px(double text_px) { return LINE_SPACING * text_px; }

/* ---- What is drawn ---------------------------------------------------------- */

void nn_plot_confusion_shade(int level, unsigned char rgb[3]) {
    /* White, then ColorBrewer's Blues at 25%, 50%, 75% and 100%. */
    static const double stops[5][3] = {
        {255, 255, 255}, {198, 219, 239}, {107, 174, 214}, {33, 113, 181}, {8, 48, 107}};
    if (level < 0) level = 0;
    if (level > NN_CONFUSION_LEVELS - 1) level = NN_CONFUSION_LEVELS - 1;
    double t = 4.0 * level / (NN_CONFUSION_LEVELS - 1);
    int k = t >= 4 ? 3 : (int)t;
    double u = t - k;
    for (int i = 0; i < 3; i++) rgb[i] = (unsigned char)lround((1 - u) * stops[k][i] + u * stops[k + 1][i]);
}

void nn_plot_confusion_shade_cmap1(void) {
    PLINT r[NN_CONFUSION_LEVELS], g[NN_CONFUSION_LEVELS], b[NN_CONFUSION_LEVELS];
    for (int i = 0; i < NN_CONFUSION_LEVELS; i++) {
        unsigned char rgb[3];
        nn_plot_confusion_shade(i, rgb);
        r[i] = rgb[0], g[i] = rgb[1], b[i] = rgb[2];
    }
    plscmap1n(NN_CONFUSION_LEVELS);
    plscmap1(r, g, b, NN_CONFUSION_LEVELS);
}

int nn_plot_confusion_level(double share) {
    if (!(share > 0)) return 0;
    if (share > 1) share = 1;
    return (int)lround(sqrt(share) * (NN_CONFUSION_LEVELS - 1));
}

/* A share of count out of total (count <= total, total > 0) in per cent
 * with one decimal, truncated in integers so it never rounds up to 100%. */
static void format_share(long count, long total, char *buf, size_t cap) {
    long tenths = (long)((double)count * 1000.0 / (double)total);
    if (count == total) snprintf(buf, cap, "100%%");
    else if (count == 0) snprintf(buf, cap, "0%%");
    else if (tenths == 0) snprintf(buf, cap, "<0.1%%");
    else snprintf(buf, cap, "%ld.%ld%%", tenths / 10, tenths % 10);
}

static long row_total(const nn_confusion *c, int r) {
    long total = 0;
    for (int k = 0; k < c->n_classes; k++) total += c->counts[(size_t)r * c->n_classes + k];
    return total;
}

void nn_plot_confusion_cells(const nn_confusion *c, int cell_px, int lines, double text_px,
                             nn_confusion_cell *cells) {
    int n = c->n_classes;
    for (int r = 0; r < n; r++) {
        long total = row_total(c, r);
        for (int k = 0; k < n; k++) {
            nn_confusion_cell *e = &cells[(size_t)r * n + k];
            memset(e, 0, sizeof *e);
            e->count = c->counts[(size_t)r * n + k];
            e->share = total > 0 ? (double)e->count / (double)total : 0.0;
            e->level = nn_plot_confusion_level(e->share);
            unsigned char rgb[3];
            nn_plot_confusion_shade(e->level, rgb);
            e->light_text = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140;
            if (e->count == 0) continue;
            if (lines >= 1) snprintf(e->text[0], sizeof e->text[0], "%ld", e->count);
            if (lines >= 2) format_share(e->count, total, e->text[1], sizeof e->text[1]);
            for (int i = 0; i < 2; i++)
                if (report_text_width_px(e->text[i], strlen(e->text[i]), text_px) > cell_px - CELL_PAD_PX)
                    e->text[i][0] = '\0';
        }
    }
}

/* ---- Layout ------------------------------------------------------------------ */

/* Class k's label: its name, or its number. */
static const char *class_label(const char *const *names, int k, char *buf, size_t cap) {
    if (names && names[k]) snprintf(buf, cap, "%s", names[k]);
    else snprintf(buf, cap, "%d", k);
    return buf;
}

/* Row r's accuracy as written beside it. */
static void row_accuracy(const nn_confusion *c, int r, char *buf, size_t cap) {
    long total = row_total(c, r);
    if (total == 0) {
        snprintf(buf, cap, "no examples");
        return;
    }
    char share[24];
    format_share(c->counts[(size_t)r * c->n_classes + r], total, share, sizeof share);
    snprintf(buf, cap, "%s of %ld", share, total);
}

/* The texts over the matrix. */
typedef struct headings {
    char title[160];
    char subtitle[2][512]; /* "" for none */
} headings;

static void make_headings(const nn_confusion *c, const char *name, headings *h) {
    long total = nn_confusion_total(c);
    double acc = nn_confusion_accuracy(c);
    snprintf(h->title, sizeof h->title, "Confusion matrix: accuracy %.2f%% (%ld of %ld)", 100.0 * acc,
             (long)lround(acc * (double)total), total);
    snprintf(h->subtitle[0], sizeof h->subtitle[0], "%s", name ? name : "");
    snprintf(h->subtitle[1], sizeof h->subtitle[1],
             "rows: the true class; columns: the prediction; shade and %%: the share of the row");
}

#define ACCURACY_HEADING "accuracy"
#define SCALE_CAPTION "share of the row (square-root scale)"

/* The layout, and the widths its drawing needs. */
typedef struct plan {
    nn_confusion_layout L;
    double label_w;   /* the widest class label */
    double header_h;  /* the column labels' band over the matrix */
    int right_x;      /* where the rows' accuracies start */
} plan;

/* Errors name path when it is given. */
static int make_plan(const char *path, const nn_confusion *c, const char *const *names, const char *name, plan *p) {
    memset(p, 0, sizeof *p);
    nn_confusion_layout *L = &p->L;
    int n = c->n_classes;
    if (n < 2 || n > NN_CONFUSION_MAX_DRAWN)
        return nn_error("%s%s%d classes: a confusion picture shows 2 to %d", path ? path : "", path ? ": " : "", n,
                        NN_CONFUSION_MAX_DRAWN);
    L->cell = MATRIX_PX / n;
    if (L->cell > CELL_MAX_PX) L->cell = CELL_MAX_PX;
    if (L->cell < CELL_MIN_PX) L->cell = CELL_MIN_PX;
    L->text_px = L->cell >= 56 ? 12.0 : L->cell >= 36 ? 11.0 : 10.0;
    L->lines = L->cell >= 2 * line_px(L->text_px) + CELL_PAD_PX ? 2 : L->cell >= line_px(L->text_px) + 2 ? 1 : 0;

    char buf[LABEL_MAX];
    double right_w = report_text_width_px(ACCURACY_HEADING, strlen(ACCURACY_HEADING), LABEL_PX);
    for (int k = 0; k < n; k++) {
        class_label(names, k, buf, sizeof buf);
        p->label_w = fmax(p->label_w, report_text_width_px(buf, strlen(buf), LABEL_PX));
        row_accuracy(c, k, buf, sizeof buf);
        right_w = fmax(right_w, report_text_width_px(buf, strlen(buf), LABEL_PX));
    }
    L->rotated = p->label_w > L->cell - CELL_PAD_PX;
    p->header_h = (L->rotated ? p->label_w : line_px(LABEL_PX)) + LABEL_GAP_PX;

    headings h;
    make_headings(c, name, &h);
    double titles_w = report_text_width_px(h.title, strlen(h.title), TITLE_PX);
    double titles_h = line_px(TITLE_PX);
    for (int i = 0; i < 2; i++)
        if (h.subtitle[i][0]) {
            titles_w = fmax(titles_w, report_text_width_px(h.subtitle[i], strlen(h.subtitle[i]), SUBTITLE_PX));
            titles_h += line_px(SUBTITLE_PX);
        }

    double matrix = (double)n * L->cell;
    double left = line_px(AXIS_PX) + LABEL_GAP_PX + p->label_w + LABEL_GAP_PX;
    double scale_w = fmin(SCALE_W_PX, matrix);
    double caption_w = report_text_width_px(SCALE_CAPTION, strlen(SCALE_CAPTION), LABEL_PX);
    double block_w = fmax(left + matrix + 2 * LABEL_GAP_PX + right_w,
                          left + (matrix + scale_w) / 2 + LABEL_GAP_PX + caption_w);
    double width = 2 * MARGIN_PX + fmax(block_w, titles_w);
    double top = MARGIN_PX + titles_h + GAP_PX + line_px(AXIS_PX) + p->header_h;
    double height = top + matrix + GAP_PX + SCALE_H_PX + 2 + line_px(LABEL_PX) + MARGIN_PX;
    if (width > MAX_PAGE_PX || height > MAX_PAGE_PX)
        return nn_error("%s%s%d classes make a %.0fx%.0f px page (at most %d on a side)", path ? path : "",
                        path ? ": " : "", n, width, height, MAX_PAGE_PX);
    L->width = (int)ceil(width);
    L->height = (int)ceil(height);
    L->left = (int)ceil((L->width - block_w) / 2 + left);
    L->top = (int)ceil(top);
    p->right_x = L->left + n * L->cell + 2 * LABEL_GAP_PX;
    return 0;
}

int nn_plot_confusion_layout(const nn_confusion *c, const char *const *class_names, const char *name,
                             nn_confusion_layout *L) {
    plan p;
    if (make_plan(NULL, c, class_names, name, &p) != 0) return -1;
    *L = p.L;
    return 0;
}

/* ---- Drawing ------------------------------------------------------------------ */

typedef struct job {
    plan p;
    const nn_confusion *c;
    const char *const *names;
    headings h;
    nn_confusion_cell *cells;
} job;

/* cmap0: white page, black text, grey grid and subtitle, white text on
 * dark cells; cmap1: the shade. */
static void set_colours(const void *user) {
    (void)user;
    PLINT r0[N_COLOURS] = {255, 0, 200, 70, 255}, g0[N_COLOURS] = {255, 0, 200, 70, 255},
          b0[N_COLOURS] = {255, 0, 200, 70, 255};
    plscmap0(r0, g0, b0, N_COLOURS);
    nn_plot_confusion_shade_cmap1();
}

/* Text text_px high at (x, y) in pixels from the page's top left, y its
 * middle; going right, or up when `up`; just: 0 starts at x, 0.5 centres, 1
 * ends there (along the text's direction). */
static void text_at(const nn_confusion_layout *L, double x, double y, double text_px, bool up, double just,
                    const char *s) {
    char *text = report_pl_text(s);
    plschr(text_px / REPORT_PX_PER_MM, 1.0);
    plptex(x, L->height - y, up ? 0 : 1, up ? 1 : 0, just, text);
    free(text);
}

static void fill_rect(double x0, double x1, double y0, double y1, int level) {
    PLFLT x[4] = {x0, x1, x1, x0}, y[4] = {y0, y0, y1, y1};
    plcol1((double)level / (NN_CONFUSION_LEVELS - 1));
    plfill(4, x, y);
}

static void line(double x0, double y0, double x1, double y1) {
    PLFLT x[2] = {x0, x1}, y[2] = {y0, y1};
    plline(2, x, y);
}

static void draw_titles(const job *j) {
    const nn_confusion_layout *L = &j->p.L;
    double y = MARGIN_PX + 0.5 * line_px(TITLE_PX);
    plcol0(COL_FG);
    text_at(L, L->width / 2.0, y, TITLE_PX, false, 0.5, j->h.title);
    y += 0.5 * line_px(TITLE_PX) + 0.5 * line_px(SUBTITLE_PX);
    plcol0(COL_SUBTITLE);
    for (int i = 0; i < 2; i++)
        if (j->h.subtitle[i][0]) {
            text_at(L, L->width / 2.0, y, SUBTITLE_PX, false, 0.5, j->h.subtitle[i]);
            y += line_px(SUBTITLE_PX);
        }
}

/* The class labels along both sides, the axes' names and the heading of
 * the rows' accuracies. */
static void draw_labels(const job *j) {
    const nn_confusion_layout *L = &j->p.L;
    int n = j->c->n_classes;
    double matrix = (double)n * L->cell, label_y = L->top - LABEL_GAP_PX;
    char buf[LABEL_MAX];
    plcol0(COL_FG);
    for (int k = 0; k < n; k++) {
        double mid = L->left + (k + 0.5) * L->cell, row_mid = L->top + (k + 0.5) * L->cell;
        class_label(j->names, k, buf, sizeof buf);
        if (L->rotated) text_at(L, mid, label_y, LABEL_PX, true, 0.0, buf);
        else text_at(L, mid, label_y - 0.5 * line_px(LABEL_PX), LABEL_PX, false, 0.5, buf);
        text_at(L, L->left - LABEL_GAP_PX, row_mid, LABEL_PX, false, 1.0, buf);
        row_accuracy(j->c, k, buf, sizeof buf);
        text_at(L, j->p.right_x, row_mid, LABEL_PX, false, 0.0, buf);
    }
    text_at(L, j->p.right_x, label_y - 0.5 * line_px(LABEL_PX), LABEL_PX, false, 0.0, ACCURACY_HEADING);
    double axis_y = L->top - j->p.header_h - 0.5 * line_px(AXIS_PX);
    text_at(L, L->left + matrix / 2, axis_y, AXIS_PX, false, 0.5, "predicted");
    double axis_x = L->left - LABEL_GAP_PX - j->p.label_w - LABEL_GAP_PX - 0.5 * line_px(AXIS_PX);
    text_at(L, axis_x, L->top + matrix / 2, AXIS_PX, true, 0.5, "true class");
}

static void draw_cells(const job *j) {
    const nn_confusion_layout *L = &j->p.L;
    int n = j->c->n_classes;
    for (int r = 0; r < n && !report_aborted(); r++)
        for (int k = 0; k < n; k++) {
            const nn_confusion_cell *e = &j->cells[(size_t)r * n + k];
            double x0 = L->left + k * L->cell, y_top = L->top + r * L->cell;
            fill_rect(x0, x0 + L->cell, L->height - y_top - L->cell, L->height - y_top, e->level);
            int lines = (e->text[0][0] != '\0') + (e->text[1][0] != '\0');
            double y = y_top + 0.5 * L->cell - 0.5 * (lines - 1) * line_px(L->text_px);
            plcol0(e->light_text ? COL_LIGHT : COL_FG);
            for (int i = 0; i < 2; i++)
                if (e->text[i][0]) {
                    text_at(L, x0 + 0.5 * L->cell, y, L->text_px, false, 0.5, e->text[i]);
                    y += line_px(L->text_px);
                }
        }
    /* The grid between the cells, and a frame. */
    double x0 = L->left, x1 = L->left + n * L->cell, y0 = L->height - L->top - n * L->cell, y1 = L->height - L->top;
    plcol0(COL_GRID);
    for (int k = 1; k < n; k++) {
        line(x0 + k * L->cell, y0, x0 + k * L->cell, y1);
        line(x0, y1 - k * L->cell, x1, y1 - k * L->cell);
    }
    plcol0(COL_FG);
    PLFLT fx[5] = {x0, x1, x1, x0, x0}, fy[5] = {y0, y0, y1, y1, y0};
    plline(5, fx, fy);
}

/* The colour scale under the matrix, from 0% to 100% of the row, with
 * ticks at the shares where the square root spreads the shades. */
static void draw_scale(const job *j) {
    static const struct {
        double share;
        const char *label;
    } ticks[] = {{0, "0"}, {0.1, "10%"}, {0.25, "25%"}, {0.5, "50%"}, {1, "100%"}};
    const nn_confusion_layout *L = &j->p.L;
    int n = j->c->n_classes, steps = 64;
    double w = fmin(SCALE_W_PX, (double)n * L->cell), x0 = L->left + (n * L->cell - w) / 2;
    double top = L->top + n * L->cell + GAP_PX, y1 = L->height - top, y0 = y1 - SCALE_H_PX;
    for (int s = 0; s < steps; s++)
        fill_rect(x0 + w * s / steps, x0 + w * (s + 1) / steps, y0, y1,
                  (int)lround((double)s / (steps - 1) * (NN_CONFUSION_LEVELS - 1)));
    plcol0(COL_FG);
    PLFLT fx[5] = {x0, x0 + w, x0 + w, x0, x0}, fy[5] = {y0, y0, y1, y1, y0};
    plline(5, fx, fy);
    double y = top + SCALE_H_PX + 2 + 0.5 * line_px(LABEL_PX);
    /* Too narrow a scale (a few classes in small cells) keeps the ends only. */
    bool all = w >= 200;
    for (size_t t = 0; t < sizeof ticks / sizeof *ticks; t++) {
        bool end = t == 0 || t + 1 == sizeof ticks / sizeof *ticks;
        if (!all && !end) continue;
        double x = x0 + w * nn_plot_confusion_level(ticks[t].share) / (NN_CONFUSION_LEVELS - 1);
        line(x, y0 - 3, x, y0);
        text_at(L, x, y, LABEL_PX, false, t == 0 ? 0.0 : end ? 1.0 : 0.5, ticks[t].label);
    }
    text_at(L, x0 + w + LABEL_GAP_PX, top + 0.5 * SCALE_H_PX, LABEL_PX, false, 0.0, SCALE_CAPTION);
}

static void draw(const void *user) {
    const job *j = user;
    const nn_confusion_layout *L = &j->p.L;
    pladv(0);
    plvpor(0, 1, 0, 1);
    plwind(0, L->width, 0, L->height);
    draw_titles(j);
    draw_labels(j);
    draw_cells(j);
    draw_scale(j);
}

int nn_plot_confusion(const char *path, const nn_confusion *c, const char *const *class_names, const char *name) {
    if (report_image_format(path) < 0) return -1;
    if (nn_confusion_total(c) == 0) return nn_error("%s: the confusion matrix is empty: nothing to draw", path);
    job j = {.c = c, .names = class_names};
    if (make_plan(path, c, class_names, name, &j.p) != 0) return -1;
    make_headings(c, name, &j.h);
    size_t n = (size_t)c->n_classes;
    j.cells = nn_xmalloc(n * n * sizeof *j.cells);
    nn_plot_confusion_cells(c, j.p.L.cell, j.p.L.lines, j.p.L.text_px, j.cells);
    report_picture pic = {.width = j.p.L.width, .height = j.p.L.height, .set_colours = set_colours, .draw = draw,
                          .user = &j};
    int rc = report_render(path, &pic);
    free(j.cells);
    return rc;
}
