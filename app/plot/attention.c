/* Attention weights as pictures through PLplot (the session is
 * plplot_util.c's): a grid of heat maps, a row of panels per attention layer
 * and a panel per head, each with a row per query position and a column per
 * key position, the tokens written along both sides.
 *
 * As confusion.c's matrix, the page is laid out in pixels (the viewport is
 * the whole page, world coordinates are pixels with y up) and shaded with
 * its colours on its square-root scale: attention spread over 50 keys gives
 * each 2%, which a linear scale would leave white. Keys a causal mask hides
 * are grey, apart from the keys a query sees and gives nothing. */
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
enum { COL_BG, COL_FG, COL_FRAME, COL_SUBTITLE, COL_MASKED, N_COLOURS };

/* Sizes in pixels. */
#define MARGIN_PX 16
#define GAP_PX 14        /* between the titles and the panels, the panels and the scale */
#define PANEL_GAP_X_PX 28
#define PANEL_GAP_Y_PX 18
#define LABEL_GAP_PX 4   /* between a token and the map */
#define TITLE_PX 19.0    /* text heights (Pango's em) */
#define SUBTITLE_PX 14.0
#define PANEL_TITLE_PX 13.0
#define LABEL_MIN_PX 9.0 /* the tokens along the maps' sides */
#define LABEL_MAX_PX 13.0
#define LABEL_CELL_PX 10 /* the smallest cell that has room for a token of LABEL_MIN_PX */
#define LINE_SPACING 1.4
#define CELL_MIN_PX 2
#define CELL_MAX_PX 26
#define SCALE_W_PX 240   /* the colour scale under the panels */
#define SCALE_H_PX 12
#define SWATCH_PX 12     /* the masked colour's sample beside it */
#define MAX_PAGE_PX 16384

static double line_px(double text_px) { return LINE_SPACING * text_px; }

/* ---- The tokens as drawn ------------------------------------------------------ */

/* Token text that would not show on the picture, and what stands for it. */
static const struct {
    const char *text, *symbol, *meaning;
} visible[] = {{" ", "\u2423", "a space"}, {"\n", "\u21b5", "a line break"}, {"\t", "\u21e5", "a tab"},
               {"", "\u2205", "padding"}};
#define N_VISIBLE (int)(sizeof visible / sizeof *visible)

/* Token t as drawn: its text, or its symbol when it would not show; another
 * control character as U+00B7 (a middle dot). Returns which symbol (an index
 * of `visible`), N_VISIBLE for the text itself or a dot. */
static int token_label(const char *token, char *buf, size_t cap) {
    for (int k = 0; k < N_VISIBLE; k++)
        if (strcmp(token, visible[k].text) == 0) {
            snprintf(buf, cap, "%s", visible[k].symbol);
            return k;
        }
    bool control = false;
    for (const unsigned char *p = (const unsigned char *)token; *p; p++) control |= *p < 0x20 || *p == 0x7f;
    snprintf(buf, cap, "%s", control ? "\u00b7" : token);
    return N_VISIBLE;
}

/* ---- Layout -------------------------------------------------------------------- */

typedef struct plan {
    const nn_attention_map *maps;
    int n_maps, T, columns; /* panels per row: the most heads of a layer */
    const char *const *tokens;
    int cell, map;          /* a cell's side, a map's side */
    int stride;             /* every stride-th token is written */
    double label_px, label_w; /* the tokens' height, the widest drawn */
    bool rotated;           /* the keys' tokens written upwards (too wide for their columns) */
    double key_band;        /* the keys' tokens' band under a map */
    int panel_w, panel_h;   /* a panel with its title and tokens, without the gaps */
    int width, height, left, top; /* the page; the first panel's top left corner */
    bool any_causal;
    char title[96];
    char subtitle[3][512];  /* "" for none */
} plan;

