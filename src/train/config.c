/* The settings of a training run in its checkpoints, one metadata field each
 * ("nn.config.lr" = "0x1.999999999999ap-5", exact), so that a resumed run
 * can rebuild them and a contradicting setting is named, not guessed at.
 * One table lists the fields: writing, reading and comparing all walk it. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "train/state.h"
#include "core/util.h"

typedef enum { F_INT, F_LONG, F_FLOAT, F_U64, F_LOSS, F_OPTIM, F_SCHED, F_PRECISION, F_TARGETS } field_type;

typedef struct field {
    const char *key;  /* after "nn.config." */
    const char *what; /* for messages */
    field_type type;
    size_t offset;    /* in nn_train_config */
} field;

#define AT(member) offsetof(nn_train_config, member)
static const field fields[] = {
    {"loss", "loss", F_LOSS, AT(loss)},
    {"label_smoothing", "label smoothing", F_FLOAT, AT(label_smoothing)},
    {"optimizer", "optimiser", F_OPTIM, AT(opt.kind)},
    {"momentum", "momentum", F_FLOAT, AT(opt.momentum)},
    {"beta1", "Adam beta1", F_FLOAT, AT(opt.beta1)},
    {"beta2", "Adam beta2", F_FLOAT, AT(opt.beta2)},
    {"eps", "Adam epsilon", F_FLOAT, AT(opt.eps)},
    {"weight_decay", "weight decay", F_FLOAT, AT(opt.weight_decay)},
    {"schedule", "learning-rate schedule", F_SCHED, AT(sched.kind)},
    {"lr", "learning rate", F_FLOAT, AT(sched.base_lr)},
    {"warmup", "warm-up steps", F_LONG, AT(sched.warmup)},
    {"step_size", "step schedule's step size", F_LONG, AT(sched.step_size)},
    {"gamma", "step schedule's factor", F_FLOAT, AT(sched.gamma)},
    {"min_lr", "cosine schedule's floor", F_FLOAT, AT(sched.min_lr)},
    {"clip", "gradient clipping", F_FLOAT, AT(clip)},
    {"ema", "weight-average decay", F_FLOAT, AT(ema)},
    {"augment_shift", "augmentation shift", F_FLOAT, AT(augment.shift)},
    {"augment_rotate", "augmentation rotation", F_FLOAT, AT(augment.rotate)},
    {"augment_scale", "augmentation zoom", F_FLOAT, AT(augment.scale)},
    {"batch_size", "batch size", F_INT, AT(batch_size)},
    {"epochs", "number of epochs", F_INT, AT(epochs)},
    {"seed", "seed", F_U64, AT(seed)},
    {"early_stop", "early-stopping patience", F_INT, AT(early_stop)},
    {"precision", "precision", F_PRECISION, AT(precision)},
    {"targets", "language-model targets", F_TARGETS, AT(targets)},
};
#define N_FIELDS ((int)(sizeof fields / sizeof *fields))
#define VALUE_MAX 48

