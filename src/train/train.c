/* The training loop: for each epoch, shuffle, and for each mini-batch run the
 * forward pass, the loss, backward, an optimiser step; then evaluate, report,
 * and checkpoint. All per-step memory comes from the context's arena. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/train.h"
#include "train/state.h"
#include "core/util.h"

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* The loss of a batch; MSE compares softmax probabilities with one-hot
 * targets (what the course uses to show why cross-entropy learns faster). */
static nn_tensor *batch_loss(nn_ctx *ctx, nn_loss_kind kind, nn_tensor *logits, const int *labels, float smoothing) {
    if (kind == NN_LOSS_CE) return nn_cross_entropy(ctx, logits, labels, smoothing);
    nn_tensor *onehot = nn_input(ctx, "onehot", 2, logits->shape);
    int B = logits->shape[0], C = logits->shape[1];
    memset(onehot->data, 0, onehot->size * sizeof(float));
    for (int b = 0; b < B; b++) onehot->data[(size_t)b * C + labels[b]] = 1.0f;
    return nn_mse(ctx, nn_softmax(ctx, logits), onehot);
}

/* Points x at the first n examples it holds (the last batch may be short). */
static void shrink_batch(nn_tensor *x, int n) {
    x->size = x->size / (size_t)x->shape[0] * (size_t)n;
    x->shape[0] = n;
}

/* A batch of images as the model takes them: [B, channels, rows, cols]. */
static nn_tensor *image_batch(nn_ctx *ctx, const nn_model *m, const nn_dataset *ds, int B) {
    return nn_input(ctx, "x", 4, (int[]){B, m->in_shape[0], ds->rows, ds->cols});
}

double nn_evaluate(nn_model *m, nn_ctx *ctx, const nn_dataset *ds, nn_loss_kind loss_kind, double *loss,
                   nn_confusion *conf) {
    enum { EVAL_BATCH = 1000 };
    bool grad = nn_set_grad_enabled(ctx, false), training = nn_set_training(ctx, false);
    int C = m->classes;
    nn_loader l;
    nn_loader_init(&l, ds, EVAL_BATCH, 0, 0, m->input_mean, m->input_std);
    nn_loader_start_epoch(&l);
    int labels[EVAL_BATCH];
    double loss_sum = 0.0;
    long correct = 0;
    for (;;) {
        nn_ctx_reset(ctx);
        nn_tensor *x = image_batch(ctx, m, ds, EVAL_BATCH);
        int n = nn_loader_next(&l, x->data, labels);
        if (n == 0) break;
        shrink_batch(x, n);
        nn_tensor *logits = nn_model_forward(m, ctx, x, NULL);
        loss_sum += (double)batch_loss(ctx, loss_kind, logits, labels, 0.0f)->data[0] * n;
        for (int i = 0; i < n; i++) {
            int pred = argmax(logits->data + (size_t)i * C, C);
            correct += pred == labels[i];
            if (conf) nn_confusion_add(conf, labels[i], pred);
        }
    }
    nn_ctx_reset(ctx);
    nn_loader_free(&l);
    nn_set_grad_enabled(ctx, grad);
    nn_set_training(ctx, training);
    if (loss) *loss = loss_sum / ds->n;
    return (double)correct / ds->n;
}

void nn_history_free(nn_history *h) {
    free(h->epochs);
    free(h->val_loss);
    free(h->val_acc);
    memset(h, 0, sizeof *h);
}

/* Rewrites the metrics file from the whole history (after a resume it
 * already holds the epochs before the interruption). */
static nn_metrics_file *open_metrics(const nn_train_config *cfg, const nn_history *h, bool has_val) {
    const char *val_cols[] = {"val_loss", "val_acc"};
    nn_metrics_file *f = nn_metrics_open(cfg->metrics_path, val_cols, has_val ? 2 : 0);
    for (int i = 0; f && i < h->n; i++) {
        double extra[2] = {h->val_loss[i], h->val_acc[i]};
        if (nn_metrics_write(f, &h->epochs[i], extra) != 0) {
            nn_metrics_close(f);
            return NULL;
        }
    }
    return f;
}

/* With weight averaging, puts the average (want = true) or the raw weights
 * into the model; *holds says which it has. */
static void hold_average(nn_ema *ema, nn_model *model, bool *holds, bool want) {
    if (ema->avg && *holds != want) {
        nn_ema_swap(ema, &model->params);
        *holds = want;
    }
}

