/* A text classifier's training run, by epochs: each epoch the training
 * split's sequences, shuffled, in padded batches with their lengths and
 * labels; the cross-entropy of each sequence's class scores, backward, clip,
 * an optimiser step; after the epoch the validation split's loss and
 * accuracy, a row of metrics, a checkpoint (with the vocabulary and the class
 * names) and the program's callback. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "nn/train.h"

static int argmax(const float *z, int n) {
    int best = 0;
    for (int k = 1; k < n; k++)
        if (z[k] > z[best]) best = k;
    return best;
}

double nn_evaluate_text(nn_model *m, nn_ctx *ctx, const nn_text_split *split, int batch_size, double *loss,
                        nn_confusion *conf) {
    NN_CHECK(split->labels != NULL, "nn_evaluate_text: the split has no labels");
    bool grad = nn_set_grad_enabled(ctx, false), training = nn_set_training(ctx, false);
    nn_text_batcher b;
    double sum = 0.0;
    long correct = 0;
    if (batch_size < 1) batch_size = 64;
    if (nn_text_batcher_init(&b, split, batch_size, false, 0) == 0) {
        int *ids = nn_xmalloc((size_t)batch_size * (size_t)(split->max_len > 0 ? split->max_len : 1) * sizeof *ids);
        int *lengths = nn_xmalloc((size_t)batch_size * sizeof *lengths);
        int *labels = nn_xmalloc((size_t)batch_size * sizeof *labels);
        int n, width;
        nn_text_batcher_start_epoch(&b);
        while ((n = nn_text_batcher_next(&b, ids, lengths, labels, &width)) > 0) {
            nn_ctx_reset(ctx);
            nn_tensor *logits = nn_model_forward_tokens(m, ctx, ids, n, width, lengths, NULL);
            int C = logits->shape[1];
            sum += (double)nn_cross_entropy(ctx, logits, labels, 0.0f)->data[0] * n;
            for (int i = 0; i < n; i++) {
                int pred = argmax(logits->data + (size_t)i * C, C);
                correct += pred == labels[i];
                if (conf) nn_confusion_add(conf, labels[i], pred);
            }
        }
        free(ids);
        free(lengths);
        free(labels);
        nn_text_batcher_free(&b);
    }
    nn_ctx_reset(ctx);
    nn_set_grad_enabled(ctx, grad);
    nn_set_training(ctx, training);
    if (loss) *loss = split->n_seqs ? sum / split->n_seqs : NAN;
    return split->n_seqs ? (double)correct / split->n_seqs : NAN;
}

char *nn_text_classes_join(const nn_text *data) {
    size_t len = 1;
    for (int k = 0; k < data->n_classes; k++) len += strlen(data->class_names[k]) + 1;
    char *s = nn_xmalloc(len), *p = s;
    for (int k = 0; k < data->n_classes; k++) {
        size_t n = strlen(data->class_names[k]);
        if (k) *p++ = '\n';
        memcpy(p, data->class_names[k], n);
        p += n;
    }
    *p = '\0';
    return s;
}

char **nn_text_classes_split(const char *joined, int classes, const char *source) {
    if (!joined) {
        nn_error("%s: no class names (metadata nn.classes): not a text classifier's checkpoint", source);
        return NULL;
    }
    int n = 1;
    for (const char *p = joined; *p; p++) n += *p == '\n';
    if (n != classes) {
        nn_error("%s: nn.classes names %d classes, the model has %d", source, n, classes);
        return NULL;
    }
    char **names = nn_xcalloc((size_t)n, sizeof *names);
    const char *start = joined;
    for (int k = 0; k < n; k++) {
        const char *end = strchr(start, '\n');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        names[k] = nn_xmalloc(len + 1);
        memcpy(names[k], start, len);
        names[k][len] = '\0';
        start = end ? end + 1 : start + len;
    }
    return names;
}

void nn_text_classes_free(char **names, int n) {
    for (int k = 0; names && k < n; k++) free(names[k]);
    free(names);
}

/* The checkpoint: the model, the vocabulary, the class names, and the seed
 * of the split (so that nn eval rebuilds the same validation split). */
