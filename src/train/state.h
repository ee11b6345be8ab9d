/* Where a training run stands, and how it is kept in a checkpoint so that a
 * resumed run continues bit for bit: the step counters, the random
 * generators, the running sums of the epoch in progress, the optimiser's
 * moments and the per-epoch history. */
#ifndef NN_TRAIN_STATE_H
#define NN_TRAIN_STATE_H

#include "nn/train.h"

typedef struct train_state {
    int epoch;         /* the epoch in progress (1-based) */
    long batch;        /* batches of it already done */
    long step;         /* updates done in the whole run (the schedule's position) */
    double loss_sum;   /* running sums of the epoch in progress */
    long seen, correct;
    double train_seconds; /* training time of the epoch in progress so far */
    nn_rng loader_rng; /* the shuffling generator as it was when this epoch began (a
                        * language model's: its window sampler's, as it is now) */
    nn_rng dropout_rng;
    nn_rng augment_rng;
    double best;       /* best validation (or test) accuracy so far */
    int since_best;
} train_state;

/* Writes model + optimiser + state + history to path (atomically), and the
 * best weights so far when there is a validation set (best may be NULL:
 * parameters then running statistics, nn_train's snapshot).
 * With weight averaging the model holds the average and raw the weights
 * being trained (else raw is NULL). */
int train_state_save(const char *path, const nn_train_config *cfg, const nn_train_data *data, const nn_model *model, const nn_optim *opt,
                     const train_state *st, const nn_history *hist, bool has_val, const float *best,
                     const float *raw);
/* Restores them from a checkpoint written by train_state_save; the model is
 * built from the file, the optimiser must be initialised with the run's
 * config first (its moments and step count are overwritten). */
int train_state_load(const char *path, nn_model *model, train_state *st, nn_history *hist, int max_epochs,
                     nn_safetensors *file);

/* What train_state_save and train_state_load do beneath a run's own history
 * and settings, for the runs on text (text_run.c): the model, optimiser,
 * state, best epoch, seed and the history as a string (nn.train.history),
 * then the n_more metadata pairs given (settings, data); best holds
 * best_count floats or is NULL. Reading loads the file into *file (freed
 * on failure; the caller frees it after train_state_load_optim), the state
 * and the model; the history stays in the file's metadata. */
int train_state_write(const char *path, const nn_model *model, const nn_optim *opt, const train_state *st,
                      int best_epoch, uint64_t seed, const char *history, const char *const *more_keys,
                      const char *const *more_values, int n_more, const float *best, size_t best_count,
                      const float *raw);
int train_state_read(const char *path, nn_model *model, train_state *st, int *best_epoch, nn_safetensors *file);

/* The histories as nn.train.history keeps them, every number exact: an
 * epoch run's (with validation columns when has_val; parsing fills them when
 * h->val_loss is not NULL) and a language model's evaluations. Parsing
 * fails on malformed text or more than max entries. */
char *train_history_str(const nn_history *h, bool has_val);
int train_history_parse(const char *s, nn_history *h, int max_epochs);
char *train_lm_history_str(const nn_lm_history *h);
int train_lm_history_parse(const char *s, nn_lm_history *h, int max_evals);
/* Restores the optimiser's moments and step count, the best weights (when
 * best is not NULL; best_count floats) and the raw weights under the average (when raw is not
 * NULL). */
int train_state_load_optim(const char *path, const nn_safetensors *file, nn_optim *opt, float *best,
                           size_t best_count, float *raw);

/* The run's settings as checkpoint metadata (config.c): keys[i] = values[i]
 * for i < n, pointing into the buffers (and into data->dir). */
#define TRAIN_CONFIG_MAX_FIELDS 32
typedef struct train_config_strings {
    const char *keys[TRAIN_CONFIG_MAX_FIELDS], *values[TRAIN_CONFIG_MAX_FIELDS];
    char key_buf[TRAIN_CONFIG_MAX_FIELDS][40], value_buf[TRAIN_CONFIG_MAX_FIELDS][48];
    int n;
} train_config_strings;
int train_config_meta(const nn_train_config *cfg, const nn_train_data *data, train_config_strings *out);
/* 0 when the checkpoint at path was written with cfg's settings and data's
 * source; else -1 with an error naming the first setting that differs. */
int train_config_check(const char *path, const nn_train_config *cfg, const nn_train_data *data);

#endif