/* The best weights of a validation run: parameters, then running statistics. */
static void snapshot(const nn_model *m, float *best) {
    memcpy(best, m->params.data, m->params.count * sizeof(float));
    if (m->state.count) memcpy(best + m->params.count, m->state.data, m->state.count * sizeof(float));
}

static void restore(nn_model *m, const float *best) {
    memcpy(m->params.data, best, m->params.count * sizeof(float));
    if (m->state.count) memcpy(m->state.data, best + m->params.count, m->state.count * sizeof(float));
}

/* The run's model, planned: from cfg->spec, or as the caller planned it
 * (which must be for this data). */
static int plan_model(const nn_train_config *cfg, const nn_train_data *data, nn_model *model) {
    const int in_shape[3] = {data->channels, data->train.rows, data->train.cols};
    NN_CHECK(data->channels >= 1 && data->classes >= 1,
             "nn_train_data has no channels or classes (nn_train_data_load sets them)");
    if (cfg->spec) return nn_model_plan(model, cfg->spec, in_shape, data->classes);
    NN_CHECK(model->spec, "nn_train: no cfg->spec and no planned model");
    if (memcmp(model->in_shape, in_shape, sizeof in_shape) != 0 || model->classes != data->classes)
        return nn_error("the model '%s' was planned for [%d,%d,%d] inputs and %d classes; the data has "
                        "[%d,%d,%d] and %d",
                        model->spec, model->in_shape[0], model->in_shape[1], model->in_shape[2], model->classes,
                        in_shape[0], in_shape[1], in_shape[2], data->classes);
    return 0;
}

/* The spec of a resumed checkpoint must be the run's: compared in canonical
 * form, so "conv(32,3,stride=1)" and "conv(32,3)" agree. */
static int check_resumed_spec(const char *path, const char *want, const nn_model *model) {
    if (strcmp(want, nn_model_spec(model)) != 0)
        return nn_error("%s: holds the model '%s', but the run is for '%s'", path, nn_model_spec(model), want);
    return 0;
}

/* Everything a run holds while it trains. */
typedef struct run {
    const nn_train_config *cfg;
    const nn_train_data *data;
    nn_model *model;
    nn_history *hist;
    nn_loader loader;
    train_state st;
    nn_optim opt;
    nn_schedule sched;
    /* With weight averaging, the average is what is evaluated, kept as best
     * and saved; ema.avg then holds the raw weights (see nn_ema_swap). */
    nn_ema ema;
    bool holds_average;
    float *best_params; /* with a validation set: the best epoch's parameters and state */
    float *augment_scratch; /* augmentation distorts the batch in place */
    float black;            /* a 0 pixel, normalised: what augmentation fills in */
    nn_ctx *ctx;
    int *labels;
    nn_metrics_file *metrics;
    nn_train_status failure; /* what a failed step means */
} run;

/* A fresh model from the seed, or the model, position, optimiser state and
 * averages of the checkpoint being resumed (which must match the run's
 * settings). The loader, state and history are set up first. */
static int run_start(run *r) {
    const nn_train_config *cfg = r->cfg;
    nn_safetensors resumed;
    if (plan_model(cfg, r->data, r->model) != 0) return -1;
    if (cfg->resume_path) {
        char *want = nn_xstrdup(nn_model_spec(r->model));
        nn_model_free(r->model);
        int rc = train_state_load(cfg->resume_path, r->model, &r->st, r->hist, cfg->epochs, &resumed);
        if (rc == 0 && (check_resumed_spec(cfg->resume_path, want, r->model) != 0 ||
                        train_config_check(cfg->resume_path, cfg, r->data) != 0)) {
            nn_st_free(&resumed);
            rc = -1;
        }
        free(want);
        if (rc != 0) return -1;
    } else {
        nn_rng init_rng;
        nn_rng_seed(&init_rng, cfg->seed, 1);
        nn_model_build(r->model, &init_rng);
        r->model->input_mean = r->data->mean;
        r->model->input_std = r->data->std;
    }
    size_t best_count = r->model->params.count + r->model->state.count;
    nn_optim_init(&r->opt, &r->model->params, &cfg->opt);
    if (cfg->ema > 0.0f) nn_ema_init(&r->ema, &r->model->params, cfg->ema);
    if (r->data->has_val) {
        r->best_params = nn_xmalloc(best_count * sizeof(float));
        snapshot(r->model, r->best_params);
    }
    int rc = 0;
    if (cfg->resume_path) {
        /* The file's model tensors are the average; train.raw goes into
         * ema.avg, and the swap puts each where training expects it. */
        rc = train_state_load_optim(cfg->resume_path, &resumed, &r->opt, r->best_params, best_count, r->ema.avg);
        nn_st_free(&resumed);
        r->ema.updates = r->st.step;
        r->holds_average = true;
    }
    return rc;
}