static int make_plan(const char *path, const nn_attention_map *maps, int n_maps, const char *const *tokens,
                     const char *name, plan *p) {
    memset(p, 0, sizeof *p);
    if (n_maps < 1) return nn_error("%s: no attention layer: nothing to draw", path);
    int T = maps[0].T;
    if (T < 1 || T > NN_ATTENTION_MAX_DRAWN)
        return nn_error("%s: %d positions: an attention picture shows 1 to %d", path, T, NN_ATTENTION_MAX_DRAWN);
    for (int a = 0; a < n_maps; a++) {
        if (maps[a].T != T || maps[a].heads < 1 || !maps[a].weights)
            return nn_error("%s: attention layer %d has %d heads over %d positions (layer 1: %d positions)", path,
                            a + 1, maps[a].heads, maps[a].T, T);
        for (size_t e = 0; e < (size_t)maps[a].heads * T * T; e++)
            if (!(maps[a].weights[e] >= 0.0f && maps[a].weights[e] <= 1.0f))
                return nn_error("%s: attention layer %d has a weight %g outside [0, 1]", path, a + 1,
                                (double)maps[a].weights[e]);
        if (maps[a].heads > p->columns) p->columns = maps[a].heads;
        p->any_causal |= maps[a].causal;
    }
    p->maps = maps, p->n_maps = n_maps, p->T = T, p->tokens = tokens;

    /* Maps of about 320 px (240 with many heads) in cells of whole pixels;
     * up to half as large again where that gives every token room to be
     * written. */
    int target = p->columns <= 4 ? 320 : 240;
    p->cell = target / T;
    if (p->cell < LABEL_CELL_PX && T * LABEL_CELL_PX <= target * 3 / 2) p->cell = LABEL_CELL_PX;
    if (p->cell > CELL_MAX_PX) p->cell = CELL_MAX_PX;
    if (p->cell < CELL_MIN_PX) p->cell = CELL_MIN_PX;
    p->map = T * p->cell;
    /* The tokens as large as a cell holds them; in small cells every
     * stride-th only, so that they do not overlap. */
    p->label_px = fmin(fmax(0.8 * p->cell, LABEL_MIN_PX), LABEL_MAX_PX);
    p->stride = (int)ceil(1.1 * p->label_px / p->cell);
    bool used[N_VISIBLE + 1] = {false};
    char buf[64];
    for (int t = 0; t < T; t += p->stride) {
        used[token_label(tokens[t], buf, sizeof buf)] = true;
        p->label_w = fmax(p->label_w, report_text_width_px(buf, strlen(buf), p->label_px));
    }
    p->rotated = p->label_w > p->stride * p->cell;
    p->key_band = LABEL_GAP_PX + (p->rotated ? p->label_w : line_px(p->label_px));
    p->panel_w = (int)ceil(p->label_w + LABEL_GAP_PX + p->map);
    p->panel_h = (int)ceil(line_px(PANEL_TITLE_PX) + p->map + p->key_band);

    snprintf(p->title, sizeof p->title, "Attention weights: %d layer%s, %d token%s", n_maps, n_maps == 1 ? "" : "s",
             T, T == 1 ? "" : "s");
    snprintf(p->subtitle[0], sizeof p->subtitle[0], "%s", name ? name : "");
    snprintf(p->subtitle[1], sizeof p->subtitle[1],
             "row: a query position; column: the key position it attends to; each row sums to 1");
    size_t pos = 0;
    char *legend = p->subtitle[2];
    if (p->stride > 1)
        pos += (size_t)snprintf(legend, sizeof p->subtitle[2], "every %d%s token written", p->stride,
                                p->stride == 2 ? "nd" : p->stride == 3 ? "rd" : "th");
    for (int k = 0; k < N_VISIBLE && pos < sizeof p->subtitle[2]; k++)
        if (used[k])
            pos += (size_t)snprintf(legend + pos, sizeof p->subtitle[2] - pos, "%s%s %s", pos ? "; " : "",
                                    visible[k].symbol, visible[k].meaning);

    double titles_w = report_text_width_px(p->title, strlen(p->title), TITLE_PX), titles_h = line_px(TITLE_PX);
    for (int i = 0; i < 3; i++)
        if (p->subtitle[i][0]) {
            titles_w = fmax(titles_w, report_text_width_px(p->subtitle[i], strlen(p->subtitle[i]), SUBTITLE_PX));
            titles_h += line_px(SUBTITLE_PX);
        }
    double grid_w = (double)p->columns * p->panel_w + (p->columns - 1) * PANEL_GAP_X_PX;
    double grid_h = (double)n_maps * p->panel_h + (n_maps - 1) * PANEL_GAP_Y_PX;
    double scale_w = SCALE_W_PX + 2 * LABEL_GAP_PX + report_text_width_px("weight (square-root scale)", 26, SUBTITLE_PX) +
                     GAP_PX + SWATCH_PX + LABEL_GAP_PX + report_text_width_px("masked (a later key)", 20, SUBTITLE_PX);
    double width = 2 * MARGIN_PX + fmax(fmax(grid_w, titles_w), scale_w);
    double height = MARGIN_PX + titles_h + GAP_PX + grid_h + GAP_PX + SCALE_H_PX + 2 + line_px(SUBTITLE_PX) + MARGIN_PX;
    if (width > MAX_PAGE_PX || height > MAX_PAGE_PX)
        return nn_error("%s: %d layers of %d heads over %d tokens make a %.0fx%.0f px page (at most %d on a side)",
                        path, n_maps, p->columns, T, width, height, MAX_PAGE_PX);
    p->width = (int)ceil(width);
    p->height = (int)ceil(height);
    p->left = (int)round((p->width - grid_w) / 2);
    p->top = (int)ceil(MARGIN_PX + titles_h + GAP_PX);
    return 0;
}

