/* The scaffolding of a training run on text (text_run.h): start or resume,
 * step, checkpoint, stop, best weights. A text run's checkpoint holds what
 * an image run's does (train_state_write: the model, optimiser moments,
 * position, generators, history, every nn_train_config setting as
 * nn.config.*) with the data's file or folder as nn.config.data, the text
 * settings below, and the data's metadata: nn.vocab and nn.text_kind, then
 * nn.classes and nn.text_seed (a classifier) or nn.context (a language
 * model). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "train/text_run.h"

/* The settings of a run by steps, kept beside train_config_meta's. */
typedef struct text_field {
    const char *key, *what;
    size_t offset; /* in nn_train_config */
    bool is_long;
} text_field;

static const text_field text_fields[] = {
    {"nn.config.steps", "steps", offsetof(nn_train_config, steps), true},
    {"nn.config.context", "context", offsetof(nn_train_config, context), false},
    {"nn.config.eval_every", "evaluation interval", offsetof(nn_train_config, eval_every), false},
    {"nn.config.eval_windows", "validation windows", offsetof(nn_train_config, eval_windows), false},
};
#define N_TEXT_FIELDS ((int)(sizeof text_fields / sizeof *text_fields))

static long text_field_get(const nn_train_config *cfg, const text_field *f) {
    const char *p = (const char *)cfg + f->offset;
    return f->is_long ? *(const long *)p : *(const int *)p;
}

static void text_field_set(nn_train_config *cfg, const text_field *f, long v) {
    char *p = (char *)cfg + f->offset;
    if (f->is_long) *(long *)p = v;
    else *(int *)p = (int)v;
}

/* The field's value in a checkpoint; -1 with the error when missing or malformed. */
static int text_field_read(const nn_safetensors *st, const char *path, const text_field *f, long *out) {
    const char *s = nn_st_meta(st, f->key);
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : -1;
    if (!s || errno || end == s || *end || v < 0 || (!f->is_long && v > 1000000000L))
        return nn_error("%s: metadata '%s' is %s", path, f->key, s ? "malformed" : "missing");
    *out = v;
    return 0;
}

int nn_train_settings_read_text(nn_train_settings *s, const char *path) {
    nn_safetensors st;
    if (nn_st_load(&st, path) != 0) return -1;
    int rc = 0;
    if (nn_st_meta(&st, "nn.text_kind")) {
        for (int i = 0; rc == 0 && i < N_TEXT_FIELDS; i++) {
            long v = 0;
            if ((rc = text_field_read(&st, path, &text_fields[i], &v)) == 0) text_field_set(&s->cfg, &text_fields[i], v);
        }
        s->text = rc == 0;
    }
    nn_st_free(&st);
    return rc;
}

/* The data's metadata a checkpoint must agree with, as strings. */
static char *data_classes(const nn_text *data) {
    return data->kind == NN_TEXT_CLASSES ? nn_text_classes_join(data) : NULL;
}

static int check_text(const nn_safetensors *st, const char *path, const nn_text *data) {
    const char *kind = nn_st_meta(st, "nn.text_kind"), *vocab = nn_st_meta(st, "nn.vocab");
    if (!kind || !vocab) return nn_error("%s: not a text model's checkpoint (no nn.text_kind or nn.vocab)", path);
    if (strcmp(kind, nn_text_kind_name(data->kind)) != 0)
        return nn_error("%s was trained on %s data; this data is %s", path, kind, nn_text_kind_name(data->kind));
    char *want = nn_vocab_to_string(&data->vocab), *classes = data_classes(data);
    int rc = 0;
    if (strcmp(vocab, want) != 0) {
        nn_vocab v;
        int size = nn_vocab_parse(&v, vocab, path) == 0 ? v.size : -1;
        nn_vocab_free(&v);
        rc = nn_error("%s was trained on text with another vocabulary (%d tokens; this data's has %d): resume it on "
                      "the data it was trained on",
                      path, size, data->vocab.size);
    } else if (classes && (!nn_st_meta(st, "nn.classes") || strcmp(nn_st_meta(st, "nn.classes"), classes) != 0)) {
        rc = nn_error("%s was trained on other classes (nn.classes) than this data's %d", path, data->n_classes);
    }
    free(want);
    free(classes);
    return rc;
}

