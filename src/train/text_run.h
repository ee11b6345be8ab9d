/* What the two training runs on text share: a language model's by steps
 * (train_lm.c) and a classifier's by epochs (train_classify.c). Setting up
 * (the model planned and built from the seed, or resumed from a checkpoint
 * whose settings, data and vocabulary must be the run's), the optimiser,
 * schedule and weight average, each optimiser step after the loss, the
 * resumable checkpoints, a stop request, and the best weights. The loops,
 * their batches, history and metrics are each run's own. */
#ifndef NN_TRAIN_TEXT_RUN_H
#define NN_TRAIN_TEXT_RUN_H

#include "train/state.h"

typedef struct text_run {
    const nn_train_config *cfg;
    const nn_text *data;
    nn_model *model;
    nn_ctx *ctx;
    nn_optim opt;
    nn_schedule sched;
    /* With weight averaging the average is what is evaluated, kept as best
     * and saved; ema.avg then holds the raw weights (text_run_hold_average). */
    nn_ema ema;
    bool holds_average;
    /* Where the run stands. A language model's run is one epoch of
     * cfg->steps steps: loader_rng is its window sampler's generator as it is
     * now, the sums are since the last evaluation (seen and correct count
     * the targets that count, loss_sum adds each batch's mean loss times
     * its number of them), batch is unused. A
     * classifier's: loader_rng is the batcher's generator as it was when the
     * epoch began, batch the batches of the epoch done. */
    train_state st;
    float *best;          /* with keep_best: the best weights so far (parameters, then running statistics) */
    char *history;        /* a resumed run's nn.train.history, for the caller to parse; NULL otherwise */
    int best_epoch;       /* a resumed run's nn.train.best_epoch */
    bool saved;           /* save_path holds a checkpoint of this run */
    nn_train_status failure; /* what a failed step means */
    nn_precision outer;   /* the process's precision, put back by text_run_end */
} text_run;

/* A run of cfg on data, training *model, not started yet. */
void text_run_init(text_run *r, const nn_train_config *cfg, const nn_text *data, nn_model *model);
/* Sets the run up: the model planned from cfg->spec for the vocabulary and
 * `classes` (or as the caller planned it), then built from cfg->seed, or
 * loaded with its position from cfg->resume_path; the generators in r->st
 * (the caller has set loader_rng to its batches' fresh generator); the
 * optimiser, the schedule over total_steps, the weight average; with
 * keep_best a buffer of best weights. -1 with the error. */
int text_run_start(text_run *r, int classes, long total_steps, bool keep_best);
/* Frees what the run holds (not the model) and puts the precision back. */
void text_run_end(text_run *r);

/* With weight averaging: the average in the model (true) or the raw weights. */
void text_run_hold_average(text_run *r, bool average);

/* One optimiser step on the loss of a batch the caller ran forward in
 * r->ctx: backward (the first step's graph to cfg->graph_path), clip, the
 * scheduled learning rate (*lr), the update, the average; st.step counts
 * it. -1 with the error and r->failure for a loss that is not finite. */
int text_run_step(text_run *r, nn_tensor *loss, double *lr);
/* text_run_step in two parts, for a step whose gradients are made some
 * other way (src/train/shards.h): the scheduled learning rate (*lr), or -1
 * for a loss that is not finite; then, with the gradients in the model's
 * parameters, the rest of the step (the caller draws the first step's
 * graph). */
int text_run_check_loss(text_run *r, double loss, double *lr);
int text_run_update(text_run *r, double lr);

/* A resumable checkpoint at cfg->save_path: the model (the average with
 * weight averaging), optimiser, state st, best_epoch, the history as the
 * caller wrote it, the settings and the data's metadata (vocabulary, kind;
 * a classifier's class names and split seed, a language model's context). */
int text_run_save(text_run *r, const train_state *st, int best_epoch, const char *history);
/* A stop request: the checkpoint of where the run stands, then the error
 * "interrupted at WHERE; ..." (r->failure = NN_TRAIN_INTERRUPTED). Returns -1. */
int text_run_interrupt(text_run *r, int best_epoch, const char *history, const char *where);

/* With keep_best: keep the model's weights (the average with weight
 * averaging) as the best; put the best back into the model and write it to
 * save_path as a finished run's checkpoint (the model and the data's
 * metadata, no training state). */
void text_run_keep_best(text_run *r);
int text_run_finish_best(text_run *r);

#endif