/* The index of name in names[0..n), or -1. */
static int name_index(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

static const char *const loss_names[] = {"ce", "mse"};

int nn_loss_parse(const char *name, nn_loss_kind *kind) {
    int i = name_index(loss_names, 2, name);
    if (i < 0) return nn_error("unknown loss '%s' (one of: ce, mse)", name);
    *kind = (nn_loss_kind)i;
    return 0;
}

const char *nn_loss_name(nn_loss_kind kind) { return loss_names[kind == NN_LOSS_MSE]; }

static const char *const targets_names[] = {"all", "answer"};

int nn_lm_targets_parse(const char *name, nn_lm_targets *targets) {
    int i = name_index(targets_names, 2, name);
    if (i < 0) return nn_error("unknown targets '%s' (one of: all, answer)", name);
    *targets = (nn_lm_targets)i;
    return 0;
}

const char *nn_lm_targets_name(nn_lm_targets targets) { return targets_names[targets == NN_TARGETS_ANSWER]; }

nn_train_config nn_train_config_defaults(void) {
    return (nn_train_config){
        .loss = NN_LOSS_CE,
        .opt = nn_optim_defaults(NN_OPT_NESTEROV),
        .sched = {.kind = NN_SCHED_COSINE, .base_lr = nn_optim_default_lr(NN_OPT_NESTEROV), .gamma = 0.1f},
        .batch_size = 128,
        .epochs = 6,
        .seed = 1,
        .precision = NN_PRECISION_FP32,
    };
}

static void *at(const nn_train_config *cfg, const field *f) { return (char *)cfg + f->offset; }

/* The field's value as stored: exact (%a for floats), names for enums. */
static void format(const nn_train_config *cfg, const field *f, char *buf, size_t cap) {
    const void *p = at(cfg, f);
    switch (f->type) {
    case F_INT: snprintf(buf, cap, "%d", *(const int *)p); break;
    case F_LONG: snprintf(buf, cap, "%ld", *(const long *)p); break;
    case F_FLOAT: snprintf(buf, cap, "%a", (double)*(const float *)p); break;
    case F_U64: snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)p); break;
    case F_LOSS: snprintf(buf, cap, "%s", nn_loss_name(*(const nn_loss_kind *)p)); break;
    case F_OPTIM: snprintf(buf, cap, "%s", nn_optim_name(*(const nn_optim_kind *)p)); break;
    case F_SCHED: snprintf(buf, cap, "%s", nn_schedule_name(*(const nn_schedule_kind *)p)); break;
    case F_PRECISION: snprintf(buf, cap, "%s", nn_precision_name(*(const nn_precision *)p)); break;
    case F_TARGETS: snprintf(buf, cap, "%s", nn_lm_targets_name(*(const nn_lm_targets *)p)); break;
    }
}

/* As a person reads it: floats in %g. */
static void display(const nn_train_config *cfg, const field *f, char *buf, size_t cap) {
    if (f->type == F_FLOAT) snprintf(buf, cap, "%g", (double)*(const float *)at(cfg, f));
    else format(cfg, f, buf, cap);
}

static int parse(nn_train_config *cfg, const field *f, const char *s) {
    void *p = at(cfg, f);
    char *end;
    errno = 0;
    switch (f->type) {
    case F_INT:
    case F_LONG: {
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 0 || (f->type == F_INT && v > 1000000000L)) return -1;
        if (f->type == F_INT) *(int *)p = (int)v;
        else *(long *)p = v;
        return 0;
    }
    case F_FLOAT: {
        double v = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(v)) return -1;
        *(float *)p = (float)v;
        return 0;
    }
    case F_U64: {
        if (*s == '-') return -1;
        uint64_t v = strtoull(s, &end, 10);
        if (errno || end == s || *end) return -1;
        *(uint64_t *)p = v;
        return 0;
    }
    case F_LOSS: return nn_loss_parse(s, (nn_loss_kind *)p);
    case F_OPTIM: return nn_optim_parse(s, (nn_optim_kind *)p);
    case F_SCHED: return nn_schedule_parse(s, (nn_schedule_kind *)p);
    case F_PRECISION: return nn_precision_parse(s, (nn_precision *)p);
    case F_TARGETS: return nn_lm_targets_parse(s, (nn_lm_targets *)p);
    }
    return -1;
}

/* Data-source fields, kept beside the config's. */
#define N_DATA 3
static const char *const data_keys[N_DATA] = {"nn.config.data", "nn.config.train_limit", "nn.config.val_split"};

int train_config_meta(const nn_train_config *cfg, const nn_train_data *data, train_config_strings *out) {
    for (int i = 0; i < N_FIELDS; i++) {
        snprintf(out->key_buf[i], sizeof out->key_buf[i], "nn.config.%s", fields[i].key);
        format(cfg, &fields[i], out->value_buf[i], sizeof out->value_buf[i]);
        out->keys[i] = out->key_buf[i];
        out->values[i] = out->value_buf[i];
    }
    int n = N_FIELDS;
    snprintf(out->value_buf[n + 1], sizeof out->value_buf[n + 1], "%d", data->train_limit);
    snprintf(out->value_buf[n + 2], sizeof out->value_buf[n + 2], "%a", (double)data->val_split);
    out->keys[n] = data_keys[0], out->values[n] = data->dir ? data->dir : "";
    out->keys[n + 1] = data_keys[1], out->values[n + 1] = out->value_buf[n + 1];
    out->keys[n + 2] = data_keys[2], out->values[n + 2] = out->value_buf[n + 2];
    out->n = n + N_DATA;
    return out->n;
}

