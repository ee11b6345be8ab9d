/* Line and scatter plots through PLplot's cairo drivers (pngcairo, svgcairo);
 * the PLplot session itself (device checks, exit handler, atomic write) is
 * plplot_util.c's. */
#include "plot/plot.h"

#include <math.h>
#include <plplot.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "plot/plplot_util.h"
#include "core/util.h"

/* cmap0 slots: background, axes and text, grid, then the series colours. */
enum { COL_BG, COL_FG, COL_GRID, COL_SERIES };

/* Matplotlib's "tab10" colours: distinct, and readable on white. */
static const int palette[][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};
#define N_PALETTE ((int)(sizeof palette / sizeof palette[0]))

/* Scatter points are drawn as text, a filled circle (U+25CF): the cairo
 * drivers render Unicode through Pango, and the legend shows the same glyph. */
static const char *const point_glyph = "\xe2\x97\x8f" /* U+25CF in UTF-8 */;

/* Legend geometry: offset from the viewport corner and line sample length
 * (fractions of the viewport), row height (character heights). */
#define LEGEND_OFFSET_X 0.02
#define LEGEND_OFFSET_Y 0.03
#define LEGEND_SAMPLE 0.08
#define LEGEND_SPACING 2.0
#define LEGEND_INSIDE_MAX 6 /* more entries go beside the plot */

#define SERIES_WIDTH 2.0
/* Solid lines first; dashed kinds once the colours repeat. */
static int series_style(int s) { return 1 + (s / N_PALETTE) % 8; }

/* Values beyond this are treated like NaN: PLplot maps world coordinates to
 * integers, and axis spans built from such values (a blown-up loss) would
 * overflow. */
#define PLOTTABLE_MAX 1e100

static int plottable(double v) { return isfinite(v) && fabs(v) < PLOTTABLE_MAX; }

/* ---- Axis ranges ---------------------------------------------------------- */

typedef struct {
    double lo, hi;
} range;

/* The range of the plottable points of a panel, x (axis 0) or y (axis 1);
 * returns 0 if there are none. */
static int data_range(const nn_panel *p, int axis, range *r) {
    int any = 0;
    for (int s = 0; s < p->n_series; s++) {
        const nn_series *se = &p->series[s];
        for (int i = 0; i < se->n; i++) {
            if (!plottable(se->x[i]) || !plottable(se->y[i])) continue;
            double v = axis ? se->y[i] : se->x[i];
            if (!any || v < r->lo) r->lo = v;
            if (!any || v > r->hi) r->hi = v;
            any = 1;
        }
    }
    return any;
}

/* Widens a range by `margin` (a fraction of its span) and makes sure it is
 * never empty or too narrow for PLplot's tick algorithm (a constant series,
 * a single point). */
static range pad_range(range r, double margin) {
    double mag = fmax(fabs(r.lo), fabs(r.hi));
    if (r.hi - r.lo <= 1e-6 * mag || mag == 0) {
        double mid = 0.5 * (r.lo + r.hi);
        double half = mag > 0 ? 0.1 * mag : 1.0;
        r.lo = mid - half;
        r.hi = mid + half;
        return r;
    }
    double m = margin * (r.hi - r.lo);
    r.lo -= m;
    r.hi += m;
    return r;
}

/* ---- Text ----------------------------------------------------------------- */

static void pl_label(const char *xlabel, const char *ylabel, const char *title) {
    char *x = report_pl_text(xlabel), *y = report_pl_text(ylabel), *t = report_pl_text(title);
    pllab(x, y, t);
    free(x);
    free(y);
    free(t);
}

/* ---- Drawing -------------------------------------------------------------- */

/* Draws one series: markers, or a line broken wherever a value is not
 * plottable. Values far outside a fixed y range are pulled in so PLplot's
 * integer coordinates cannot overflow; what is visible barely changes. */
static void draw_series(const nn_series *s, int colour, range yr) {
    double *x = nn_xmalloc((size_t)s->n * sizeof *x);
    double *y = nn_xmalloc((size_t)s->n * sizeof *y);
    double far = 1000 * (yr.hi - yr.lo);
    plcol0(colour);
    for (int i = 0; i < s->n;) {
        int n = 0;
        for (; i < s->n && plottable(s->x[i]) && plottable(s->y[i]); i++, n++) {
            x[n] = s->x[i];
            y[n] = fmin(fmax(s->y[i], yr.lo - far), yr.hi + far);
        }
        if (s->points)
            plstring(n, x, y, point_glyph);
        else if (n == 1)
            plstring(1, x, y, point_glyph); /* a lone point has no line to draw */
        else if (n > 1)
            plline(n, x, y);
        if (n == 0) i++; /* skip the unplottable value */
    }
    free(x);
    free(y);
}

