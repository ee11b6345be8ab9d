/* A language model's training run, by steps: each step a batch of random
 * windows of the training text (inputs and next-token targets), the
 * cross-entropy at every position, backward, clip, an optimiser step; every
 * eval_every steps the loss on a fixed set of validation windows (the same
 * for every run, so runs compare), a row of metrics, a checkpoint and the
 * program's callback (which may sample text from the model). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "nn/train.h"

/* Next-token cross-entropy of logits [B, T, V] against targets y [B*T]. */
static nn_tensor *lm_loss(nn_ctx *ctx, nn_tensor *logits, const int *y) {
    int rows = logits->shape[0] * logits->shape[1];
    return nn_cross_entropy(ctx, nn_reshape(ctx, logits, 2, (int[]){rows, logits->shape[2]}), y, 0.0f);
}

static long correct_next(const nn_tensor *logits, const int *y) {
    int rows = logits->shape[0] * logits->shape[1], V = logits->shape[2];
    long correct = 0;
    for (int r = 0; r < rows; r++) {
        const float *z = logits->data + (size_t)r * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (z[v] > z[best]) best = v;
        correct += best == y[r];
    }
    return correct;
}

/* Mean loss (nats per token) and next-token accuracy over the validation windows. */
static double validate(nn_model *m, nn_ctx *ctx, const nn_text_windows *w, int B, int *x, int *y, double *acc) {
    bool grad = nn_set_grad_enabled(ctx, false), training = nn_set_training(ctx, false);
    double sum = 0.0;
    long correct = 0, tokens = 0;
    for (int first = 0; first < w->count; first += B) {
        nn_ctx_reset(ctx);
        int n = nn_text_windows_batch(w, first, B, x, y);
        nn_tensor *logits = nn_model_forward_tokens(m, ctx, x, n, w->block, NULL, NULL);
        sum += (double)lm_loss(ctx, logits, y)->data[0] * n * w->block;
        correct += correct_next(logits, y);
        tokens += (long)n * w->block;
    }
    nn_ctx_reset(ctx);
    nn_set_grad_enabled(ctx, grad);
    nn_set_training(ctx, training);
    *acc = tokens ? (double)correct / tokens : 0.0;
    return tokens ? sum / tokens : NAN;
}

void nn_lm_history_free(nn_lm_history *h) {
    free(h->evals);
    memset(h, 0, sizeof *h);
}

/* The checkpoint: the model, the vocabulary (nn.vocab) and the run's shape. */
static int save(const nn_train_config *cfg, const nn_text *data, const nn_model *m, long step) {
    char *vocab = nn_vocab_to_string(&data->vocab), context[24], at[24];
    snprintf(context, sizeof context, "%d", cfg->context);
    snprintf(at, sizeof at, "%ld", step);
    const char *keys[] = {"nn.vocab", "nn.text_kind", "nn.context", "nn.train.step"};
    const char *values[] = {vocab, nn_text_kind_name(data->kind), context, at};
    int rc = nn_model_save_with(m, cfg->save_path, NULL, 0, keys, values, 4);
    free(vocab);
    return rc;
}

/* A split as one stream of ids to draw windows from: a stream as it is;
 * lines (each [boundary, chars, boundary]) joined with one boundary between
 * two, as in makemore's ".emma.olivia.", so that a boundary is followed by a
 * name's first character, never by a second boundary. */
static nn_text_split as_stream(const nn_text *data, const nn_text_split *s) {
    if (data->kind != NN_TEXT_LINES) return *s;
    nn_text_split out = {.ids = nn_xmalloc((s->n_ids + 1) * sizeof *out.ids)};
    for (int i = 0; i < s->n_seqs; i++) {
        const int *seq = s->ids + s->offsets[i];
        for (int k = i == 0 ? 0 : 1; k < s->lengths[i]; k++) out.ids[out.n_ids++] = seq[k];
    }
    return out;
}