/* ---- Drawing -------------------------------------------------------------------- */

/* cmap0: white page, black text, grey frames and subtitle, light grey
 * masked cells; cmap1: the confusion matrix's shade. */
static void set_colours(const void *user) {
    (void)user;
    PLINT r0[N_COLOURS] = {255, 0, 120, 70, 222}, g0[N_COLOURS] = {255, 0, 120, 70, 222},
          b0[N_COLOURS] = {255, 0, 120, 70, 222};
    plscmap0(r0, g0, b0, N_COLOURS);
    nn_plot_confusion_shade_cmap1();
}

/* Text text_px high at (x, y) in pixels from the page's top left, y its
 * middle; going right, or up when `up`; just: 0 starts at x, 0.5 centres, 1
 * ends there. */
static void text_at(const plan *p, double x, double y, double text_px, bool up, double just, const char *s) {
    char *text = report_pl_text(s);
    plschr(text_px / REPORT_PX_PER_MM, 1.0);
    plptex(x, p->height - y, up ? 0 : 1, up ? 1 : 0, just, text);
    free(text);
}

/* A rectangle in page pixels (y down): a shade level, or colour 0 slot col
 * when level < 0. */
static void fill_rect(const plan *p, double x0, double x1, double y_top, double y_bottom, int level, int col) {
    PLFLT x[4] = {x0, x1, x1, x0}, y[4] = {p->height - y_bottom, p->height - y_bottom, p->height - y_top,
                                           p->height - y_top};
    if (level >= 0) plcol1((double)level / (NN_CONFUSION_LEVELS - 1));
    else plcol0(col);
    plfill(4, x, y);
}

static void frame(const plan *p, double x0, double x1, double y_top, double y_bottom) {
    PLFLT x[5] = {x0, x1, x1, x0, x0}, y[5] = {p->height - y_bottom, p->height - y_bottom, p->height - y_top,
                                               p->height - y_top, p->height - y_bottom};
    plline(5, x, y);
}

/* One head's map with its top left corner at (x0, y0): the masked part of
 * a row in one piece, its seen keys a rectangle per run of one shade (a
 * long prompt's map stays a few thousand rectangles). */
static void draw_map(const plan *p, const float *P, bool causal, double x0, double y0) {
    int T = p->T, c = p->cell;
    for (int i = 0; i < T && !report_aborted(); i++) {
        const float *row = P + (size_t)i * T;
        double top = y0 + (double)i * c;
        int seen = causal ? i + 1 : T;
        for (int j = 0, end; j < seen; j = end) {
            int level = nn_plot_confusion_level(row[j]);
            for (end = j + 1; end < seen && nn_plot_confusion_level(row[end]) == level;) end++;
            fill_rect(p, x0 + (double)j * c, x0 + (double)end * c, top, top + c, level, 0);
        }
        if (seen < T) fill_rect(p, x0 + (double)seen * c, x0 + (double)T * c, top, top + c, -1, COL_MASKED);
    }
    plcol0(COL_FRAME);
    frame(p, x0, x0 + p->map, y0, y0 + p->map);
}

/* The tokens down the left side (queries) and along the bottom (keys). */
static void draw_tokens(const plan *p, double x0, double y0) {
    char buf[64];
    plcol0(COL_FG);
    for (int t = 0; t < p->T; t += p->stride) {
        token_label(p->tokens[t], buf, sizeof buf);
        double mid = (t + 0.5) * p->cell;
        text_at(p, x0 - LABEL_GAP_PX, y0 + mid, p->label_px, false, 1.0, buf);
        double below = y0 + p->map + LABEL_GAP_PX;
        if (p->rotated) text_at(p, x0 + mid, below, p->label_px, true, 1.0, buf);
        else text_at(p, x0 + mid, below + 0.5 * line_px(p->label_px), p->label_px, false, 0.5, buf);
    }
}

static void draw_panels(const plan *p) {
    char title[64];
    for (int a = 0; a < p->n_maps && !report_aborted(); a++)
        for (int h = 0; h < p->maps[a].heads; h++) {
            double px = p->left + (double)h * (p->panel_w + PANEL_GAP_X_PX);
            double py = p->top + (double)a * (p->panel_h + PANEL_GAP_Y_PX);
            double x0 = px + p->panel_w - p->map, y0 = py + line_px(PANEL_TITLE_PX);
            snprintf(title, sizeof title, "layer %d, head %d", a + 1, h + 1);
            plcol0(COL_FG);
            text_at(p, x0 + p->map / 2.0, py + 0.5 * line_px(PANEL_TITLE_PX), PANEL_TITLE_PX, false, 0.5, title);
            draw_map(p, p->maps[a].weights + (size_t)h * p->T * p->T, p->maps[a].causal, x0, y0);
            draw_tokens(p, x0, y0);
        }
}