static int save(const nn_train_config *cfg, const nn_text *data, const nn_model *m, int epoch) {
    char *vocab = nn_vocab_to_string(&data->vocab), *classes = nn_text_classes_join(data), seed[32], at[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg->seed);
    snprintf(at, sizeof at, "%d", epoch);
    const char *keys[] = {"nn.vocab", "nn.text_kind", "nn.classes", "nn.text_seed", "nn.train.epoch"};
    const char *values[] = {vocab, nn_text_kind_name(data->kind), classes, seed, at};
    int rc = nn_model_save_with(m, cfg->save_path, NULL, 0, keys, values, 5);
    free(vocab);
    free(classes);
    return rc;
}

/* Everything a run holds while it trains. */
typedef struct classify_run {
    const nn_train_config *cfg;
    const nn_text *data;
    nn_model *model;
    nn_history *hist;
    nn_ctx *ctx;
    nn_optim opt;
    nn_schedule sched;
    nn_text_batcher batcher;
    nn_rng dropout_rng;
    nn_metrics_file *metrics;
    int *ids, *lengths, *labels;
} classify_run;

static int classify_start(classify_run *r) {
    const nn_train_config *cfg = r->cfg;
    const nn_text *data = r->data;
    int V = data->vocab.size, C = data->n_classes;
    if (data->kind != NN_TEXT_CLASSES)
        return nn_error("a text classifier trains on one file per class, not on %s data", nn_text_kind_name(data->kind));
    if (cfg->epochs < 1 || cfg->batch_size < 1)
        return nn_error("a text classifier's run needs epochs and batch size of at least 1 (%d, %d)", cfg->epochs,
                        cfg->batch_size);
    if (cfg->resume_path) return nn_error("resuming a text classifier's run is not supported yet");
    if (data->val.n_seqs < 1) return nn_error("the validation split holds no sequences");
    if (cfg->spec && nn_model_plan_text(r->model, cfg->spec, V, C) != 0) return -1;
    if (!cfg->spec && (r->model->vocab != V || r->model->classes != C || r->model->in_ndim != 1))
        return nn_error("the model '%s' is not a classifier of %d tokens into %d classes", nn_model_spec(r->model), V,
                        C);
    nn_rng init_rng;
    nn_rng_seed(&init_rng, cfg->seed, 1);
    nn_model_build(r->model, &init_rng);
    nn_rng_seed(&r->dropout_rng, cfg->seed, 3);
    if (nn_text_batcher_init(&r->batcher, &data->train, cfg->batch_size, true, cfg->seed) != 0) return -1;
    long batches = nn_text_batcher_num_batches(&r->batcher);
    nn_optim_init(&r->opt, &r->model->params, &cfg->opt);
    r->sched = cfg->sched;
    r->sched.total_steps = batches * cfg->epochs;
    if (r->sched.kind == NN_SCHED_STEP && r->sched.step_size == 0)
        r->sched.step_size = r->sched.total_steps / 3 > 0 ? r->sched.total_steps / 3 : 1;
    r->ctx = nn_ctx_new(0);
    int width = data->train.max_len > 0 ? data->train.max_len : 1;
    r->ids = nn_xmalloc((size_t)cfg->batch_size * (size_t)width * sizeof *r->ids);
    r->lengths = nn_xmalloc((size_t)cfg->batch_size * sizeof *r->lengths);
    r->labels = nn_xmalloc((size_t)cfg->batch_size * sizeof *r->labels);
    r->hist->epochs = nn_xcalloc((size_t)cfg->epochs, sizeof *r->hist->epochs);
    if (cfg->metrics_path && !(r->metrics = nn_metrics_open(cfg->metrics_path, NULL, 0))) return -1;
    return 0;
}

/* After an epoch: validation, the history's row, metrics, checkpoint, callback. */
static int classify_epoch_end(classify_run *r, int epoch, double train_loss, double train_acc, double lr,
                              double seconds, double seqs_per_sec) {
    const nn_train_config *cfg = r->cfg;
    nn_history *h = r->hist;
    nn_epoch_metrics *e = &h->epochs[h->n++];
    *e = (nn_epoch_metrics){.epoch = epoch, .train_loss = train_loss, .train_acc = train_acc, .lr = lr,
                            .seconds = seconds, .images_per_sec = seqs_per_sec};
    e->test_acc = nn_evaluate_text(r->model, r->ctx, &r->data->val, cfg->batch_size, &e->test_loss, NULL);
    if (h->best_epoch < 1 || e->test_acc > h->epochs[h->best_epoch - 1].test_acc) h->best_epoch = epoch;
    if (r->metrics && nn_metrics_write(r->metrics, e, NULL) != 0) return -1;
    if (cfg->save_path && save(cfg, r->data, r->model, epoch) != 0) return -1;
    if (cfg->on_epoch && cfg->on_epoch(cfg->user, h) != 0) return -1;
    return 0;
}

