/* The training loop shared by `nn train` and `nn experiment`: mini-batch
 * training of a model (any layer stack) on an image-classification dataset,
 * with per-epoch evaluation, metrics and checkpoints. */
#ifndef NN_TRAIN_H
#define NN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "nn/augment.h"
#include "nn/data.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/precision.h"
#include "nn/report.h"
#include "nn/text.h"
#include "nn/api.h"

NN_BEGIN_DECLS

typedef enum nn_loss_kind { NN_LOSS_CE, NN_LOSS_MSE } nn_loss_kind;

/* "ce", "mse" <-> kind; parse returns -1 with the error for an unknown name. */
int nn_loss_parse(const char *name, nn_loss_kind *kind);
const char *nn_loss_name(nn_loss_kind kind);

/* Which next-token targets a language model's loss counts: every one, or
 * (lines "PROMPT=ANSWER", nn/seq2seq.h) only each line's answer and the end
 * of the line, as minGPT's adder masks the prompt out (nn_answer_mask). */
typedef enum nn_lm_targets { NN_TARGETS_ALL, NN_TARGETS_ANSWER } nn_lm_targets;

/* "all", "answer" <-> targets; parse returns -1 with the error for an unknown name. */
int nn_lm_targets_parse(const char *name, nn_lm_targets *targets);
const char *nn_lm_targets_name(nn_lm_targets targets);

typedef struct nn_history nn_history;       /* below */
typedef struct nn_lm_history nn_lm_history; /* below */

/* Where a run stands after an optimiser step, for on_progress. */
typedef struct nn_train_progress {
    const char *label;     /* the config's label (may be NULL) */
    int epoch, epochs;     /* the epoch in progress (1-based) of the run's epochs */
    long batch, batches;   /* batches of this epoch done, and per epoch */
    long step;             /* optimiser steps taken in the whole run (1, 2, ...) */
    double loss;           /* the last batch's mean loss */
    double images_per_sec; /* this epoch's training speed so far */
} nn_train_progress;

typedef struct nn_train_config {
    /* The model, e.g. "flatten linear(1024) relu linear(10)" (nn/model.h).
     * NULL when the caller passes nn_train a model it already planned
     * (nn_model_plan) for the data, e.g. to print its summary first: the
     * spec is then not parsed again. */
    const char *spec;
    nn_loss_kind loss; /* mse: mean squared error of softmax(logits) against one-hot targets */
    float label_smoothing;
    nn_optim_config opt;
    nn_schedule sched; /* base_lr is the learning rate; total_steps is filled in, and
                        * a step schedule's step_size when it is 0 (a third of the run) */
    float clip;        /* max global gradient norm; 0 = no clipping */
    float ema;         /* decay of the weights' moving average that is evaluated
                        * and saved instead of the raw weights; 0 = off */
    nn_augment augment; /* random distortions of the training images; zero = none */
    int batch_size, epochs;
    uint64_t seed;
    nn_precision precision; /* of the linear layers' products (nn/precision.h); the
                             * process's setting for the run, put back after it */
    int early_stop; /* stop after this many epochs without validation improvement; 0 = off */
    const char *save_path, *metrics_path; /* each may be NULL */
    const char *graph_path; /* Graphviz DOT of the first step's graph; may be NULL */
    const char *label;  /* the run's name, handed back in nn_train_progress (e.g. "epoch", "adamw seed 2") */
    /* Resuming: a checkpoint written by an earlier run with the same config
     * (its model, optimiser state, position, generators and history are
     * restored, and the run continues bit for bit). The settings above are
     * stored in every checkpoint field by field: nn_train_settings_read
     * gives them back, and a setting that differs from the file's is an error
     * naming it. NULL = a fresh run. */
    const char *resume_path;
    /* When set to non-zero (e.g. by a SIGINT handler) the run stops after the
     * current step, writes a resumable checkpoint to save_path if there is
     * one, and returns NN_TRAIN_INTERRUPTED with an error saying so. May be NULL. */
    volatile sig_atomic_t *stop;
    /* nn_train writes nothing to the terminal: what a program shows comes
     * from these callbacks (each may be NULL), all given `user`.
     * on_progress: after every optimiser step (e.g. to draw a progress bar).
     * on_epoch: after every epoch's evaluation and checkpoint, with the
     * history so far (the epoch just finished is h->epochs[h->n - 1]); e.g.
     * to print the epoch's line or draw the curves. Non-zero stops the run as
     * NN_TRAIN_FAILED (the callback sets the error). */
    void (*on_progress)(void *user, const nn_train_progress *p);
    int (*on_epoch)(void *user, const nn_history *h);
    void *user;
    /* A language model's run (nn_train_lm) goes by steps, not epochs: steps
     * batches of batch_size random windows of context tokens, and every
     * eval_every steps (and after the last) the loss on eval_windows fixed
     * validation windows (0: all that fit side by side), then on_eval (may
     * be NULL; e.g. to print the line and a sample of the model's text;
     * non-zero stops the run as NN_TRAIN_FAILED). */
    long steps;
    int context, eval_every, eval_windows;
    /* NN_TARGETS_ANSWER: the loss, the training and validation loss and
     * next-token accuracy count only the targets of each line's answer and
     * its end, in windows that hold the line's whole prompt
     * (nn_answer_needs; the data must be lines that each hold
     * NN_ANSWER_SEP, '=': an error otherwise). NN_TARGETS_ALL (the
     * defaults'): every target. */
    nn_lm_targets targets;
    int (*on_eval)(void *user, const nn_lm_history *h, nn_model *model);
    /* A text run's data as the program named it (a file or folder), kept
     * in its checkpoints (nn.config.data) so that a resume finds it again;
     * may be NULL. An image run's comes from nn_train_data.dir. */
    const char *data_path;
} nn_train_config;

