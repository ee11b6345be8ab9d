/* A study's statistics (study_stats.h). */
#include "study_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/core.h"
#include "core/util.h"

int mean_std(const double *v, int n, double *mean, double *std) {
    double s = 0.0, ss = 0.0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], k++;
    *mean = k ? s / k : NAN;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) ss += (v[i] - *mean) * (v[i] - *mean);
    *std = k > 1 ? sqrt(ss / (k - 1)) : NAN;
    return k;
}

void study_summarise(const nn_study_run *runs, int n_runs, int config, double target, study_summary *s) {
    /* per finished run: final, best, best epoch, train, gap, epochs to target, seconds */
    double *v = nn_xmalloc((size_t)7 * (size_t)(n_runs > 0 ? n_runs : 1) * sizeof *v);
    double *fa = v, *ba = v + n_runs, *be = v + 2 * n_runs, *ta = v + 3 * n_runs, *gap = v + 4 * n_runs,
           *tt = v + 5 * n_runs, *sec = v + 6 * n_runs;
    int k = 0, reached = 0;
    memset(s, 0, sizeof *s);
    for (int r = 0; r < n_runs; r++) {
        const nn_study_run *rr = &runs[r];
        if (rr->config != config || !rr->done) continue;
        sec[k] = rr->wall_seconds;
        tt[k] = NAN;
        if (rr->diverged || rr->n == 0) {
            fa[k] = ba[k] = be[k] = ta[k] = gap[k] = NAN;
        } else {
            fa[k] = rr->test_acc[rr->n - 1];
            int best = 0;
            for (int e = 0; e < rr->n; e++) {
                if (rr->test_acc[e] > rr->test_acc[best]) best = e;
                if (!isfinite(tt[k]) && rr->test_acc[e] >= target) tt[k] = e + 1;
            }
            ba[k] = rr->test_acc[best];
            be[k] = best + 1;
            ta[k] = rr->final_train_acc;
            gap[k] = ta[k] - fa[k];
            if (isfinite(tt[k])) reached++;
            s->ok++;
        }
        k++;
    }
    s->runs = k;
    double unused;
    mean_std(fa, k, &s->final_acc[0], &s->final_acc[1]);
    mean_std(ba, k, &s->best_acc[0], &s->best_acc[1]);
    mean_std(be, k, &s->best_epoch, &unused);
    mean_std(ta, k, &s->train_acc, &unused);
    mean_std(gap, k, &s->gap[0], &s->gap[1]);
    mean_std(tt, k, &s->to_target, &unused);
    s->reached = reached;
    mean_std(sec, k, &s->seconds[0], &s->seconds[1]);
    free(v);
}
