/* A text classifier's training run, by epochs: each epoch the training
 * split's sequences, shuffled, in padded batches with their lengths and
 * labels; the cross-entropy of each sequence's class scores, backward, clip,
 * an optimiser step; after the epoch the validation split's loss and
 * accuracy, a row of metrics, a resumable checkpoint (with the vocabulary
 * and the class names) and the program's callback. The run ends on the
 * weights of its best epoch by validation accuracy, as an image run with a
 * validation split does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "train/text_run.h"

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

/* Everything a run holds while it trains, beside the shared scaffolding. */
typedef struct classify_run {
    text_run run;
    nn_history *hist;
    nn_text_batcher batcher;
    nn_metrics_file *metrics;
    int *ids, *lengths, *labels;
} classify_run;

static int classify_start(classify_run *r) {
    const nn_train_config *cfg = r->run.cfg;
    const nn_text *data = r->run.data;
    if (data->kind != NN_TEXT_CLASSES)
        return nn_error("a text classifier trains on one file per class, not on %s data", nn_text_kind_name(data->kind));
    if (cfg->epochs < 1 || cfg->batch_size < 1)
        return nn_error("a text classifier's run needs epochs and batch size of at least 1 (%d, %d)", cfg->epochs,
                        cfg->batch_size);
    if (data->val.n_seqs < 1) return nn_error("the validation split holds no sequences");
    if (nn_text_batcher_init(&r->batcher, &data->train, cfg->batch_size, true, cfg->seed) != 0) return -1;
    nn_history *h = r->hist;
    h->epochs = nn_xcalloc((size_t)cfg->epochs, sizeof *h->epochs);
    r->run.st.loader_rng = r->batcher.rng;
    long batches = nn_text_batcher_num_batches(&r->batcher);
    if (text_run_start(&r->run, data->n_classes, batches * cfg->epochs, true) != 0) return -1;
    if (r->run.history && train_history_parse(r->run.history, h, cfg->epochs) != 0)
        return nn_error("%s: metadata 'nn.train.history' is malformed (or longer than the run's epochs)",
                        cfg->resume_path);
    h->best_epoch = r->run.best_epoch;
    int width = data->train.max_len > 0 ? data->train.max_len : 1;
    r->ids = nn_xmalloc((size_t)cfg->batch_size * (size_t)width * sizeof *r->ids);
    r->lengths = nn_xmalloc((size_t)cfg->batch_size * sizeof *r->lengths);
    r->labels = nn_xmalloc((size_t)cfg->batch_size * sizeof *r->labels);
    if (cfg->metrics_path) {
        /* Rewritten from the history: after a resume it holds the rows before. */
        if (!(r->metrics = nn_metrics_open(cfg->metrics_path, NULL, 0))) return -1;
        for (int i = 0; i < h->n; i++)
            if (nn_metrics_write(r->metrics, &h->epochs[i], NULL) != 0) return -1;
    }
    return 0;
}

/* The checkpoint of the position st (the history so far in it). */
static int classify_save(classify_run *r, const train_state *st, const char *where) {
    char *history = train_history_str(r->hist, false);
    int rc = where ? text_run_interrupt(&r->run, r->hist->best_epoch, history, where)
                   : text_run_save(&r->run, st, r->hist->best_epoch, history);
    free(history);
    return rc;
}

/* One pass over the training split from where the state stands: forward,
 * loss, step, for each batch. The epoch's order comes from the generator as
 * it was when the epoch began; a resumed run re-derives it and skips the
 * batches done. *t0: when the epoch's training began, less the time spent
 * on it before an interruption. */
