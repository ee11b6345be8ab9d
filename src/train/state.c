/* Resumable checkpoints: the model's tensors under their usual names, the
 * optimiser's moments as train.optim_m / train.optim_v (flat, in the
 * parameter buffer's order; with weight averaging the model tensors hold the
 * average and train.raw the weights being trained), and the rest as "nn.train.*" metadata strings.
 * Doubles are written with %a (hexadecimal, exact) so nothing is rounded. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "train/state.h"
#include "core/util.h"

#define HIST_FIELDS 10

static void rng_str(char *buf, size_t n, const nn_rng *r) {
    snprintf(buf, n, "%016" PRIx64 ":%016" PRIx64, r->state, r->inc);
}

static int rng_parse(const char *s, nn_rng *r) {
    char *end;
    errno = 0;
    r->state = strtoull(s, &end, 16);
    if (errno || *end != ':') return -1;
    r->inc = strtoull(end + 1, &end, 16);
    return errno || *end || !(r->inc & 1) ? -1 : 0;
}

/* "e,train_loss,...;e,..." with every number exact. */
char *train_history_str(const nn_history *h, bool has_val) {
    size_t cap = (size_t)h->n * HIST_FIELDS * 32 + 1;
    char *s = nn_xmalloc(cap), *p = s;
    *p = 0;
    for (int i = 0; i < h->n; i++) {
        const nn_epoch_metrics *m = &h->epochs[i];
        double v[HIST_FIELDS] = {m->epoch, m->train_loss, m->train_acc, m->test_loss, m->test_acc, m->lr,
                                 m->seconds, m->images_per_sec, has_val ? h->val_loss[i] : 0,
                                 has_val ? h->val_acc[i] : 0};
        for (int k = 0; k < HIST_FIELDS; k++) p += sprintf(p, "%s%a", k ? "," : (i ? ";" : ""), v[k]);
    }
    return s;
}

/* Reads n fields separated by ',' and ended by ';' or the end of s into v;
 * returns where the next record starts, NULL when malformed. */
static const char *record_parse(const char *s, double *v, int n) {
    for (int k = 0; k < n; k++) {
        char *end;
        v[k] = strtod(s, &end);
        if (end == s || (*end != (k + 1 < n ? ',' : ';') && !(k + 1 == n && !*end))) return NULL;
        s = *end ? end + 1 : end;
    }
    return s;
}

