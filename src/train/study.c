/* A study's run loop (nn/study.h): every configuration x seed through
 * nn_train on the same data, each run's history kept. */
#include "nn/study.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The run's history, copied out of nn_train's. */
static void keep_history(nn_study_run *rr, const nn_history *h, int epochs) {
    double *buf = nn_xcalloc((size_t)6 * (epochs > 0 ? epochs : 1), sizeof *buf);
    rr->train_acc = buf;
    rr->test_acc = buf + epochs;
    rr->train_loss = buf + 2 * epochs;
    rr->test_loss = buf + 3 * epochs;
    rr->lr = buf + 4 * epochs;
    rr->seconds = buf + 5 * epochs;
    rr->n = h->n;
    for (int e = 0; e < h->n; e++) {
        rr->train_acc[e] = h->epochs[e].train_acc;
        rr->test_acc[e] = h->epochs[e].test_acc;
        rr->train_loss[e] = h->epochs[e].train_loss;
        rr->test_loss[e] = h->epochs[e].test_loss;
        rr->lr[e] = h->epochs[e].lr;
        rr->seconds[e] = h->epochs[e].seconds;
    }
}

/* Run number r: configuration c with seed number k. */
static int run_one(const nn_study *s, const nn_train_data *data, nn_ctx *ctx, nn_study_run *runs, int r, int c,
                   int k) {
    nn_study_run *rr = &runs[r];
    rr->config = c;
    rr->seed = s->first_seed + (uint64_t)k;
    nn_train_config cfg = s->configs[c].cfg;
    cfg.seed = rr->seed;
    cfg.stop = s->stop;
    if (s->on_run_start) s->on_run_start(s->user, r, &cfg);
    nn_model m;
    nn_history h;
    double t0 = nn_seconds();
    nn_train_status status = nn_train(&cfg, data, &m, &h);
    rr->wall_seconds = nn_seconds() - t0;
    keep_history(rr, &h, cfg.epochs);
    nn_history_free(&h);
    if (status < 0 && status != NN_TRAIN_DIVERGED) { /* a stop, or a failure that is not the run's own result */
        nn_model_free(&m);
        return -1;
    }
    rr->done = true;
    rr->diverged = status == NN_TRAIN_DIVERGED;
    rr->final_train_acc = rr->diverged ? NAN : nn_evaluate(&m, ctx, &data->train, cfg.loss, NULL, NULL);
    nn_model_free(&m);
    return s->on_run_end && s->on_run_end(s->user, r, runs, status) != 0 ? -1 : 0;
}

int nn_study_run_all(const nn_study *s, const nn_train_data *data, nn_study_run *runs) {
    memset(runs, 0, (size_t)s->n_configs * (size_t)s->seeds * sizeof *runs);
    nn_ctx *ctx = nn_ctx_new(0);
    int rc = 0;
    for (int c = 0, r = 0; c < s->n_configs && rc == 0; c++)
        for (int k = 0; k < s->seeds && rc == 0; k++, r++) rc = run_one(s, data, ctx, runs, r, c, k);
    nn_ctx_free(ctx);
    return rc;
}

void nn_study_runs_free(nn_study_run *runs, int n) {
    for (int r = 0; r < n; r++) {
        free(runs[r].train_acc);
        memset(&runs[r], 0, sizeof runs[r]);
    }
}