nn_train_status nn_train_classify_text(const nn_train_config *cfg, const nn_text *data, nn_model *model,
                                       nn_history *hist) {
    classify_run r = {.cfg = cfg, .data = data, .model = model, .hist = hist};
    memset(hist, 0, sizeof *hist);
    if (cfg->spec) memset(model, 0, sizeof *model);
    nn_precision old_precision = nn_get_precision();
    nn_train_status status = NN_TRAIN_FAILED;
    if (classify_start(&r) != 0 || nn_set_precision(cfg->precision) != 0) goto done;
    long batches = nn_text_batcher_num_batches(&r.batcher), step = 0;
    nn_train_progress progress = {.label = cfg->label, .epochs = cfg->epochs, .batches = batches};
    double t0 = nn_seconds(), lr = 0.0;
    status = NN_TRAIN_FINISHED;
    for (int epoch = 1; epoch <= cfg->epochs && status == NN_TRAIN_FINISHED; epoch++) {
        double loss_sum = 0.0, t_epoch = nn_seconds();
        long correct = 0, seen = 0;
        int n, width;
        nn_text_batcher_start_epoch(&r.batcher);
        progress.epoch = epoch;
        progress.batch = 0;
        while ((n = nn_text_batcher_next(&r.batcher, r.ids, r.lengths, r.labels, &width)) > 0) {
            if (cfg->stop && *cfg->stop) {
                nn_error("interrupted in epoch %d%s", epoch,
                         cfg->save_path && epoch > 1 ? "; the last epoch's checkpoint stays" : "");
                status = NN_TRAIN_INTERRUPTED;
                break;
            }
            nn_ctx_reset(r.ctx);
            nn_tensor *logits = nn_model_forward_tokens(model, r.ctx, r.ids, n, width, r.lengths, &r.dropout_rng);
            nn_tensor *loss = nn_cross_entropy(r.ctx, logits, r.labels, cfg->label_smoothing);
            lr = nn_schedule_lr(&r.sched, step);
            step++;
            if (!isfinite(loss->data[0])) {
                nn_error("the loss became %s at step %ld with learning rate %g",
                         isnan(loss->data[0]) ? "NaN" : "infinite", step, lr);
                status = NN_TRAIN_DIVERGED;
                break;
            }
            nn_params_zero_grad(&model->params);
            nn_backward(r.ctx, loss);
            if (cfg->clip > 0.0f) nn_clip_grad_norm(&model->params, cfg->clip);
            nn_optim_step(&r.opt, (float)lr);
            loss_sum += (double)loss->data[0] * n;
            int C = logits->shape[1];
            for (int i = 0; i < n; i++) correct += argmax(logits->data + (size_t)i * C, C) == r.labels[i];
            seen += n;
            if (cfg->on_progress) {
                double elapsed = nn_seconds() - t_epoch;
                progress.batch++;
                progress.step = step;
                progress.loss = loss->data[0];
                progress.images_per_sec = elapsed > 0 ? (double)seen / elapsed : 0.0;
                cfg->on_progress(cfg->user, &progress);
            }
        }
        if (status != NN_TRAIN_FINISHED) break;
        double epoch_seconds = nn_seconds() - t_epoch;
        if (classify_epoch_end(&r, epoch, loss_sum / seen, (double)correct / seen, lr, nn_seconds() - t0,
                               epoch_seconds > 0 ? seen / epoch_seconds : 0.0) != 0)
            status = NN_TRAIN_FAILED;
    }
done:
    nn_set_precision(old_precision);
    if (nn_metrics_close(r.metrics) != 0 && status >= 0) status = NN_TRAIN_FAILED;
    nn_optim_free(&r.opt);
    nn_text_batcher_free(&r.batcher);
    if (r.ctx) nn_ctx_free(r.ctx);
    free(r.ids);
    free(r.lengths);
    free(r.labels);
    return status;
}
