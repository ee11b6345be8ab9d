/* A study: several configurations trained the same way, each with several
 * seeds (what `nn experiment` runs). The study is data (a list of named
 * training configurations, the seeds); nn_study_run_all trains every
 * configuration x seed on the same data and collects each run's history.
 * What is shown or written about it is the program's. */
#ifndef NN_STUDY_H
#define NN_STUDY_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "nn/train.h"
#include "nn/api.h"

NN_BEGIN_DECLS

/* One configuration: a name and the settings of its runs (spec, loss,
 * optimiser, schedule, epochs, ...). Each run gets its own seed; the
 * callbacks, label and stop flag come from nn_study_run_all's caller. */
typedef struct nn_study_config {
    const char *name;
    nn_train_config cfg;
} nn_study_config;

/* One run of a study: its per-epoch history (accuracies as fractions) and
 * the exact final train accuracy. */
typedef struct nn_study_run {
    int config;    /* index into the study's configurations */
    uint64_t seed;
    bool done, diverged;
    int n; /* epochs completed */
    double *train_acc, *test_acc, *train_loss, *test_loss, *lr, *seconds; /* n values each */
    double final_train_acc; /* evaluation mode, whole training set; NaN if diverged */
    double wall_seconds;    /* nn_train's */
} nn_study_run;

typedef struct nn_study {
    const nn_study_config *configs;
    int n_configs;
    int seeds;           /* runs per configuration, with seeds first_seed, first_seed + 1, ... */
    uint64_t first_seed;
    volatile sig_atomic_t *stop; /* as nn_train_config.stop; may be NULL */
    /* Called before each run with its index (configuration-major) and the
     * run's config, to set its label and callbacks (cfg->on_epoch,
     * cfg->on_progress, cfg->user). May be NULL. */
    void (*on_run_start)(void *user, int run, nn_train_config *cfg);
    /* Called after each finished run (a diverged one included: status
     * NN_TRAIN_DIVERGED, its error still set) with all the runs; non-zero
     * stops the study (the callback sets the error). May be NULL. */
    int (*on_run_end)(void *user, int run, const nn_study_run *runs, nn_train_status status);
    void *user;
} nn_study;

/* Trains every configuration with every seed, configuration after
 * configuration, filling runs[0 .. n_configs * seeds). A run whose loss
 * diverges is a result (diverged = true), not an error. Returns 0, or -1
 * with the error when a run fails otherwise or is stopped, or a callback
 * fails; the runs before it are done. Writes nothing to the terminal. */
int nn_study_run_all(const nn_study *s, const nn_train_data *data, nn_study_run *runs);
/* Frees the histories of runs[0 .. n) and zeroes them. */
void nn_study_runs_free(nn_study_run *runs, int n);

NN_END_DECLS

#endif