int nn_train_text_check(const char *path, const nn_text *data) {
    nn_safetensors st;
    if (nn_st_load(&st, path) != 0) return -1;
    int rc = check_text(&st, path, data);
    nn_st_free(&st);
    return rc;
}

/* The settings by steps must be the file's, as train_config_check's are. */
static int check_text_settings(const nn_safetensors *st, const char *path, const nn_train_config *cfg) {
    for (int i = 0; i < N_TEXT_FIELDS; i++) {
        const text_field *f = &text_fields[i];
        long saved = 0;
        if (text_field_read(st, path, f, &saved) != 0) return -1;
        if (saved != text_field_get(cfg, f))
            return nn_error("%s was trained with %s %ld; this run asks for %ld (a resumed run keeps its settings)",
                            path, f->what, saved, text_field_get(cfg, f));
    }
    return 0;
}

/* The data's source, as train_config_meta and train_config_check see an
 * image run's: the path, all of it, no validation split carved out. */
static nn_train_data data_source(const nn_train_config *cfg) {
    return (nn_train_data){.dir = cfg->data_path ? cfg->data_path : ""};
}

/* The model of the run, planned: from cfg->spec, or as the caller planned it. */
static int plan(text_run *r, int classes) {
    const nn_train_config *cfg = r->cfg;
    int V = r->data->vocab.size;
    /* A language model sees windows of cfg->context tokens: learned positions go that far. */
    int context = r->data->kind == NN_TEXT_CLASSES ? 0 : cfg->context;
    if (cfg->spec) return nn_model_plan_text_context(r->model, cfg->spec, V, classes, context);
    NN_CHECK(r->model->spec, "a text run: no cfg->spec and no planned model");
    if (r->model->vocab != V || r->model->classes != classes || r->model->in_ndim != 1)
        return nn_error("the model '%s' is not a model of %d tokens into %d classes", nn_model_spec(r->model), V,
                        classes);
    return 0;
}

/* The model, position and history of the checkpoint being resumed, which
 * must be of this run: its settings and spec (its data is checked before).
 * Leaves the file in *file. */
static int resume(text_run *r, nn_safetensors *file) {
    const nn_train_config *cfg = r->cfg;
    const char *path = cfg->resume_path;
    char *want = nn_xstrdup(nn_model_spec(r->model));
    nn_model_free(r->model);
    int rc = train_state_read(path, r->model, &r->st, &r->best_epoch, file);
    if (rc == 0) {
        nn_train_data source = data_source(cfg);
        const char *history = nn_st_meta(file, "nn.train.history");
        if (train_config_check(path, cfg, &source) != 0 || check_text_settings(file, path, cfg) != 0)
            rc = -1;
        else if (strcmp(want, nn_model_spec(r->model)) != 0)
            rc = nn_error("%s: holds the model '%s', but the run is for '%s'", path, nn_model_spec(r->model), want);
        else if (!history)
            rc = nn_error("%s: metadata 'nn.train.history' is missing", path);
        else
            r->history = nn_xstrdup(history);
        if (rc != 0) nn_st_free(file);
    }
    free(want);
    r->saved = rc == 0 && cfg->save_path && strcmp(cfg->save_path, path) == 0;
    return rc;
}

static void snapshot(const nn_model *m, float *to) {
    memcpy(to, m->params.data, m->params.count * sizeof(float));
    if (m->state.count) memcpy(to + m->params.count, m->state.data, m->state.count * sizeof(float));
}

void text_run_init(text_run *r, const nn_train_config *cfg, const nn_text *data, nn_model *model) {
    *r = (text_run){.cfg = cfg, .data = data, .model = model, .failure = NN_TRAIN_FAILED,
                    .outer = nn_get_precision()};
}

