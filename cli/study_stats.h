/* The statistics nn experiment reports about a study (nn/study.h): per
 * configuration, mean and sample standard deviation over the seeds. */
#ifndef NN_CLI_STUDY_STATS_H
#define NN_CLI_STUDY_STATS_H

#include "nn/study.h"

/* One configuration over its finished runs. [0] is the mean, [1] the sample
 * standard deviation (NaN with fewer than two runs); a diverged run counts
 * in `runs` but not in the accuracies. */
typedef struct study_summary {
    int runs, ok;         /* finished runs, runs that did not diverge */
    double final_acc[2];  /* last epoch's test accuracy */
    double best_acc[2];   /* best epoch's */
    double best_epoch;    /* mean, 1-based */
    double train_acc;     /* mean final train accuracy (evaluation mode) */
    double gap[2];        /* train - test */
    double to_target;     /* mean epochs to the target over the runs that reached it */
    int reached;          /* runs that reached the target */
    double seconds[2];
} study_summary;

/* Mean and sample standard deviation of the finite values among v[0..n)
 * (mean NaN when there are none, std NaN with fewer than two). Returns how
 * many were used. */
int mean_std(const double *v, int n, double *mean, double *std);

/* Summarises the finished runs of configuration `config` among runs[0..n);
 * target is the test accuracy (a fraction) for the epochs-to-target column. */
void study_summarise(const nn_study_run *runs, int n_runs, int config, double target, study_summary *s);

#endif