static int classify_epoch(classify_run *r, double *lr, double *t0) {
    text_run *run = &r->run;
    const nn_train_config *cfg = run->cfg;
    train_state *st = &run->st;
    nn_train_progress progress = {.label = cfg->label, .epoch = st->epoch, .epochs = cfg->epochs,
                                  .batches = nn_text_batcher_num_batches(&r->batcher)};
    r->batcher.rng = st->loader_rng;
    nn_text_batcher_start_epoch(&r->batcher);
    r->batcher.pos = (int)(st->batch * cfg->batch_size);
    *t0 = nn_seconds() - st->train_seconds;
    int n, width;
    while ((n = nn_text_batcher_next(&r->batcher, r->ids, r->lengths, r->labels, &width)) > 0) {
        if (cfg->stop && *cfg->stop) {
            char where[64];
            st->train_seconds = nn_seconds() - *t0;
            snprintf(where, sizeof where, "epoch %d, step %ld", st->epoch, st->batch);
            return classify_save(r, st, where);
        }
        text_run_hold_average(run, false); /* train the raw weights */
        nn_ctx_reset(run->ctx);
        nn_tensor *logits =
            nn_model_forward_tokens(run->model, run->ctx, r->ids, n, width, r->lengths, &st->dropout_rng);
        nn_tensor *loss = nn_cross_entropy(run->ctx, logits, r->labels, cfg->label_smoothing);
        if (text_run_step(run, loss, lr) != 0) return -1;
        st->loss_sum += (double)loss->data[0] * n;
        int C = logits->shape[1];
        for (int i = 0; i < n; i++) st->correct += argmax(logits->data + (size_t)i * C, C) == r->labels[i];
        st->seen += n;
        st->batch++;
        if (cfg->on_progress) {
            double elapsed = nn_seconds() - *t0;
            progress.batch = st->batch;
            progress.step = st->step;
            progress.loss = loss->data[0];
            progress.images_per_sec = elapsed > 0 ? (double)st->seen / elapsed : 0.0;
            cfg->on_progress(cfg->user, &progress);
        }
    }
    return 0;
}

/* After an epoch, with the average if any: validation, the history's row,
 * the best weights, metrics, the checkpoint of the position after it, then
 * the callback. seconds in the row count from the run's start. */
static int classify_epoch_end(classify_run *r, double lr, double t0) {
    text_run *run = &r->run;
    const nn_train_config *cfg = run->cfg;
    train_state *st = &run->st;
    nn_history *h = r->hist;
    double train_seconds = nn_seconds() - t0, before = h->n ? h->epochs[h->n - 1].seconds : 0.0;
    text_run_hold_average(run, true);
    nn_epoch_metrics *e = &h->epochs[h->n++];
    *e = (nn_epoch_metrics){.epoch = st->epoch, .train_loss = st->loss_sum / st->seen,
                            .train_acc = (double)st->correct / st->seen, .lr = lr, .seconds = before + train_seconds,
                            .images_per_sec = train_seconds > 0 ? st->seen / train_seconds : 0.0};
    e->test_acc = nn_evaluate_text(run->model, run->ctx, &run->data->val, cfg->batch_size, &e->test_loss, NULL);
    if (e->test_acc > st->best) {
        st->best = e->test_acc;
        st->since_best = 0;
        h->best_epoch = st->epoch;
        text_run_keep_best(run);
    } else {
        st->since_best++;
    }
    if (r->metrics && nn_metrics_write(r->metrics, e, NULL) != 0) return -1;
    /* The position after this epoch: the next one starts from here. */
    train_state next = *st;
    next.epoch = st->epoch + 1;
    next.batch = next.seen = next.correct = 0;
    next.loss_sum = next.train_seconds = 0.0;
    next.loader_rng = r->batcher.rng;
    if (cfg->save_path && classify_save(r, &next, NULL) != 0) return -1;
    /* After the checkpoint, so a callback that fails (a plot that cannot be
     * written) still leaves this epoch saved. */
    if (cfg->on_epoch && cfg->on_epoch(cfg->user, h) != 0) return -1;
    *st = next;
    return 0;
}

nn_train_status nn_train_classify_text(const nn_train_config *cfg, const nn_text *data, nn_model *model,
                                       nn_history *hist) {
    classify_run r = {.hist = hist};
    text_run *run = &r.run;
    text_run_init(run, cfg, data, model);
    memset(hist, 0, sizeof *hist);
    if (cfg->spec) memset(model, 0, sizeof *model);
    int rc = classify_start(&r);
    while (rc == 0 && run->st.epoch <= cfg->epochs) {
        double lr = nn_schedule_lr(&run->sched, run->st.step > 0 ? run->st.step - 1 : 0), t0;
        if ((rc = classify_epoch(&r, &lr, &t0)) == 0) rc = classify_epoch_end(&r, lr, t0);
    }
    /* The run ends on its best epoch's weights, by validation accuracy. */
    if (rc == 0 && text_run_finish_best(run) != 0) rc = -1;
    text_run_hold_average(run, true);
    nn_train_status status = rc == 0 ? NN_TRAIN_FINISHED : run->failure;
    if (r.metrics && nn_metrics_close(r.metrics) != 0 && status >= 0) status = NN_TRAIN_FAILED;
    text_run_end(run);
    nn_text_batcher_free(&r.batcher);
    free(r.ids);
    free(r.lengths);
    free(r.labels);
    return status;
}