/* Ctrl-C (cfg->stop): a checkpoint at the exact step, then the error saying so. */
static int interrupt(run *r, double t0) {
    const nn_train_config *cfg = r->cfg;
    r->st.train_seconds = nn_seconds() - t0;
    hold_average(&r->ema, r->model, &r->holds_average, true);
    r->failure = NN_TRAIN_INTERRUPTED;
    if (!cfg->save_path)
        return nn_error("interrupted at epoch %d, step %ld (the run has no save path, so no checkpoint)",
                        r->st.epoch, r->st.batch);
    if (train_state_save(cfg->save_path, cfg, r->data, r->model, &r->opt, &r->st, r->hist, r->data->has_val,
                         r->best_params, r->ema.avg) != 0) {
        r->failure = NN_TRAIN_FAILED; /* the checkpoint could not be written */
        return -1;
    }
    return nn_error("interrupted at epoch %d, step %ld; resumable checkpoint saved to %s", r->st.epoch, r->st.batch,
                    cfg->save_path);
}

/* One pass over the training set, from where the state says it stands: for
 * each batch, augment, forward, loss, backward, clip, step, average. On
 * return *lr is the last step's learning rate and *t0 when the epoch's
 * training began (less the time already spent before an interruption). */
static int train_epoch(run *r, double *lr, double *t0) {
    const nn_train_config *cfg = r->cfg;
    const nn_dataset *train = &r->data->train;
    train_state *st = &r->st;
    int B = cfg->batch_size, C = r->model->classes;
    nn_train_progress progress = {.label = cfg->label, .epoch = st->epoch, .epochs = cfg->epochs,
                                  .batches = nn_loader_num_batches(&r->loader)};
    hold_average(&r->ema, r->model, &r->holds_average, false); /* train the raw weights */
    /* The order of an epoch comes from the generator as it was when the
     * epoch began; a resumed run re-derives it and skips what was done. */
    r->loader.rng = st->loader_rng;
    nn_loader_start_epoch(&r->loader);
    r->loader.pos = (int)(st->batch * B);
    *t0 = nn_seconds() - st->train_seconds;
    *lr = nn_schedule_lr(&r->sched, st->step > 0 ? st->step - 1 : 0);
    int rc = 0;
    for (;;) {
        if (cfg->stop && *cfg->stop) {
            rc = interrupt(r, *t0);
            break;
        }
        nn_ctx_reset(r->ctx);
        nn_tensor *x = image_batch(r->ctx, r->model, train, B);
        int n = nn_loader_next(&r->loader, x->data, r->labels);
        if (n == 0) break;
        shrink_batch(x, n);
        if (r->augment_scratch)
            nn_augment_batch(&cfg->augment, x->data, n, train->rows, train->cols, r->black, &st->augment_rng,
                             r->augment_scratch);
        nn_tensor *logits = nn_model_forward(r->model, r->ctx, x, &st->dropout_rng);
        nn_tensor *loss = batch_loss(r->ctx, cfg->loss, logits, r->labels, cfg->label_smoothing);
        if (!isfinite(loss->data[0])) {
            bool kept = cfg->save_path && r->hist->n > 0;
            rc = nn_error("the loss became %s at epoch %d, step %ld with learning rate %g; stopping%s%s",
                          isnan(loss->data[0]) ? "NaN" : "infinite", st->epoch, st->batch + 1,
                          *lr, kept ? "; the last good checkpoint is " : "",
                          kept ? cfg->save_path : "");
            r->failure = NN_TRAIN_DIVERGED;
            break;
        }
        nn_params_zero_grad(&r->model->params);
        nn_backward(r->ctx, loss);
        if (cfg->graph_path && st->step == 0 && nn_graph_save_dot(r->ctx, cfg->graph_path) != 0) {
            rc = -1;
            break;
        }
        if (cfg->clip > 0.0f) nn_clip_grad_norm(&r->model->params, cfg->clip);
        *lr = nn_schedule_lr(&r->sched, st->step++);
        nn_optim_step(&r->opt, (float)*lr);
        if (r->ema.avg) nn_ema_update(&r->ema, &r->model->params);
        st->loss_sum += (double)loss->data[0] * n;
        for (int i = 0; i < n; i++) st->correct += argmax(logits->data + (size_t)i * C, C) == r->labels[i];
        st->seen += n;
        st->batch++;
        if (cfg->on_progress) {
            double elapsed = nn_seconds() - *t0;
            progress.batch = st->batch;
            progress.step = st->step;
            progress.loss = loss->data[0];
            progress.images_per_sec = elapsed > 0 ? st->seen / elapsed : 0.0;
            cfg->on_progress(cfg->user, &progress);
        }
    }
    return rc;
}

