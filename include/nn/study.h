/* The statistics of a study: several configurations trained the same way
 * with several seeds each (what `nn experiment` runs), summarised per
 * configuration as mean and sample standard deviation over the seeds. */
#ifndef NN_STUDY_H
#define NN_STUDY_H

#include <stdbool.h>

#include "nn/api.h"

NN_BEGIN_DECLS

#define NN_STUDY_MAX_SEEDS 100

/* One run of a study: its per-epoch history (fractions) and the exact final
 * train accuracy. */
typedef struct nn_study_run {
    int config, seed;
    bool done, diverged;
    int n; /* epochs completed */
    double *train_acc, *test_acc, *train_loss, *test_loss, *lr, *seconds;
    double final_train_acc; /* evaluation mode, whole training set; NaN if diverged */
    double wall_seconds;
} nn_study_run;

/* One configuration over its finished runs. [0] is the mean, [1] the sample
 * standard deviation (NaN with fewer than two runs); a diverged run counts
 * in `runs` but not in the accuracies. */
typedef struct nn_study_summary {
    int runs, ok;         /* finished runs, runs that did not diverge */
    double final_acc[2];  /* last epoch's test accuracy */
    double best_acc[2];   /* best epoch's */
    double best_epoch;    /* mean, 1-based */
    double train_acc;     /* mean final train accuracy (evaluation mode) */
    double gap[2];        /* train - test */
    double to_target;     /* mean epochs to the target over the runs that reached it */
    int reached;          /* runs that reached the target */
    double seconds[2];
} nn_study_summary;

/* Mean and sample standard deviation of the finite values among v[0..n)
 * (mean NaN when there are none, std NaN with fewer than two). Returns how
 * many were used. */
int nn_mean_std(const double *v, int n, double *mean, double *std);

/* Summarises the finished runs of configuration `config` among runs[0..n);
 * target is the test accuracy (a fraction) for the epochs-to-target column.
 * At most NN_STUDY_MAX_SEEDS runs of one configuration. */
void nn_study_summarise(const nn_study_run *runs, int n_runs, int config, double target, nn_study_summary *s);

NN_END_DECLS

#endif
