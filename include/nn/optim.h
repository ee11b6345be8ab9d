/* Optimisers and learning-rate schedules. Every optimiser updates the whole
 * contiguous parameter buffer of an nn_params in one loop; its moments live in
 * buffers of the same layout.
 *
 * Weight decay, two kinds (Loshchilov & Hutter, "Decoupled Weight Decay
 * Regularization"):
 *   sgd, momentum, nesterov, adam:  L2 penalty, g <- g + wd * w, before the update
 *                                   (so Adam rescales it like any gradient)
 *   adamw:                          decoupled, w <- w - lr * wd * w, beside the update
 * Only parameters registered with decay = true (weights; not biases or norm
 * parameters) are decayed. Update rules follow torch.optim exactly, so the
 * tests can compare step for step. */
#ifndef NN_OPTIM_H
#define NN_OPTIM_H

#include "nn/core.h"
#include "nn/api.h"

NN_BEGIN_DECLS

typedef enum nn_optim_kind { NN_OPT_SGD, NN_OPT_MOMENTUM, NN_OPT_NESTEROV, NN_OPT_ADAM, NN_OPT_ADAMW } nn_optim_kind;

typedef struct nn_optim_config {
    nn_optim_kind kind;
    float momentum;     /* momentum / nesterov (0.9 by default) */
    float beta1, beta2; /* adam / adamw (0.9, 0.999) */
    float eps;          /* adam / adamw (1e-8) */
    float weight_decay; /* see above */
} nn_optim_config;

typedef struct nn_optim {
    nn_optim_config cfg;
    nn_params *params;
    float *m;   /* momentum buffer, or Adam's first moment */
    float *v;   /* Adam's second moment */
    long steps; /* updates taken so far */
} nn_optim;

/* Defaults of each kind as in torch.optim (momentum 0.9 for the momentum kinds). */
nn_optim_config nn_optim_defaults(nn_optim_kind kind);
/* A learning rate that trains the course's MNIST models well with this kind:
 * 0.05 for the SGD family, 0.001 for Adam and AdamW. */
float nn_optim_default_lr(nn_optim_kind kind);
void nn_optim_init(nn_optim *o, nn_params *params, const nn_optim_config *cfg);
void nn_optim_free(nn_optim *o);
/* One update with learning rate lr, from the gradients in params->grad. */
void nn_optim_step(nn_optim *o, float lr);

/* "sgd", "momentum", "nesterov", "adam", "adamw" <-> kind; parse returns -1
 * with the error (naming the choices) for an unknown name. */
int nn_optim_parse(const char *name, nn_optim_kind *kind);
const char *nn_optim_name(nn_optim_kind kind);

/* Rescales all gradients so that their global L2 norm is at most max_norm
 * (as torch.nn.utils.clip_grad_norm_). Returns the norm before clipping. */
float nn_clip_grad_norm(nn_params *p, float max_norm);

/* ---- weight averaging ---- */

/* An exponential moving average of the parameters (Polyak averaging), taken
 * after every optimiser step and used in place of the raw weights when the
 * model is evaluated and saved:
 *   avg = d * avg + (1 - d) * w,  d = min(decay, (1 + t) / (10 + t))
 * where t counts the updates so far; the ramp keeps the first steps' random
 * weights from lingering in the average. */
typedef struct nn_ema {
    float decay;
    float *avg;    /* one value per parameter, in the parameter buffer's order */
    size_t count;
    long updates;
} nn_ema;

/* Starts the average at the current weights. */
void nn_ema_init(nn_ema *e, const nn_params *p, float decay);
void nn_ema_free(nn_ema *e);
void nn_ema_update(nn_ema *e, const nn_params *p);
/* Exchanges the average and the weights in place: call once to evaluate or
 * save the average, again to go on training the raw weights. */
void nn_ema_swap(nn_ema *e, nn_params *p);

/* ---- learning-rate schedules ---- */

typedef enum nn_schedule_kind { NN_SCHED_CONST, NN_SCHED_STEP, NN_SCHED_COSINE } nn_schedule_kind;

typedef struct nn_schedule {
    nn_schedule_kind kind;
    float base_lr;
    long warmup;      /* steps of linear warm-up from 0 to base_lr */
    long total_steps; /* cosine: steps until the minimum is reached */
    long step_size;   /* step: multiply by gamma every step_size steps (after warm-up) */
    float gamma;
    float min_lr; /* cosine floor */
} nn_schedule;

/* The learning rate for update number `step` (0-based):
 *   warm-up (step < warmup):  base_lr * (step + 1) / warmup
 *   const:                    base_lr
 *   step:                     base_lr * gamma ^ floor((step - warmup) / step_size)
 *   cosine:                   min_lr + (base_lr - min_lr) (1 + cos(pi t)) / 2,
 *                             t = (step - warmup) / (total_steps - warmup), clamped to [0, 1] */
float nn_schedule_lr(const nn_schedule *s, long step);
/* "const", "step", "cosine" <-> kind; parse returns -1 with the error for an
 * unknown name. */
int nn_schedule_parse(const char *name, nn_schedule_kind *kind);
const char *nn_schedule_name(nn_schedule_kind kind);

NN_END_DECLS

#endif
