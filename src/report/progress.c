/* A one-line progress bar for terminals. Off a terminal (a log file, a pipe)
 * it stays silent: there the caller's one line per epoch is the record. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, fileno */
#include "nn/report.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 20 /* keeps a typical line under 80 columns */
#define MIN_REDRAW_INTERVAL 0.1 /* seconds: at most ~10 redraws a second */

double nn_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static FILE *out_of(const nn_progress *p) { return p->out ? p->out : stderr; }

void nn_progress_begin(nn_progress *p, const char *label, long total_steps) {
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total_steps > 0 ? total_steps : 1;
    p->active = p->force_tty || isatty(fileno(out_of(p)));
    p->drawn = 0;
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

void nn_progress_update(nn_progress *p, long done, double loss, double images_per_sec) {
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
    fprintf(out, "\r%s [%s] %ld/%ld  loss %.4f%s  ETA %s\033[K", p->label, bar, done, p->total,
            loss, speed, eta);
    fflush(out);
    p->drawn = 1;
}

void nn_progress_end(nn_progress *p) {
    if (p->active && p->drawn) {
        FILE *out = out_of(p);
        fputs("\r\033[K", out); /* erase the bar: the caller's summary line replaces it */
        fflush(out);
    }
    p->active = 0;
    p->drawn = 0;
}