static void draw_titles(const plan *p) {
    double y = MARGIN_PX + 0.5 * line_px(TITLE_PX);
    plcol0(COL_FG);
    text_at(p, p->width / 2.0, y, TITLE_PX, false, 0.5, p->title);
    y += 0.5 * line_px(TITLE_PX) + 0.5 * line_px(SUBTITLE_PX);
    plcol0(COL_SUBTITLE);
    for (int i = 0; i < 3; i++)
        if (p->subtitle[i][0]) {
            text_at(p, p->width / 2.0, y, SUBTITLE_PX, false, 0.5, p->subtitle[i]);
            y += line_px(SUBTITLE_PX);
        }
}

/* The shade from weight 0 to 1 under the panels, ticked where the square
 * root spreads it, and the masked colour beside it. */
static void draw_scale(const plan *p) {
    static const struct {
        double weight;
        const char *label;
    } ticks[] = {{0, "0"}, {0.1, "0.1"}, {0.25, "0.25"}, {0.5, "0.5"}, {1, "1"}};
    const char *caption = "weight (square-root scale)", *masked = "masked (a later key)";
    double caption_w = report_text_width_px(caption, strlen(caption), SUBTITLE_PX);
    double masked_w = p->any_causal ? GAP_PX + SWATCH_PX + LABEL_GAP_PX +
                                          report_text_width_px(masked, strlen(masked), SUBTITLE_PX)
                                    : 0;
    double w = SCALE_W_PX, x0 = (p->width - (w + 2 * LABEL_GAP_PX + caption_w + masked_w)) / 2;
    double top = p->top + (double)p->n_maps * p->panel_h + (p->n_maps - 1) * PANEL_GAP_Y_PX + GAP_PX;
    int steps = 64;
    for (int s = 0; s < steps; s++)
        fill_rect(p, x0 + w * s / steps, x0 + w * (s + 1) / steps, top, top + SCALE_H_PX,
                  (int)lround((double)s / (steps - 1) * (NN_CONFUSION_LEVELS - 1)), 0);
    plcol0(COL_FG);
    frame(p, x0, x0 + w, top, top + SCALE_H_PX);
    double y = top + SCALE_H_PX + 2 + 0.5 * line_px(SUBTITLE_PX);
    for (size_t t = 0; t < sizeof ticks / sizeof *ticks; t++) {
        double x = x0 + w * nn_plot_confusion_level(ticks[t].weight) / (NN_CONFUSION_LEVELS - 1);
        PLFLT lx[2] = {x, x}, ly[2] = {p->height - top + 3, p->height - top};
        plline(2, lx, ly);
        bool end = t == 0 || t + 1 == sizeof ticks / sizeof *ticks;
        text_at(p, x, y, SUBTITLE_PX * 0.9, false, t == 0 ? 0.0 : end ? 1.0 : 0.5, ticks[t].label);
    }
    double x = x0 + w + 2 * LABEL_GAP_PX;
    text_at(p, x, top + 0.5 * SCALE_H_PX, SUBTITLE_PX, false, 0.0, caption);
    if (!p->any_causal) return;
    x += caption_w + GAP_PX;
    fill_rect(p, x, x + SWATCH_PX, top, top + SCALE_H_PX, -1, COL_MASKED);
    plcol0(COL_FRAME);
    frame(p, x, x + SWATCH_PX, top, top + SCALE_H_PX);
    plcol0(COL_FG);
    text_at(p, x + SWATCH_PX + LABEL_GAP_PX, top + 0.5 * SCALE_H_PX, SUBTITLE_PX, false, 0.0, masked);
}

static void draw(const void *user) {
    const plan *p = user;
    pladv(0);
    plvpor(0, 1, 0, 1);
    plwind(0, p->width, 0, p->height);
    draw_titles(p);
    draw_panels(p);
    draw_scale(p);
}

int nn_plot_attention(const char *path, const nn_attention_map *maps, int n_maps, const char *const *tokens,
                      const char *name) {
    if (report_image_format(path) < 0) return -1;
    plan p;
    if (make_plan(path, maps, n_maps, tokens, name, &p) != 0) return -1;
    report_picture pic = {.width = p.width, .height = p.height, .set_colours = set_colours, .draw = draw, .user = &p};
    return report_render(path, &pic);
}
