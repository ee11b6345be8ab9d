/* Learning-rate schedules: constant, step decay and cosine, each after an
 * optional linear warm-up. The formulas are in nn/optim.h. */
#include <math.h>
#include <string.h>

#include "nn/error.h"
#include "nn/optim.h"

static const char *const schedule_names[] = {"const", "step", "cosine"};

int nn_schedule_parse(const char *name, nn_schedule_kind *kind) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, schedule_names[i]) == 0) {
            *kind = (nn_schedule_kind)i;
            return 0;
        }
    return nn_error("unknown learning-rate schedule '%s' (one of: const, step, cosine)", name);
}

const char *nn_schedule_name(nn_schedule_kind kind) { return schedule_names[kind]; }

float nn_schedule_lr(const nn_schedule *s, long step) {
    if (step < s->warmup) return s->base_lr * (float)(step + 1) / (float)s->warmup;
    long t = step - s->warmup;
    switch (s->kind) {
    case NN_SCHED_STEP:
        return s->base_lr * powf(s->gamma, (float)(s->step_size > 0 ? t / s->step_size : 0));
    case NN_SCHED_COSINE: {
        long span = s->total_steps - s->warmup;
        double frac = span > 0 ? (double)t / (double)span : 1.0;
        if (frac > 1.0) frac = 1.0;
        return s->min_lr + (s->base_lr - s->min_lr) * (float)(0.5 * (1.0 + cos(M_PI * frac)));
    }
    default:
        return s->base_lr;
    }
}