int train_history_parse(const char *s, nn_history *h, int max_epochs) {
    h->n = 0;
    while (*s) {
        double v[HIST_FIELDS];
        if (h->n >= max_epochs || !(s = record_parse(s, v, HIST_FIELDS))) return -1;
        nn_epoch_metrics *m = &h->epochs[h->n];
        *m = (nn_epoch_metrics){(int)v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
        if (h->val_loss) h->val_loss[h->n] = v[8];
        if (h->val_acc) h->val_acc[h->n] = v[9];
        h->n++;
    }
    return 0;
}

/* A language model's evaluations: "step,train_loss,...;step,..." exact. */
#define LM_FIELDS 8

char *train_lm_history_str(const nn_lm_history *h) {
    size_t cap = (size_t)h->n * LM_FIELDS * 32 + 1;
    char *s = nn_xmalloc(cap), *p = s;
    *p = 0;
    for (int i = 0; i < h->n; i++) {
        const nn_lm_eval *e = &h->evals[i];
        double v[LM_FIELDS] = {(double)e->step, e->train_loss, e->train_acc, e->val_loss, e->val_acc, e->lr,
                               e->seconds, e->tokens_per_sec};
        for (int k = 0; k < LM_FIELDS; k++) p += sprintf(p, "%s%a", k ? "," : (i ? ";" : ""), v[k]);
    }
    return s;
}

int train_lm_history_parse(const char *s, nn_lm_history *h, int max_evals) {
    h->n = 0;
    while (*s) {
        double v[LM_FIELDS];
        if (h->n >= max_evals || !(s = record_parse(s, v, LM_FIELDS))) return -1;
        h->evals[h->n++] = (nn_lm_eval){.step = (long)v[0], .train_loss = v[1], .train_acc = v[2], .val_loss = v[3],
                                        .val_acc = v[4], .lr = v[5], .seconds = v[6], .tokens_per_sec = v[7]};
    }
    return 0;
}

int train_state_write(const char *path, const nn_model *model, const nn_optim *opt, const train_state *st,
                      int best_epoch, uint64_t seed_value, const char *history, const char *const *more_keys,
                      const char *const *more_values, int n_more, const float *best, size_t best_count,
                      const float *raw) {
    char epoch[16], batch[24], step[24], optim_steps[24], loss_sum[40], seen[24], correct[24], secs[40],
        loader_rng[40], dropout_rng[40], augment_rng[40], best_score[40], since_best[16], best_at[16], seed[24];
    snprintf(epoch, sizeof epoch, "%d", st->epoch);
    snprintf(batch, sizeof batch, "%ld", st->batch);
    snprintf(step, sizeof step, "%ld", st->step);
    snprintf(optim_steps, sizeof optim_steps, "%ld", opt->steps);
    snprintf(loss_sum, sizeof loss_sum, "%a", st->loss_sum);
    snprintf(seen, sizeof seen, "%ld", st->seen);
    snprintf(correct, sizeof correct, "%ld", st->correct);
    snprintf(secs, sizeof secs, "%a", st->train_seconds);
    rng_str(loader_rng, sizeof loader_rng, &st->loader_rng);
    rng_str(dropout_rng, sizeof dropout_rng, &st->dropout_rng);
    rng_str(augment_rng, sizeof augment_rng, &st->augment_rng);
    snprintf(best_score, sizeof best_score, "%a", st->best);
    snprintf(since_best, sizeof since_best, "%d", st->since_best);
    snprintf(best_at, sizeof best_at, "%d", best_epoch);
    snprintf(seed, sizeof seed, "%" PRIu64, seed_value);
    enum { N_STATE = 16 };
    const char *state_keys[N_STATE] = {"nn.train.epoch", "nn.train.batch", "nn.train.step", "nn.train.optim_steps",
                                       "nn.train.loss_sum", "nn.train.seen", "nn.train.correct", "nn.train.seconds",
                                       "nn.train.loader_rng", "nn.train.dropout_rng", "nn.train.augment_rng",
                                       "nn.train.best", "nn.train.since_best", "nn.train.best_epoch",
                                       "nn.train.history", "nn.seed"};
    const char *state_values[N_STATE] = {epoch, batch, step, optim_steps, loss_sum, seen, correct, secs, loader_rng,
                                         dropout_rng, augment_rng, best_score, since_best, best_at, history, seed};
    const char **keys = nn_xmalloc((size_t)(N_STATE + n_more) * sizeof *keys);
    const char **values = nn_xmalloc((size_t)(N_STATE + n_more) * sizeof *values);
    memcpy(keys, state_keys, sizeof state_keys);
    memcpy(values, state_values, sizeof state_values);
    for (int i = 0; i < n_more; i++) keys[N_STATE + i] = more_keys[i], values[N_STATE + i] = more_values[i];
    int64_t count = (int64_t)model->params.count, n_best = (int64_t)best_count;
    nn_st_entry state[4];
    int n_state = 0;
    if (opt->m) state[n_state++] = (nn_st_entry){.name = "train.optim_m", .ndim = 1, .shape = &count, .data = opt->m};
    if (opt->v) state[n_state++] = (nn_st_entry){.name = "train.optim_v", .ndim = 1, .shape = &count, .data = opt->v};
    if (best) state[n_state++] = (nn_st_entry){.name = "train.best", .ndim = 1, .shape = &n_best, .data = best};
    if (raw) state[n_state++] = (nn_st_entry){.name = "train.raw", .ndim = 1, .shape = &count, .data = raw};
    int rc = nn_model_save_with(model, path, state, n_state, keys, values, N_STATE + n_more);
    free(keys);
    free(values);
    return rc;
}

int train_state_save(const char *path, const nn_train_config *cfg, const nn_train_data *data, const nn_model *model, const nn_optim *opt,
                     const train_state *st, const nn_history *hist, bool has_val, const float *best,
                     const float *raw) {
    char *history = train_history_str(hist, has_val);
    train_config_strings conf;
    train_config_meta(cfg, data, &conf);
    int rc = train_state_write(path, model, opt, st, hist->best_epoch, cfg->seed, history, conf.keys, conf.values,
                               conf.n, best, model->params.count + model->state.count, raw);
    free(history);
    return rc;
}

static int meta_long(const nn_safetensors *f, const char *path, const char *key, long lo, long hi, long *out) {
    const char *s = nn_st_meta(f, key);
    char *end;
    if (!s) return nn_error("%s: not a resumable checkpoint (no '%s'; was it written by a training run with a save path?)", path, key);
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return nn_error("%s: metadata '%s' = '%s' is out of range", path, key, s);
    *out = v;
    return 0;
}

static int meta_double(const nn_safetensors *f, const char *path, const char *key, double *out) {
    const char *s = nn_st_meta(f, key);
    char *end;
    if (!s) return nn_error("%s: not a resumable checkpoint (no '%s')", path, key);
    *out = strtod(s, &end);
    if (end == s || *end) return nn_error("%s: metadata '%s' = '%s' is not a number", path, key, s);
    return 0;
}

static int meta_rng(const nn_safetensors *f, const char *path, const char *key, nn_rng *r) {
    const char *s = nn_st_meta(f, key);
    if (!s) return nn_error("%s: not a resumable checkpoint (no '%s')", path, key);
    if (rng_parse(s, r) != 0) return nn_error("%s: metadata '%s' = '%s' is malformed", path, key, s);
    return 0;
}

int train_state_read(const char *path, nn_model *model, train_state *st, int *best_epoch_out, nn_safetensors *file) {
    if (nn_st_load(file, path) != 0) return -1;
    long epoch, batch, step, seen, correct, since_best, best_epoch;
    nn_rng augment_rng = st->augment_rng; /* kept when the file predates augmentation */
    memset(st, 0, sizeof *st);
    st->augment_rng = augment_rng;
    if (meta_long(file, path, "nn.train.epoch", 1, 1000000, &epoch) || meta_long(file, path, "nn.train.batch", 0, 1L << 40, &batch) ||
        meta_long(file, path, "nn.train.step", 0, 1L << 50, &step) || meta_long(file, path, "nn.train.seen", 0, 1L << 50, &seen) ||
        meta_long(file, path, "nn.train.correct", 0, 1L << 50, &correct) ||
        meta_long(file, path, "nn.train.since_best", 0, 1000000, &since_best) ||
        meta_long(file, path, "nn.train.best_epoch", 0, 1000000, &best_epoch) ||
        meta_double(file, path, "nn.train.loss_sum", &st->loss_sum) ||
        meta_double(file, path, "nn.train.seconds", &st->train_seconds) ||
        meta_double(file, path, "nn.train.best", &st->best) ||
        meta_rng(file, path, "nn.train.loader_rng", &st->loader_rng) ||
        meta_rng(file, path, "nn.train.dropout_rng", &st->dropout_rng) ||
        (nn_st_meta(file, "nn.train.augment_rng") && meta_rng(file, path, "nn.train.augment_rng", &st->augment_rng)))
        goto fail;
    st->epoch = (int)epoch;
    st->batch = batch;
    st->step = step;
    st->seen = seen;
    st->correct = correct;
    st->since_best = (int)since_best;
    *best_epoch_out = (int)best_epoch;
    if (nn_model_load_st(model, file, path) != 0) goto fail;
    return 0;
fail:
    nn_st_free(file);
    return -1;
}

int train_state_load(const char *path, nn_model *model, train_state *st, nn_history *hist, int max_epochs,
                     nn_safetensors *file) {
    if (train_state_read(path, model, st, &hist->best_epoch, file) != 0) return -1;
    const char *h = nn_st_meta(file, "nn.train.history");
    if (!h || train_history_parse(h, hist, max_epochs) != 0) {
        nn_error("%s: metadata 'nn.train.history' is missing or malformed (or longer than the run's epochs)", path);
        nn_model_free(model);
        nn_st_free(file);
        return -1;
    }
    return 0;
}

int train_state_load_optim(const char *path, const nn_safetensors *file, nn_optim *opt, float *best,
                           size_t best_count, float *raw) {
    long steps;
    if (meta_long(file, path, "nn.train.optim_steps", 0, 1L << 50, &steps)) return -1;
    int64_t count = (int64_t)opt->params->count;
    if (opt->m && nn_st_read_f32(file, "train.optim_m", 1, &count, opt->m) != 0) return -1;
    if (opt->v && nn_st_read_f32(file, "train.optim_v", 1, &count, opt->v) != 0) return -1;
    int64_t n_best = (int64_t)best_count;
    if (best && nn_st_read_f32(file, "train.best", 1, &n_best, best) != 0) return -1;
    if (raw && nn_st_read_f32(file, "train.raw", 1, &count, raw) != 0) return -1;
    opt->steps = steps;
    return 0;
}