int text_run_start(text_run *r, int classes, long total_steps, bool keep_best) {
    const nn_train_config *cfg = r->cfg;
    /* A resumed run's data first: the model's output size is the data's. */
    if (cfg->resume_path && nn_train_text_check(cfg->resume_path, r->data) != 0) return -1;
    if (nn_set_precision(cfg->precision) != 0 || plan(r, classes) != 0) return -1;
    nn_safetensors resumed;
    /* The fresh run's generators; a resumed run's come from the file. */
    nn_rng_seed(&r->st.dropout_rng, cfg->seed, 3);
    nn_rng_seed(&r->st.augment_rng, cfg->seed, 4); /* unused on text, kept in the file's format */
    r->st.epoch = 1;
    r->st.best = -1.0;
    if (cfg->resume_path) {
        if (resume(r, &resumed) != 0) return -1;
    } else {
        nn_rng init_rng;
        nn_rng_seed(&init_rng, cfg->seed, 1);
        nn_model_build(r->model, &init_rng);
    }
    nn_optim_init(&r->opt, &r->model->params, &cfg->opt);
    if (cfg->ema > 0.0f) nn_ema_init(&r->ema, &r->model->params, cfg->ema);
    size_t best_count = r->model->params.count + r->model->state.count;
    if (keep_best) {
        r->best = nn_xmalloc(best_count * sizeof(float));
        snapshot(r->model, r->best);
    }
    r->sched = cfg->sched;
    r->sched.total_steps = total_steps;
    /* A step schedule without a step size decays after each third of the run. */
    if (r->sched.kind == NN_SCHED_STEP && r->sched.step_size <= 0)
        r->sched.step_size = total_steps / 3 > 0 ? total_steps / 3 : 1;
    r->ctx = nn_ctx_new(0);
    if (cfg->resume_path) {
        /* The file's model tensors are the average; train.raw goes into
         * ema.avg, and holding the raw weights swaps each into place. */
        int rc = train_state_load_optim(cfg->resume_path, &resumed, &r->opt, r->best, best_count, r->ema.avg);
        nn_st_free(&resumed);
        if (rc != 0) return -1;
        r->ema.updates = r->st.step;
        r->holds_average = true;
    }
    return 0;
}

void text_run_end(text_run *r) {
    nn_set_precision(r->outer);
    nn_optim_free(&r->opt);
    nn_ema_free(&r->ema);
    if (r->ctx) nn_ctx_free(r->ctx);
    free(r->best);
    free(r->history);
    r->ctx = NULL;
    r->best = NULL;
    r->history = NULL;
}

void text_run_hold_average(text_run *r, bool average) {
    if (r->ema.avg && r->holds_average != average) {
        nn_ema_swap(&r->ema, &r->model->params);
        r->holds_average = average;
    }
}

int text_run_check_loss(text_run *r, double loss, double *lr) {
    const nn_train_config *cfg = r->cfg;
    *lr = nn_schedule_lr(&r->sched, r->st.step);
    if (!isfinite(loss)) {
        r->failure = NN_TRAIN_DIVERGED;
        return nn_error("the loss became %s at step %ld with learning rate %g; stopping%s%s",
                        isnan(loss) ? "NaN" : "infinite", r->st.step + 1, *lr,
                        r->saved ? "; the last good checkpoint is " : "", r->saved ? cfg->save_path : "");
    }
    return 0;
}

int text_run_update(text_run *r, double lr) {
    const nn_train_config *cfg = r->cfg;
    if (cfg->clip > 0.0f) nn_clip_grad_norm(&r->model->params, cfg->clip);
    nn_optim_step(&r->opt, (float)lr);
    if (r->ema.avg) nn_ema_update(&r->ema, &r->model->params);
    r->st.step++;
    return 0;
}

int text_run_step(text_run *r, nn_tensor *loss, double *lr) {
    if (text_run_check_loss(r, loss->data[0], lr) != 0) return -1;
    nn_params_zero_grad(&r->model->params);
    nn_backward(r->ctx, loss);
    if (r->cfg->graph_path && r->st.step == 0 && nn_graph_save_dot(r->ctx, r->cfg->graph_path) != 0) return -1;
    return text_run_update(r, *lr);
}