/* ---- Legend ---------------------------------------------------------------- */

/* Where a panel's legend goes: n entries (labelled series) at PL_POSITION_*
 * flags relative to the viewport. */
typedef struct legend_layout {
    int n;
    int position;
} legend_layout;

/* The current viewport as fractions of its subpage (what plvpor takes),
 * and the subpage's size in mm. plgvpd gives the viewport as fractions of
 * the page, plgspa the subpage in mm; the page is `cols` x `rows` subpages. */
typedef struct frame {
    double x0, x1, y0, y1;
    double sub_w, sub_h;
} frame;

static frame current_frame(int cols, int rows) {
    PLFLT sx0, sx1, sy0, sy1, vx0, vx1, vy0, vy1;
    plgspa(&sx0, &sx1, &sy0, &sy1);
    plgvpd(&vx0, &vx1, &vy0, &vy1);
    frame f = {.sub_w = sx1 - sx0, .sub_h = sy1 - sy0};
    f.x0 = (vx0 * cols * f.sub_w - sx0) / f.sub_w;
    f.x1 = (vx1 * cols * f.sub_w - sx0) / f.sub_w;
    f.y0 = (vy0 * rows * f.sub_h - sy0) / f.sub_h;
    f.y1 = (vy1 * rows * f.sub_h - sy0) / f.sub_h;
    return f;
}

/* The legend's size in mm. PLplot can only measure a legend by drawing it,
 * so this estimates it from the character height: rows of LEGEND_SPACING
 * characters; a line sample plus the longest label at about 0.6 character
 * heights per character. */
static void legend_size_mm(const nn_panel *p, double vp_w_mm, int *n, double *w, double *h) {
    size_t longest = 0;
    *n = 0;
    for (int s = 0; s < p->n_series; s++) {
        const char *label = p->series[s].label;
        if (!label) continue;
        (*n)++;
        if (strlen(label) > longest) longest = strlen(label);
    }
    PLFLT def_mm, char_mm;
    plgchr(&def_mm, &char_mm);
    *w = LEGEND_SAMPLE * vp_w_mm + char_mm * (3 + 0.6 * (double)longest);
    *h = char_mm * (LEGEND_SPACING * *n + 1);
}

/* Counts the samples of a panel's data inside each w x h corner box of the
 * viewport (fractions) and returns the PL_POSITION_* flags of the emptiest
 * corner. Lines are sampled along their segments, not only at vertices. */
static int emptiest_corner(const nn_panel *p, range xr, range yr, double w, double h) {
    static const int corners[4] = {
        PL_POSITION_TOP | PL_POSITION_RIGHT, PL_POSITION_TOP | PL_POSITION_LEFT,
        PL_POSITION_BOTTOM | PL_POSITION_RIGHT, PL_POSITION_BOTTOM | PL_POSITION_LEFT};
    long hits[4] = {0};
    enum { STEPS = 16 };
    for (int s = 0; s < p->n_series; s++) {
        const nn_series *se = &p->series[s];
        for (int i = 0; i < se->n; i++) {
            if (!plottable(se->x[i]) || !plottable(se->y[i])) continue;
            int next = i + 1 < se->n && !se->points && plottable(se->x[i + 1]) &&
                       plottable(se->y[i + 1]);
            int steps = next ? STEPS : 1;
            for (int k = 0; k < steps; k++) {
                double t = (double)k / STEPS;
                double x = next ? se->x[i] + t * (se->x[i + 1] - se->x[i]) : se->x[i];
                double y = next ? se->y[i] + t * (se->y[i + 1] - se->y[i]) : se->y[i];
                double u = (x - xr.lo) / (xr.hi - xr.lo), v = (y - yr.lo) / (yr.hi - yr.lo);
                int top = v > 1 - h, bottom = v < h, right = u > 1 - w, left = u < w;
                hits[0] += top && right;
                hits[1] += top && left;
                hits[2] += bottom && right;
                hits[3] += bottom && left;
            }
        }
    }
    int best = 0;
    for (int c = 1; c < 4; c++)
        if (hits[c] < hits[best]) best = c;
    return corners[best];
}