/* The epoch's row of the history: training sums, then the (averaged) model
 * on the test set and the validation set. Returns the score the best epoch
 * is chosen by: validation accuracy when there is a validation set. */
static double evaluate_epoch(run *r, double lr, double t0) {
    double train_seconds = nn_seconds() - t0;
    nn_history *h = r->hist;
    hold_average(&r->ema, r->model, &r->holds_average, true); /* evaluate and save the average */
    nn_epoch_metrics *m = &h->epochs[h->n];
    m->epoch = r->st.epoch;
    m->train_loss = r->st.loss_sum / r->st.seen;
    m->train_acc = (double)r->st.correct / r->st.seen;
    m->test_acc = nn_evaluate(r->model, r->ctx, &r->data->test, r->cfg->loss, &m->test_loss, NULL);
    m->lr = lr;
    m->images_per_sec = r->st.seen / train_seconds;
    double score = m->test_acc;
    if (r->data->has_val) {
        h->val_acc[h->n] = nn_evaluate(r->model, r->ctx, &r->data->val, r->cfg->loss, &h->val_loss[h->n], NULL);
        score = h->val_acc[h->n];
    }
    m->seconds = nn_seconds() - t0;
    h->n++;
    return score;
}

/* Best-epoch tracking: a better score keeps these weights aside. */
static void track_best(run *r, double score) {
    if (score > r->st.best) {
        r->st.best = score;
        r->hist->best_epoch = r->st.epoch;
        r->st.since_best = 0;
        if (r->best_params) snapshot(r->model, r->best_params);
    } else {
        r->st.since_best++;
    }
}

/* The epoch's outputs: metrics row, a resumable checkpoint of the position
 * after it, then the callback. */
static int finish_epoch(run *r) {
    const nn_train_config *cfg = r->cfg;
    nn_history *h = r->hist;
    double extra[2] = {h->val_loss[h->n - 1], h->val_acc[h->n - 1]};
    if (r->metrics && nn_metrics_write(r->metrics, &h->epochs[h->n - 1], extra) != 0) return -1;
    /* The position after this epoch: the next one starts from here. */
    train_state next = r->st;
    next.epoch = r->st.epoch + 1;
    next.batch = next.seen = next.correct = 0;
    next.loss_sum = next.train_seconds = 0.0;
    next.loader_rng = r->loader.rng;
    if (cfg->save_path && train_state_save(cfg->save_path, cfg, r->data, r->model, &r->opt, &next, h,
                                           r->data->has_val, r->best_params, r->ema.avg) != 0)
        return -1;
    /* After the checkpoint, so a callback that fails (a plot that cannot be
     * written) still leaves this epoch saved. */
    if (cfg->on_epoch && cfg->on_epoch(cfg->user, h) != 0) return -1;
    r->st = next;
    r->st.epoch--; /* the loop's increment */
    return 0;
}