/* The data's metadata (and, resumable, the settings) as the checkpoint's
 * pairs: keys[i] = values[i], pointing into m's buffers. */
typedef struct text_meta {
    const char *keys[8 + TRAIN_CONFIG_MAX_FIELDS + N_TEXT_FIELDS], *values[8 + TRAIN_CONFIG_MAX_FIELDS + N_TEXT_FIELDS];
    int n;
    char *vocab, *classes;
    char seed[24], context[24], text_settings[N_TEXT_FIELDS][24];
    train_config_strings conf;
} text_meta;

static void add(text_meta *m, const char *key, const char *value) {
    m->keys[m->n] = key;
    m->values[m->n++] = value;
}

static void meta_init(text_meta *m, const text_run *r, bool resumable) {
    const nn_train_config *cfg = r->cfg;
    const nn_text *data = r->data;
    m->n = 0;
    m->vocab = nn_vocab_to_string(&data->vocab);
    m->classes = data_classes(data);
    add(m, "nn.vocab", m->vocab);
    add(m, "nn.text_kind", nn_text_kind_name(data->kind));
    if (m->classes) {
        /* The split's seed: nn_text_load(..., NN_TEXT_CLASSES, seed, &vocab) rebuilds it (nn eval). */
        snprintf(m->seed, sizeof m->seed, "%llu", (unsigned long long)cfg->seed);
        add(m, "nn.classes", m->classes);
        add(m, "nn.text_seed", m->seed);
    } else {
        snprintf(m->context, sizeof m->context, "%d", cfg->context);
        add(m, "nn.context", m->context);
    }
    if (!resumable) return;
    nn_train_data source = data_source(cfg);
    train_config_meta(cfg, &source, &m->conf);
    for (int i = 0; i < m->conf.n; i++) add(m, m->conf.keys[i], m->conf.values[i]);
    for (int i = 0; i < N_TEXT_FIELDS; i++) {
        snprintf(m->text_settings[i], sizeof m->text_settings[i], "%ld", text_field_get(cfg, &text_fields[i]));
        add(m, text_fields[i].key, m->text_settings[i]);
    }
}

static void meta_free(text_meta *m) {
    free(m->vocab);
    free(m->classes);
}

int text_run_save(text_run *r, const train_state *st, int best_epoch, const char *history) {
    const nn_train_config *cfg = r->cfg;
    text_meta m;
    meta_init(&m, r, true);
    text_run_hold_average(r, true); /* the file's model is the average, train.raw the weights under it */
    int rc = train_state_write(cfg->save_path, r->model, &r->opt, st, best_epoch, cfg->seed, history, m.keys, m.values,
                               m.n, r->best, r->model->params.count + r->model->state.count, r->ema.avg);
    meta_free(&m);
    if (rc == 0) r->saved = true;
    return rc;
}

int text_run_interrupt(text_run *r, int best_epoch, const char *history, const char *where) {
    const nn_train_config *cfg = r->cfg;
    r->failure = NN_TRAIN_INTERRUPTED;
    if (!cfg->save_path)
        return nn_error("interrupted at %s (the run has no save path, so no checkpoint)", where);
    if (text_run_save(r, &r->st, best_epoch, history) != 0) {
        r->failure = NN_TRAIN_FAILED; /* the checkpoint could not be written */
        return -1;
    }
    return nn_error("interrupted at %s; resumable checkpoint saved to %s", where, cfg->save_path);
}

void text_run_keep_best(text_run *r) {
    snapshot(r->model, r->best);
}

int text_run_finish_best(text_run *r) {
    nn_model *m = r->model;
    text_run_hold_average(r, true);
    memcpy(m->params.data, r->best, m->params.count * sizeof(float));
    if (m->state.count) memcpy(m->state.data, r->best + m->params.count, m->state.count * sizeof(float));
    if (!r->cfg->save_path) return 0;
    text_meta meta;
    meta_init(&meta, r, false);
    int rc = nn_model_save_with(m, r->cfg->save_path, NULL, 0, meta.keys, meta.values, meta.n);
    meta_free(&meta);
    return rc;
}
