/* Data parallelism for a run's steps: each batch cut into shards, one per
 * thread, each run forward and backward on its own thread, in its own arena,
 * on a replica of the model with gradients of its own (nn/replica.h); then
 * the shards' gradients summed into the model's, each weighted by its share
 * of the loss's terms, so that the step is the whole batch's. Each shard
 * runs single-threaded inside: two threads make two independent halves of
 * the work instead of ~200 parallel regions per step, each split in two and
 * joined by a barrier. The sums differ from the whole batch's in rounding
 * only, and the shards depend on the thread count (as PyTorch's sums do). */
#ifndef NN_TRAIN_SHARDS_H
#define NN_TRAIN_SHARDS_H

#include "nn/model.h"

typedef struct shard {
    nn_model *model;   /* the run's model (shard 0) or &replica */
    nn_model replica;  /* shards 1..: the model with gradients in grad */
    float *grad;
    nn_ctx *ctx;       /* shard 0: the run's */
    nn_rng dropout_rng; /* shards 1..: drawn from the run's generator each step */
    int first, n;      /* the batch's rows it takes */
    nn_tensor *loss;   /* of its rows, in its context */
    long counted;      /* the terms its loss averages */
    long correct;      /* for the caller: e.g. its right guesses */
    double weight;     /* counted's share of all the shards' */
} shard;

typedef struct shards {
    int n; /* 1: the batch is not cut */
    shard *s;
} shards;

/* How many shards a batch of `batch` rows of m is cut into: the thread
 * count, at most one row each; 1 when m is not worth cutting (replica_pays). */
int shards_count(const nn_model *m, int batch);
/* n shards of m's batches; shard 0 runs m in ctx (the run's context). */
void shards_init(shards *sh, nn_model *m, nn_ctx *ctx, int n);
void shards_free(shards *sh);
/* Cuts a batch of `batch` rows among the shards (first, n). */
void shards_cut(shards *sh, int batch);
/* Sets each shard's weight from the terms of its loss (its counted) and
 * returns the whole batch's loss: the weighted sum of the shards'. */
double shards_weigh(shards *sh);
/* The model's gradients := the shards' weighted sum. */
void shards_sum_grads(shards *sh);

#endif