/* Sets the panel's viewport and decides where its legend goes: inside, in
 * the emptiest corner, for a few entries; beside the plot, in room taken from
 * the viewport's right side, for many (they would hide the data). */
static legend_layout place_legend(const nn_panel *p, range xr, range yr, int cols, int rows) {
    legend_layout L = {0};
    plvsta();
    frame f = current_frame(cols, rows);
    double vp_w = (f.x1 - f.x0) * f.sub_w, vp_h = (f.y1 - f.y0) * f.sub_h, w_mm, h_mm;
    legend_size_mm(p, vp_w, &L.n, &w_mm, &h_mm);
    if (L.n == 0) return L;
    if (L.n <= LEGEND_INSIDE_MAX) {
        double w = LEGEND_OFFSET_X + w_mm / vp_w, h = LEGEND_OFFSET_Y + h_mm / vp_h;
        L.position = PL_POSITION_INSIDE | emptiest_corner(p, xr, yr, w, h);
        return L;
    }
    /* The legend, its gap to the plot and one character of margin must fit
     * between the new right edge and the subpage's. */
    PLFLT def_mm, char_mm;
    plgchr(&def_mm, &char_mm);
    double right = 1 - (w_mm + LEGEND_OFFSET_X * vp_w + char_mm) / f.sub_w;
    plvpor(f.x0, fmax(f.x0 + 0.3 * (f.x1 - f.x0), fmin(f.x1, right)), f.y0, f.y1);
    L.position = PL_POSITION_OUTSIDE | PL_POSITION_RIGHT;
    return L;
}

static void draw_legend(const nn_panel *p, const legend_layout *L) {
    int n = L->n;
    PLINT *opt = nn_xcalloc((size_t)n, sizeof *opt);
    PLINT *colours = nn_xcalloc((size_t)n, sizeof *colours);
    PLINT *text_colours = nn_xcalloc((size_t)n, sizeof *text_colours);
    PLINT *styles = nn_xcalloc((size_t)n, sizeof *styles);
    PLINT *symbol_counts = nn_xcalloc((size_t)n, sizeof *symbol_counts);
    PLFLT *widths = nn_xcalloc((size_t)n, sizeof *widths);
    PLFLT *symbol_scales = nn_xcalloc((size_t)n, sizeof *symbol_scales);
    char **text = nn_xcalloc((size_t)n, sizeof *text);
    const char **symbols = nn_xcalloc((size_t)n, sizeof *symbols);
    for (int s = 0, k = 0; s < p->n_series; s++) {
        const nn_series *se = &p->series[s];
        if (!se->label) continue;
        opt[k] = se->points ? PL_LEGEND_SYMBOL : PL_LEGEND_LINE;
        colours[k] = COL_SERIES + s % N_PALETTE;
        text_colours[k] = COL_FG;
        styles[k] = series_style(s);
        widths[k] = SERIES_WIDTH;
        symbol_counts[k] = 1;
        symbol_scales[k] = 1.0;
        symbols[k] = point_glyph;
        text[k] = report_pl_text(se->label);
        k++;
    }
    PLFLT legend_w, legend_h;
    pllegend(&legend_w, &legend_h, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_VIEWPORT | L->position, LEGEND_OFFSET_X, LEGEND_OFFSET_Y,
             LEGEND_SAMPLE, COL_BG, COL_GRID, 1, 0, 0, n, opt, 1.0, 1.0, LEGEND_SPACING, 0.0,
             text_colours, (const char *const *)text, NULL, NULL, NULL, NULL, colours, styles,
             widths, colours, symbol_scales, symbol_counts, symbols);
    for (int k = 0; k < n; k++) free(text[k]);
    free(opt);
    free(colours);
    free(text_colours);
    free(styles);
    free(symbol_counts);
    free(widths);
    free(symbol_scales);
    free(text);
    free(symbols);
}

/* ---- Panels ---------------------------------------------------------------- */