/* The defaults of a run: cross-entropy, SGD with Nesterov momentum 0.9 at
 * nn_optim_default_lr, cosine schedule (a step schedule's factor 0.1),
 * batch 128, 6 epochs, seed 1, fp32; no spec, paths or callbacks. */
nn_train_config nn_train_config_defaults(void);

/* The data of a run: training set, optional validation slice, test set, and
 * the input normalisation (computed on the training set). */
typedef struct nn_train_data {
    nn_dataset train, val, test;
    bool has_val;
    float mean, std;
    /* What the images are: channels per pixel (the model's input is
     * [channels, rows, cols]) and the number of classes of the labels. */
    int channels, classes;
    /* Where it came from (nn_train_data_load's arguments), kept in checkpoints. */
    const char *dir;
    int train_limit;
    float val_split;
} nn_train_data;

/* What a checkpoint written by nn_train says about the run that wrote it. */
typedef struct nn_train_settings {
    nn_train_config cfg;     /* the stored settings; paths, callbacks and label are NULL */
    char *spec;              /* cfg.spec points here */
    char *data_dir;          /* the data's folder as the run named it */
    int train_limit;         /* 0 = all the training images */
    float val_split;
    bool text;               /* a text run's (nn_train_settings_read_text) */
} nn_train_settings;

/* Reads them from a resumable checkpoint; -1 with the error for a file that
 * is not one (that of a finished run with a validation set, another
 * program's, an older release's). */
int nn_train_settings_read(nn_train_settings *s, const char *path);
/* Adds what a text run's checkpoint (nn_train_lm, nn_train_classify_text)
 * says beyond that, to s as nn_train_settings_read filled it from the same
 * file: cfg.steps, context, eval_every and eval_windows, with s->text set
 * (data_dir is then the data's file or folder). An image run's checkpoint
 * leaves s as it is. -1 with the error for a malformed text field. */
int nn_train_settings_read_text(nn_train_settings *s, const char *path);
void nn_train_settings_free(nn_train_settings *s);

struct nn_history { /* the run's epochs so far */
    int n;                  /* epochs run */
    nn_epoch_metrics *epochs;
    double *val_loss, *val_acc; /* per epoch, when there is a validation set */
    bool has_val;           /* whether val_loss/val_acc hold values */
    int best_epoch;         /* by validation accuracy if any, else test accuracy (1-based) */
    bool stopped_early;
};

/* How a run ended. Failures are negative, and each sets the error. */
typedef enum nn_train_status {
    NN_TRAIN_FINISHED = 0,      /* all the epochs ran */
    NN_TRAIN_STOPPED_EARLY = 1, /* early stopping: no validation improvement for early_stop epochs */
    NN_TRAIN_INTERRUPTED = -1,  /* *cfg->stop was set; save_path holds a resumable checkpoint if given */
    NN_TRAIN_DIVERGED = -2,     /* the loss became NaN or infinite (the error names the step and the
                                 * learning rate); save_path keeps the last good epoch */
    NN_TRAIN_FAILED = -3,       /* bad input or a failed read or write */
} nn_train_status;

/* Trains a freshly initialised model (cfg->seed decides initialisation,
 * shuffling, augmentation and dropout), or resumes one (the file's model must
 * be the run's). The model is cfg->spec for [data->channels, rows, cols]
 * images and data->classes classes; with cfg->spec NULL, *model comes
 * planned by the caller (nn_model_plan for that input and classes) and is
 * built here. Returns how the run ended (failures, negative, set the error:
 * a failed write, a loss that became NaN, a stop request). The model is left
 * with the final weights, or with the best ones by validation accuracy when
 * there is a validation set; save_path then holds the same. While running,
 * save_path holds a resumable checkpoint after every epoch. Whatever the
 * status, nn_model_free(model) releases it. Writes nothing to the terminal. */
nn_train_status nn_train(const nn_train_config *cfg, const nn_train_data *data, nn_model *model, nn_history *hist);
void nn_history_free(nn_history *h);

/* One evaluation of a language model's run. */
typedef struct nn_lm_eval {
    long step;
    double train_loss, train_acc; /* mean next-token loss (nats) and accuracy since the last evaluation */
    double val_loss, val_acc;     /* on the fixed validation windows */
    double lr, seconds, tokens_per_sec;
} nn_lm_eval;

struct nn_lm_history { /* the run's evaluations so far */
    int n;
    nn_lm_eval *evals;
};

