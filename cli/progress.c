/* The progress bar and the epoch line of cli/progress.h. */
#define _POSIX_C_SOURCE 200809L /* fileno */
#include "progress.h"

#include <string.h>
#include <unistd.h>

#include "nn/report.h"

#define BAR_WIDTH 20            /* keeps a typical line under 80 columns */
#define MIN_REDRAW_INTERVAL 0.1 /* seconds: at most ~10 redraws a second */

static FILE *out_of(const progress_bar *p) { return p->out ? p->out : stderr; }

void progress_begin(progress_bar *p, const char *label, long total_steps) {
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total_steps > 0 ? total_steps : 1;
    p->active = p->force_tty || isatty(fileno(out_of(p)));
    p->drawn = false;
    p->t_start = nn_seconds();
    p->t_last_draw = 0;
}

/* Writes a duration as m:ss, or h:mm:ss from an hour up. */
static void format_duration(char *buf, size_t cap, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", s / 60, s % 60);
}

void progress_update(progress_bar *p, long done, double loss, double images_per_sec) {
    if (!p->active) return;
    double t = nn_seconds();
    if (done < 0) done = 0;
    if (done > p->total) done = p->total;
    /* The first and the last state are always shown; the rest is throttled. */
    if (p->drawn && done < p->total && t - p->t_last_draw < MIN_REDRAW_INTERVAL) return;
    p->t_last_draw = t;

    char bar[BAR_WIDTH + 1];
    int filled = (int)(BAR_WIDTH * done / p->total);
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '.', (size_t)(BAR_WIDTH - filled));
    bar[BAR_WIDTH] = '\0';

    char eta[32] = "--:--";
    double elapsed = t - p->t_start;
    if (done > 0) format_duration(eta, sizeof eta, elapsed / (double)done * (double)(p->total - done));

    char speed[32] = "";
    if (images_per_sec > 0) snprintf(speed, sizeof speed, "  %.0f img/s", images_per_sec);

    /* \r returns to the line start; ESC[K clears what a longer line left. */
    FILE *out = out_of(p);
    fprintf(out, "\r%s [%s] %ld/%ld  loss %.4f%s  ETA %s\033[K", p->label, bar, done, p->total, loss, speed, eta);
    fflush(out);
    p->drawn = true;
}

void progress_end(progress_bar *p) {
    if (p->active && p->drawn) {
        FILE *out = out_of(p);
        fputs("\r\033[K", out); /* erase the bar: the summary line replaces it */
        fflush(out);
    }
    p->active = false;
    p->drawn = false;
    p->epoch = 0;
}

void progress_train(progress_bar *p, const nn_train_progress *tp) {
    if (p->epoch != tp->epoch) {
        char label[64];
        snprintf(label, sizeof label, "%s %d/%d", tp->label ? tp->label : "epoch", tp->epoch, tp->epochs);
        progress_end(p);
        progress_begin(p, label, tp->batches);
        p->epoch = tp->epoch;
    }
    progress_update(p, tp->batch, tp->loss, tp->images_per_sec);
}

void print_epoch_line(FILE *out, const char *label, int epochs, const nn_history *h, const char *tail) {
    const nn_epoch_metrics *m = &h->epochs[h->n - 1];
    fprintf(out, "%s %2d/%d  train loss %.4f acc %6.2f%%  ", label ? label : "epoch", m->epoch, epochs, m->train_loss,
            100 * m->train_acc);
    if (h->has_val) fprintf(out, "val loss %.4f acc %6.2f%%  ", h->val_loss[h->n - 1], 100 * h->val_acc[h->n - 1]);
    fprintf(out, "test loss %.4f acc %6.2f%%  lr %.3g  %.1f s  %.0f img/s%s\n", m->test_loss, 100 * m->test_acc, m->lr,
            m->seconds, m->images_per_sec, tail ? tail : "");
    fflush(out);
}