/* Everything a run holds while it trains. */
typedef struct lm_run {
    const nn_train_config *cfg;
    const nn_text *data;
    nn_model *model;
    nn_lm_history *hist;
    nn_ctx *ctx;
    nn_optim opt;
    nn_schedule sched;
    nn_text_split train_stream, val_stream; /* own their ids for lines */
    nn_text_sampler sampler;
    nn_text_windows val;
    nn_rng dropout_rng;
    nn_metrics_file *metrics;
    int *x, *y;
} lm_run;

static int lm_start(lm_run *r) {
    const nn_train_config *cfg = r->cfg;
    int V = r->data->vocab.size;
    if (cfg->steps < 1 || cfg->context < 1 || cfg->batch_size < 1 || cfg->eval_every < 1)
        return nn_error("a language model's run needs steps, context, batch size and eval_every of at least 1 "
                        "(%ld, %d, %d, %d)", cfg->steps, cfg->context, cfg->batch_size, cfg->eval_every);
    if (cfg->resume_path) return nn_error("resuming a language model's run is not supported yet");
    if (cfg->spec && nn_model_plan_text(r->model, cfg->spec, V, V) != 0) return -1;
    if (!cfg->spec && (r->model->vocab != V || r->model->classes != V))
        return nn_error("the model '%s' is not a language model of %d tokens", nn_model_spec(r->model), V);
    nn_rng init_rng;
    nn_rng_seed(&init_rng, cfg->seed, 1);
    nn_model_build(r->model, &init_rng);
    nn_rng_seed(&r->dropout_rng, cfg->seed, 3);
    if (r->data->kind == NN_TEXT_CLASSES)
        return nn_error("one file per class is data for a classifier, not for a language model");
    r->train_stream = as_stream(r->data, &r->data->train);
    r->val_stream = as_stream(r->data, &r->data->val);
    if (nn_text_sampler_init(&r->sampler, &r->train_stream, cfg->context, cfg->seed) != 0 ||
        nn_text_windows_init(&r->val, &r->val_stream, cfg->context, cfg->eval_windows) != 0)
        return -1;
    nn_optim_init(&r->opt, &r->model->params, &cfg->opt);
    r->sched = cfg->sched;
    r->sched.total_steps = cfg->steps;
    if (r->sched.kind == NN_SCHED_STEP && r->sched.step_size == 0) r->sched.step_size = cfg->steps / 3 > 0 ? cfg->steps / 3 : 1;
    r->ctx = nn_ctx_new(0);
    size_t window = (size_t)cfg->batch_size * (size_t)cfg->context;
    r->x = nn_xmalloc(window * sizeof *r->x);
    r->y = nn_xmalloc(window * sizeof *r->y);
    r->hist->evals = nn_xcalloc((size_t)(cfg->steps / cfg->eval_every + 2), sizeof *r->hist->evals);
    if (cfg->metrics_path) {
        static const char *const extra[] = {"step", "val_bits_per_char"};
        if (!(r->metrics = nn_metrics_open(cfg->metrics_path, extra, 2))) return -1;
    }
    return 0;
}

/* One evaluation: validation loss, the history's row, metrics, checkpoint, callback. */
static int lm_evaluate(lm_run *r, long step, double train_loss, double train_acc, double lr, double seconds) {
    const nn_train_config *cfg = r->cfg;
    nn_lm_eval *e = &r->hist->evals[r->hist->n++];
    double val_acc;
    *e = (nn_lm_eval){.step = step, .train_loss = train_loss, .train_acc = train_acc, .lr = lr, .seconds = seconds};
    e->val_loss = validate(r->model, r->ctx, &r->val, cfg->batch_size, r->x, r->y, &val_acc);
    e->val_acc = val_acc;
    e->tokens_per_sec = seconds > 0 ? (double)step * cfg->batch_size * cfg->context / seconds : 0.0;
    if (r->metrics) {
        nn_epoch_metrics row = {.epoch = r->hist->n, .train_loss = train_loss, .train_acc = train_acc,
                                .test_loss = e->val_loss, .test_acc = val_acc, .lr = lr, .seconds = seconds,
                                .images_per_sec = e->tokens_per_sec};
        double extra[2] = {(double)step, e->val_loss / log(2.0)};
        if (nn_metrics_write(r->metrics, &row, extra) != 0) return -1;
    }
    if (cfg->save_path && save(cfg, r->data, r->model, step) != 0) return -1;
    if (cfg->on_eval && cfg->on_eval(cfg->user, r->hist, r->model) != 0) return -1;
    return 0;
}

