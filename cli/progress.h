/* What the nn program shows while a model trains: a one-line progress bar,
 * redrawn in place on a terminal, and one line per epoch. libnn prints
 * nothing; nn_train's callbacks (on_progress, on_epoch) drive these. */
#ifndef NN_CLI_PROGRESS_H
#define NN_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

#include "nn/train.h"

/* The bar is redrawn with '\r' at most ~10 times a second when `out` is a
 * terminal; otherwise it prints nothing (the epoch lines are the record).
 *     progress_bar p = {0};              // out = stderr
 *     progress_begin(&p, "epoch 1/10", n_batches);
 *     ... progress_update(&p, batch + 1, loss, images_per_sec); ...
 *     progress_end(&p);                  // erases the bar
 * then print the epoch's line. */
typedef struct progress_bar {
    FILE *out;       /* NULL = stderr */
    bool force_tty;  /* draw even when `out` is not a terminal (tests) */
    /* state, set by progress_begin */
    char label[64];
    long total;
    bool active;     /* drawing enabled for this run */
    bool drawn;      /* something is on the line that end() must erase */
    int epoch;       /* progress_train: the epoch the bar shows */
    double t_start, t_last_draw;
} progress_bar;

void progress_begin(progress_bar *p, const char *label, long total_steps);
/* `done` steps of `total_steps` are finished; images_per_sec <= 0 hides it. */
void progress_update(progress_bar *p, long done, double loss, double images_per_sec);
void progress_end(progress_bar *p);

/* nn_train's on_progress for a bar in *p: a new bar per epoch, labelled
 * "LABEL E/N" (LABEL is the config's label, "epoch" when it has none). */
void progress_train(progress_bar *p, const nn_train_progress *tp);

/* The line of the history's last epoch, the one both nn train and nn
 * experiment print:
 *   LABEL  E/N  train loss L acc A%  [val loss L acc A%  ]test loss L acc A%  lr X  S s  R img/s[TAIL]
 * tail (may be NULL) is appended before the newline. */
void print_epoch_line(FILE *out, const char *label, int epochs, const nn_history *h, const char *tail);

#endif