int nn_train_settings_read(nn_train_settings *s, const char *path) {
    memset(s, 0, sizeof *s);
    nn_safetensors st;
    if (nn_st_load(&st, path) != 0) return -1;
    int rc = 0;
    if (!nn_st_meta(&st, "nn.train.epoch")) {
        rc = nn_error("%s: not a resumable checkpoint: it holds a model but no training state (a run with a save "
                      "path writes one while it runs; a finished run with a validation set ends holding its best "
                      "weights only)",
                      path);
    } else if (!nn_st_meta(&st, "nn.config.lr")) {
        rc = nn_error("%s: written by an nn before 1.0, which kept no settings field by field: it cannot be resumed",
                      path);
    }
    for (int i = 0; rc == 0 && i < N_FIELDS; i++) {
        char key[64];
        snprintf(key, sizeof key, "nn.config.%s", fields[i].key);
        const char *v = nn_st_meta(&st, key);
        if (!v && fields[i].type == F_PRECISION) continue; /* written before bf16: fp32 */
        if (!v && fields[i].type == F_TARGETS) continue;   /* written before answer-only losses: all */
        if (!v || parse(&s->cfg, &fields[i], v) != 0)
            rc = nn_error("%s: metadata '%s' is %s", path, key, v ? "malformed" : "missing");
    }
    const char *spec = nn_st_meta(&st, "nn.spec"), *dir = nn_st_meta(&st, data_keys[0]);
    const char *limit = nn_st_meta(&st, data_keys[1]), *split = nn_st_meta(&st, data_keys[2]);
    if (rc == 0 && !spec) rc = nn_error("%s: metadata 'nn.spec' is missing", path);
    if (rc == 0 && (!dir || !limit || !split))
        rc = nn_error("%s: the data-source metadata (nn.config.data, train_limit, val_split) is missing", path);
    if (rc == 0) {
        char *end;
        errno = 0;
        long l = strtol(limit, &end, 10);
        double v = strtod(split, &end);
        if (errno || l < 0 || l > 1000000000L || !(v >= 0.0 && v < 1.0))
            rc = nn_error("%s: the data-source metadata is malformed", path);
        s->train_limit = (int)l;
        s->val_split = (float)v;
        s->spec = nn_xstrdup(spec);
        s->data_dir = nn_xstrdup(dir);
        s->cfg.spec = s->spec;
    }
    nn_st_free(&st);
    return rc;
}

void nn_train_settings_free(nn_train_settings *s) {
    free(s->spec);
    free(s->data_dir);
    memset(s, 0, sizeof *s);
}

int train_config_check(const char *path, const nn_train_config *cfg, const nn_train_data *data) {
    nn_train_settings saved;
    if (nn_train_settings_read(&saved, path) != 0) return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < N_FIELDS; i++) {
        char a[VALUE_MAX], b[VALUE_MAX];
        format(&saved.cfg, &fields[i], a, sizeof a);
        format(cfg, &fields[i], b, sizeof b);
        if (strcmp(a, b) != 0) {
            display(&saved.cfg, &fields[i], a, sizeof a);
            display(cfg, &fields[i], b, sizeof b);
            rc = nn_error("%s was trained with %s %s; this run asks for %s (a resumed run keeps its settings)", path,
                          fields[i].what, a, b);
        }
    }
    if (rc == 0 && saved.train_limit != data->train_limit)
        rc = nn_error("%s was trained on the first %d training images (0 = all); this run asks for %d", path,
                      saved.train_limit, data->train_limit);
    if (rc == 0 && saved.val_split != data->val_split)
        rc = nn_error("%s was trained with a validation split of %g; this run asks for %g", path,
                      (double)saved.val_split, (double)data->val_split);
    nn_train_settings_free(&saved);
    return rc;
}