/* Trains a language model of data's text (a STREAM or LINES nn_text) by
 * steps (see steps, context, eval_every above): cfg->spec planned with
 * nn_model_plan_text for the vocabulary (or, with spec NULL, *model as the
 * caller planned it), initialised from cfg->seed, which also draws the
 * windows and dropout. clip, ema, opt, sched (over the steps), precision and
 * graph_path (the first step's graph) as nn_train. Every evaluation writes
 * metrics_path's row (the eight columns, with validation loss and accuracy
 * as the test columns and tokens/s as the speed, then step and
 * val_bits_per_char) and save_path: a resumable checkpoint (the model, or
 * its average with ema, with the vocabulary as nn.vocab for nn generate,
 * and the optimiser, the window generator, the position, the history and
 * every setting). resume_path continues such a run bit for bit, as nn_train
 * does; the checkpoint's settings (nn_train_settings_read and
 * nn_train_settings_read_text give them), model and vocabulary
 * (nn_train_text_check) must be the run's, else an error names the first
 * that differs. A stop request writes a checkpoint at the exact step.
 * Writes nothing to the terminal. */
nn_train_status nn_train_lm(const nn_train_config *cfg, const nn_text *data, nn_model *model, nn_lm_history *hist);
void nn_lm_history_free(nn_lm_history *h);

/* Evaluates on a whole dataset without recording gradients; returns the
 * accuracy, and the mean loss in *loss. conf may be NULL. */
double nn_evaluate(nn_model *m, nn_ctx *ctx, const nn_dataset *ds, nn_loss_kind loss_kind, double *loss,
                   nn_confusion *conf);

/* Loads dataset_dir's train and t10k splits, applies train_limit (0 = all)
 * and the validation split (a fraction of the training set, 0 = none), and
 * computes the normalisation. IDX images have one channel and classes
 * 0..NN_DATA_CLASSES-1. */
int nn_train_data_load(nn_train_data *d, const char *dataset_dir, int train_limit, float val_split);
void nn_train_data_free(nn_train_data *d);

/* ---- text classifiers ---- */

/* Trains a text classifier on data (a CLASSES nn_text: one file per class)
 * by cfg->epochs epochs: each epoch the training split's sequences, shuffled
 * by cfg->seed, in padded batches of batch_size (nn_text_batcher) with their
 * lengths and labels; the cross-entropy of each sequence's class scores
 * (label_smoothing applies); clip, opt and sched as nn_train_lm (the
 * schedule spans all the epochs' steps). The model is cfg->spec planned with
 * nn_model_plan_text for the vocabulary and data->n_classes classes (e.g.
 * "embed(32) gru(128) last linear(18)"), or, with spec NULL, *model as the
 * caller planned it; cfg->seed also initialises it and draws dropout. After
 * every epoch the validation split's loss and accuracy go in the history's
 * test columns (there is no separate test set: has_val is false, best_epoch
 * is the epoch of the best validation accuracy), metrics_path gets the row
 * (the eight columns, sequences/s as the speed; seconds from the run's
 * start), save_path a resumable checkpoint (as nn_train_lm's) with metadata
 * nn.vocab (nn_vocab_to_string), nn.text_kind "classes", nn.classes (the
 * class names in label order, joined by "\n": nn_text_classes_join) and
 * nn.text_seed (the seed that chose the validation split:
 * nn_text_load(..., NN_TEXT_CLASSES, seed, &vocab) rebuilds it), then
 * on_epoch is called. The run ends as an image run with a validation split
 * does: the model holds the best epoch's weights (the average's with ema),
 * and save_path the same with that metadata and no training state.
 * resume_path, stop, clip, ema, graph_path as nn_train_lm. Writes nothing
 * to the terminal. */
nn_train_status nn_train_classify_text(const nn_train_config *cfg, const nn_text *data, nn_model *model,
                                       nn_history *hist);

/* 0 when the checkpoint at path was trained on data: the same kind of text,
 * vocabulary (nn.vocab) and, for classes, class names; else -1 with an
 * error saying which differs. */
int nn_train_text_check(const char *path, const nn_text *data);

/* A text classifier on a labelled split (CLASSES), in evaluation mode
 * without gradients, batch_size sequences at a time: returns the accuracy,
 * the mean cross-entropy in *loss (may be NULL); conf (may be NULL) counts
 * every sequence. NaN for an empty split. */
double nn_evaluate_text(nn_model *m, nn_ctx *ctx, const nn_text_split *split, int batch_size, double *loss,
                        nn_confusion *conf);

/* The class names of data joined by "\n" (malloc'd; the caller frees), as
 * a checkpoint's nn.classes holds them. */
char *nn_text_classes_join(const nn_text *data);
/* Splits a checkpoint's nn.classes (joined may be NULL: the key is missing)
 * into `classes` malloc'd names; NULL with the error naming source when it is
 * missing or names another number of classes. */
char **nn_text_classes_split(const char *joined, int classes, const char *source);
void nn_text_classes_free(char **names, int n);

NN_END_DECLS

#endif