nn_train_status nn_train(const nn_train_config *cfg, const nn_train_data *data, nn_model *model, nn_history *hist) {
    const nn_dataset *train = &data->train;
    int B = cfg->batch_size;
    run r = {.cfg = cfg, .data = data, .model = model, .hist = hist, .failure = NN_TRAIN_FAILED};
    memset(hist, 0, sizeof *hist);
    nn_precision outer = nn_get_precision();
    if (nn_set_precision(cfg->precision) != 0) return NN_TRAIN_FAILED;
    hist->has_val = data->has_val;
    hist->epochs = nn_xcalloc((size_t)cfg->epochs, sizeof *hist->epochs);
    hist->val_loss = nn_xcalloc((size_t)cfg->epochs, sizeof(double));
    hist->val_acc = nn_xcalloc((size_t)cfg->epochs, sizeof(double));
    nn_loader_init(&r.loader, train, B, 1, cfg->seed, data->mean, data->std);
    r.st = (train_state){.epoch = 1, .loader_rng = r.loader.rng, .best = -1.0};
    nn_rng_seed(&r.st.dropout_rng, cfg->seed, 2);
    nn_rng_seed(&r.st.augment_rng, cfg->seed, 3);
    if (run_start(&r) != 0) {
        nn_model_free(model);
        nn_loader_free(&r.loader);
        nn_history_free(hist);
        nn_set_precision(outer);
        return NN_TRAIN_FAILED;
    }
    if (!nn_augment_is_identity(&cfg->augment))
        r.augment_scratch = nn_xmalloc(nn_augment_scratch_floats(B, train->rows, train->cols) * sizeof(float));
    r.black = (float)((0.0 - data->mean) / (data->std > 0.0f ? data->std : 1.0f));
    r.sched = cfg->sched;
    r.sched.total_steps = (long)cfg->epochs * nn_loader_num_batches(&r.loader);
    /* A step schedule without a step size decays after each third of the run. */
    if (r.sched.kind == NN_SCHED_STEP && r.sched.step_size <= 0)
        r.sched.step_size = r.sched.total_steps / 3 > 0 ? r.sched.total_steps / 3 : 1;
    r.ctx = nn_ctx_new(0);
    r.labels = nn_xmalloc((size_t)B * sizeof(int));
    int rc = 0;
    if (cfg->metrics_path && !(r.metrics = open_metrics(cfg, hist, data->has_val))) rc = -1;

    for (; rc == 0 && r.st.epoch <= cfg->epochs; r.st.epoch++) {
        double lr, t0;
        if ((rc = train_epoch(&r, &lr, &t0)) != 0) break;
        track_best(&r, evaluate_epoch(&r, lr, t0));
        bool early_stop = cfg->early_stop > 0 && data->has_val && r.st.since_best >= cfg->early_stop;
        if ((rc = finish_epoch(&r)) != 0) break;
        if (early_stop) {
            hist->stopped_early = true;
            break;
        }
    }
    hold_average(&r.ema, model, &r.holds_average, true);
    /* A run with a validation set ends on its best weights. */
    if (rc == 0 && r.best_params) {
        restore(model, r.best_params);
        if (cfg->save_path && nn_model_save(model, cfg->save_path) != 0) rc = -1;
    }
    if (r.metrics && nn_metrics_close(r.metrics) != 0 && rc == 0) rc = -1;
    free(r.best_params);
    free(r.augment_scratch);
    nn_ema_free(&r.ema);
    free(r.labels);
    nn_ctx_free(r.ctx);
    nn_optim_free(&r.opt);
    nn_loader_free(&r.loader);
    nn_set_precision(outer);
    if (rc != 0) return r.failure;
    return hist->stopped_early ? NN_TRAIN_STOPPED_EARLY : NN_TRAIN_FINISHED;
}

int nn_train_data_load(nn_train_data *d, const char *dir, int train_limit, float val_split) {
    memset(d, 0, sizeof *d);
    if (nn_dataset_load(&d->train, dir, "train") != 0) return -1;
    d->channels = 1;
    d->classes = NN_DATA_CLASSES;
    d->dir = dir;
    d->train_limit = train_limit > 0 ? train_limit : 0;
    d->val_split = val_split > 0.0f ? val_split : 0.0f;
    if (nn_dataset_load(&d->test, dir, "t10k") != 0) {
        nn_dataset_free(&d->train);
        return -1;
    }
    if (train_limit > 0 && train_limit < d->train.n) nn_dataset_limit(&d->train, train_limit);
    if (val_split > 0.0f) {
        int n = d->train.n, n_val = (int)lroundf(val_split * (float)n);
        if (n_val < 1 || nn_dataset_split(&d->train, n_val, &d->val) != 0) {
            nn_train_data_free(d);
            return nn_error("a validation split of %g leaves no validation or no training examples out of %d",
                            val_split, n);
        }
        d->has_val = true;
    }
    nn_dataset_mean_std(&d->train, &d->mean, &d->std);
    return 0;
}

void nn_train_data_free(nn_train_data *d) {
    nn_dataset_free(&d->train);
    nn_dataset_free(&d->test);
    if (d->has_val) nn_dataset_free(&d->val);
    memset(d, 0, sizeof *d);
}