nn_train_status nn_train_lm(const nn_train_config *cfg, const nn_text *data, nn_model *model, nn_lm_history *hist) {
    lm_run r = {.cfg = cfg, .data = data, .model = model, .hist = hist};
    memset(hist, 0, sizeof *hist);
    if (cfg->spec) memset(model, 0, sizeof *model);
    nn_precision old_precision = nn_get_precision();
    nn_train_status status = NN_TRAIN_FAILED;
    if (lm_start(&r) != 0 || nn_set_precision(cfg->precision) != 0) goto done;
    int B = cfg->batch_size, T = cfg->context;
    nn_train_progress progress = {.label = cfg->label, .epoch = 1, .epochs = 1, .batches = cfg->steps};
    double t0 = nn_seconds(), loss_sum = 0.0, lr = 0.0;
    long correct = 0, seen = 0;
    status = NN_TRAIN_FINISHED;
    for (long step = 1; step <= cfg->steps; step++) {
        if (cfg->stop && *cfg->stop) {
            nn_error("interrupted at step %ld%s", step - 1, cfg->save_path ? "; the last evaluation's checkpoint stays" : "");
            status = NN_TRAIN_INTERRUPTED;
            break;
        }
        nn_ctx_reset(r.ctx);
        nn_text_sampler_next(&r.sampler, B, r.x, r.y);
        nn_tensor *logits = nn_model_forward_tokens(model, r.ctx, r.x, B, T, NULL, &r.dropout_rng);
        nn_tensor *loss = lm_loss(r.ctx, logits, r.y);
        lr = nn_schedule_lr(&r.sched, step - 1);
        if (!isfinite(loss->data[0])) {
            nn_error("the loss became %s at step %ld with learning rate %g", isnan(loss->data[0]) ? "NaN" : "infinite",
                     step, lr);
            status = NN_TRAIN_DIVERGED;
            break;
        }
        nn_params_zero_grad(&model->params);
        nn_backward(r.ctx, loss);
        if (cfg->clip > 0.0f) nn_clip_grad_norm(&model->params, cfg->clip);
        nn_optim_step(&r.opt, (float)lr);
        loss_sum += loss->data[0];
        correct += correct_next(logits, r.y);
        seen++;
        if (cfg->on_progress) {
            double elapsed = nn_seconds() - t0;
            progress.batch = progress.step = step;
            progress.loss = loss->data[0];
            progress.images_per_sec = elapsed > 0 ? (double)step * B * T / elapsed : 0.0;
            cfg->on_progress(cfg->user, &progress);
        }
        if (step % cfg->eval_every == 0 || step == cfg->steps) {
            if (lm_evaluate(&r, step, loss_sum / seen, (double)correct / ((double)seen * B * T), lr,
                            nn_seconds() - t0) != 0) {
                status = NN_TRAIN_FAILED;
                break;
            }
            loss_sum = 0.0;
            correct = seen = 0;
        }
    }
done:
    nn_set_precision(old_precision);
    if (nn_metrics_close(r.metrics) != 0 && status >= 0) status = NN_TRAIN_FAILED;
    nn_optim_free(&r.opt);
    nn_text_sampler_free(&r.sampler);
    nn_text_windows_free(&r.val);
    if (data->kind == NN_TEXT_LINES) {
        free(r.train_stream.ids);
        free(r.val_stream.ids);
    }
    if (r.ctx) nn_ctx_free(r.ctx);
    free(r.x);
    free(r.y);
    return status;
}