static void draw_panel(const nn_panel *p, int cols, int rows) {
    range xr = {0, 1}, yr = {0, 1};
    int any_points = 0;
    for (int s = 0; s < p->n_series; s++) any_points |= p->series[s].points;
    /* Lines span the x axis exactly (epochs 1..N); scatter points get room. */
    if (data_range(p, 0, &xr)) xr = pad_range(xr, any_points ? 0.05 : 0.0);
    if (p->ymin < p->ymax) {
        yr.lo = p->ymin;
        yr.hi = p->ymax;
    } else if (data_range(p, 1, &yr)) {
        yr = pad_range(yr, 0.05);
    }

    pladv(0);
    legend_layout legend = place_legend(p, xr, yr, cols, rows);
    plwind(xr.lo, xr.hi, yr.lo, yr.hi);
    plwidth(1.0);
    plcol0(COL_GRID);
    plbox("g", 0, 0, "g", 0, 0);
    plcol0(COL_FG);
    plbox("bcnst", 0, 0, "bcnstv", 0, 0);
    pl_label(p->xlabel, p->ylabel, p->title);

    plwidth(SERIES_WIDTH);
    for (int s = 0; s < p->n_series; s++) {
        pllsty(series_style(s));
        draw_series(&p->series[s], COL_SERIES + s % N_PALETTE, yr);
    }
    pllsty(1);
    plwidth(1.0);
    if (legend.n > 0) draw_legend(p, &legend);
}

/* ---- Pages --------------------------------------------------------------- */

/* What draw_panels puts on the page: the panels on a cols x rows grid. */
typedef struct plot_job {
    int cols, rows;
    const nn_panel *panels;
    int n_panels;
} plot_job;

/* The palette: white background, black text, light grey grid, series. */
static void set_colours(const void *user) {
    PLINT r[COL_SERIES + N_PALETTE], g[COL_SERIES + N_PALETTE], b[COL_SERIES + N_PALETTE];
    r[COL_BG] = g[COL_BG] = b[COL_BG] = 255;
    r[COL_FG] = g[COL_FG] = b[COL_FG] = 0;
    r[COL_GRID] = g[COL_GRID] = b[COL_GRID] = 220;
    for (int i = 0; i < N_PALETTE; i++) {
        r[COL_SERIES + i] = palette[i][0];
        g[COL_SERIES + i] = palette[i][1];
        b[COL_SERIES + i] = palette[i][2];
    }
    plscmap0(r, g, b, COL_SERIES + N_PALETTE);
}

static void draw_panels(const void *user) {
    const plot_job *job = user;
    plssub(job->cols, job->rows);
    /* PLplot scales text with the page; fix it in mm (at 72 dpi, ~13 px). */
    plschr(job->n_panels == 1 ? 4.8 : 4.5, 1.0);
    for (int i = 0; i < job->n_panels && !report_aborted(); i++)
        draw_panel(&job->panels[i], job->cols, job->rows);
}

static int check_panels(const char *path, const nn_panel *panels, int n_panels) {
    if (n_panels < 1 || n_panels > NN_PLOT_MAX_PANELS)
        return nn_error("%s: %d panels requested (1 to %d supported)", path, n_panels,
                        NN_PLOT_MAX_PANELS);
    for (int i = 0; i < n_panels; i++) {
        const nn_panel *p = &panels[i];
        if (p->n_series < 0 || (p->n_series > 0 && !p->series))
            return nn_error("%s: panel %d: no series array", path, i + 1);
        if (!(p->ymin <= p->ymax) || !isfinite(p->ymin) || !isfinite(p->ymax))
            return nn_error("%s: panel %d: bad y range %g..%g", path, i + 1, p->ymin, p->ymax);
        for (int s = 0; s < p->n_series; s++) {
            const nn_series *se = &p->series[s];
            if (se->n < 0 || (se->n > 0 && (!se->x || !se->y)))
                return nn_error("%s: panel %d, series %d: missing data", path, i + 1, s + 1);
        }
    }
    return 0;
}

static int plot_file(const char *path, const nn_panel *panels, int n_panels, int stacked) {
    if (report_image_format(path) < 0 || check_panels(path, panels, n_panels) != 0) return -1;
    plot_job job = {.cols = stacked ? 1 : n_panels, .rows = stacked ? n_panels : 1, .panels = panels,
                    .n_panels = n_panels};
    report_picture pic = {
        .width = stacked || n_panels == 1 ? 800 : 550 * n_panels,
        .height = n_panels == 1 ? 600 : stacked ? 450 * n_panels : 550,
        .set_colours = set_colours,
        .draw = draw_panels,
        .user = &job,
    };
    return report_render(path, &pic);
}

int nn_plot(const char *path, const nn_panel *panels, int n_panels) {
    return plot_file(path, panels, n_panels, 0);
}

int nn_plot_stacked(const char *path, const nn_panel *panels, int n_panels) {
    return plot_file(path, panels, n_panels, 1);
}
