/* The training loop: for each epoch, shuffle, and for each mini-batch run the
 * forward pass, the loss, backward, an optimiser step; then evaluate, report,
 * and checkpoint. All per-step memory comes from the context's arena. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/train.h"
#include "train/state.h"

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

/* A batch of images as the model takes them: [B, 1, rows, cols]. */
static nn_tensor *image_batch(nn_ctx *ctx, const nn_dataset *ds, int B) {
    return nn_input(ctx, "x", 4, (int[]){B, 1, ds->rows, ds->cols});
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
        nn_tensor *x = image_batch(ctx, ds, EVAL_BATCH);
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

/* One line per epoch on cfg->log. */
static void log_epoch(const nn_train_config *cfg, const nn_history *h, bool has_val) {
    const nn_epoch_metrics *m = &h->epochs[h->n - 1];
    FILE *f = cfg->log;
    fprintf(f, "%s %2d/%d  train loss %.4f acc %6.2f%%  ", cfg->label ? cfg->label : "epoch", m->epoch, cfg->epochs,
            m->train_loss, 100 * m->train_acc);
    if (has_val) fprintf(f, "val loss %.4f acc %6.2f%%  ", h->val_loss[h->n - 1], 100 * h->val_acc[h->n - 1]);
    fprintf(f, "test loss %.4f acc %6.2f%%  lr %.3g  %.1f s  %.0f img/s\n", m->test_loss, 100 * m->test_acc, m->lr,
            m->seconds, m->images_per_sec);
    fflush(f);
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

/* The spec of a resumed checkpoint must be the run's: compared in canonical
 * form, so "conv(32,3,stride=1)" and "conv(32,3)" agree. */
static int check_resumed_spec(const nn_train_config *cfg, const nn_model *model, const int in_shape[3]) {
    if (!cfg->spec) return 0;
    nn_model want;
    if (nn_model_plan(&want, cfg->spec, in_shape, NN_DATA_CLASSES) != 0) return -1;
    char a[NN_SPEC_MAX], b[NN_SPEC_MAX];
    if (strcmp(nn_model_spec(&want, a, sizeof a), nn_model_spec(model, b, sizeof b)) != 0)
        return nn_error("%s: holds the model '%s', but the run is for '%s'", cfg->resume_path, b, a);
    return 0;
}

nn_train_status nn_train(const nn_train_config *cfg, const nn_train_data *data, nn_model *model, nn_history *hist) {
    const nn_dataset *train = &data->train;
    int B = cfg->batch_size;
    const int in_shape[3] = {1, train->rows, train->cols};
    memset(hist, 0, sizeof *hist);
    hist->has_val = data->has_val;
    hist->epochs = nn_xcalloc((size_t)cfg->epochs, sizeof *hist->epochs);
    hist->val_loss = nn_xcalloc((size_t)cfg->epochs, sizeof(double));
    hist->val_acc = nn_xcalloc((size_t)cfg->epochs, sizeof(double));

    nn_loader loader;
    nn_loader_init(&loader, train, B, 1, cfg->seed, data->mean, data->std);
    train_state st = {.epoch = 1, .loader_rng = loader.rng, .best = -1.0};
    nn_rng_seed(&st.dropout_rng, cfg->seed, 2);
    nn_rng_seed(&st.augment_rng, cfg->seed, 3);
    nn_safetensors resumed;
    if (cfg->resume_path) {
        if (train_state_load(cfg->resume_path, model, &st, hist, cfg->epochs, &resumed) != 0) {
            nn_loader_free(&loader);
            nn_history_free(hist);
            return NN_TRAIN_FAILED;
        }
        if (check_resumed_spec(cfg, model, in_shape) != 0 || train_config_check(cfg->resume_path, cfg, data) != 0) {
            nn_st_free(&resumed);
            nn_model_free(model);
            nn_loader_free(&loader);
            nn_history_free(hist);
            return NN_TRAIN_FAILED;
        }
    } else {
        nn_rng init_rng;
        nn_rng_seed(&init_rng, cfg->seed, 1);
        if (nn_model_init(model, cfg->spec, in_shape, NN_DATA_CLASSES, &init_rng) != 0) {
            nn_loader_free(&loader);
            nn_history_free(hist);
            return NN_TRAIN_FAILED;
        }
        model->input_mean = data->mean;
        model->input_std = data->std;
    }
    size_t best_count = model->params.count + model->state.count;
    nn_optim opt;
    nn_optim_init(&opt, &model->params, &cfg->opt);
    /* With weight averaging, the average is what is evaluated, kept as best
     * and saved; ema.avg then holds the raw weights (see nn_ema_swap). */
    nn_ema ema = {0};
    bool holds_average = false;
    if (cfg->ema > 0.0f) nn_ema_init(&ema, &model->params, cfg->ema);
    /* With a validation set, the best weights are kept aside for the end. */
    float *best_params = data->has_val ? nn_xmalloc(best_count * sizeof(float)) : NULL;
    if (best_params) snapshot(model, best_params);
    int rc = 0;
    if (cfg->resume_path) {
        /* The file's model tensors are the average; train.raw goes into
         * ema.avg, and the swap puts each where training expects it. */
        rc = train_state_load_optim(cfg->resume_path, &resumed, &opt, best_params, best_count, ema.avg);
        nn_st_free(&resumed);
        ema.updates = st.step;
        holds_average = true;
    }
    int C = model->classes;
    nn_train_status failure = NN_TRAIN_FAILED; /* what a non-zero rc means */
    /* Augmentation distorts the batch in place; its scratch is made once. */
    bool augment = !nn_augment_is_identity(&cfg->augment);
    float *augment_scratch =
        augment ? nn_xmalloc(nn_augment_scratch_floats(B, train->rows, train->cols) * sizeof(float)) : NULL;
    float black = (float)((0.0 - data->mean) / (data->std > 0.0f ? data->std : 1.0f)); /* a 0 pixel, normalised */
    nn_schedule sched = cfg->sched;
    sched.total_steps = (long)cfg->epochs * nn_loader_num_batches(&loader);
    /* A step schedule without a step size decays after each third of the run. */
    if (sched.kind == NN_SCHED_STEP && sched.step_size <= 0)
        sched.step_size = sched.total_steps / 3 > 0 ? sched.total_steps / 3 : 1;
    nn_ctx *ctx = nn_ctx_new(0);
    int *labels = nn_xmalloc((size_t)B * sizeof(int));
    nn_metrics_file *metrics = NULL;
    if (rc == 0 && cfg->metrics_path && !(metrics = open_metrics(cfg, hist, data->has_val))) rc = -1;

    for (; rc == 0 && st.epoch <= cfg->epochs; st.epoch++) {
        nn_progress bar = {0};
        char label[64];
        snprintf(label, sizeof label, "%s %d/%d", cfg->label ? cfg->label : "epoch", st.epoch, cfg->epochs);
        nn_progress_begin(&bar, label, nn_loader_num_batches(&loader));
        hold_average(&ema, model, &holds_average, false); /* train the raw weights */
        /* The order of an epoch comes from the generator as it was when the
         * epoch began; a resumed run re-derives it and skips what was done. */
        loader.rng = st.loader_rng;
        nn_loader_start_epoch(&loader);
        loader.pos = (int)(st.batch * B);
        double t0 = nn_seconds() - st.train_seconds, lr = nn_schedule_lr(&sched, st.step > 0 ? st.step - 1 : 0);
        for (;;) {
            if (cfg->stop && *cfg->stop) {
                nn_progress_end(&bar);
                st.train_seconds = nn_seconds() - t0;
                hold_average(&ema, model, &holds_average, true);
                failure = NN_TRAIN_INTERRUPTED;
                if (!cfg->save_path)
                    rc = nn_error("interrupted at epoch %d, step %ld (no --save, so no checkpoint)", st.epoch, st.batch);
                else if (train_state_save(cfg->save_path, cfg, data, model, &opt, &st, hist, data->has_val, best_params,
                                          ema.avg) == 0)
                    rc = nn_error("interrupted at epoch %d, step %ld; checkpoint saved: resume with "
                                  "nn train --resume %s", st.epoch, st.batch, cfg->save_path);
                else
                    rc = -1, failure = NN_TRAIN_FAILED; /* the checkpoint could not be written */
                break;
            }
            nn_ctx_reset(ctx);
            nn_tensor *x = image_batch(ctx, train, B);
            int n = nn_loader_next(&loader, x->data, labels);
            if (n == 0) break;
            shrink_batch(x, n);
            if (augment)
                nn_augment_batch(&cfg->augment, x->data, n, train->rows, train->cols, black, &st.augment_rng,
                                 augment_scratch);
            nn_tensor *logits = nn_model_forward(model, ctx, x, &st.dropout_rng);
            nn_tensor *loss = batch_loss(ctx, cfg->loss, logits, labels, cfg->label_smoothing);
            if (!isfinite(loss->data[0])) {
                nn_progress_end(&bar);
                bool kept = cfg->save_path && hist->n > 0;
                rc = nn_error("loss became %s at epoch %d, step %ld; stopping (try a smaller --lr)%s%s",
                              isnan(loss->data[0]) ? "NaN" : "infinite", st.epoch, st.batch + 1,
                              kept ? "; the last good checkpoint is " : "", kept ? cfg->save_path : "");
                failure = NN_TRAIN_DIVERGED;
                break;
            }
            nn_params_zero_grad(&model->params);
            nn_backward(ctx, loss);
            if (cfg->graph_path && st.step == 0 && nn_graph_save_dot(ctx, cfg->graph_path) != 0) {
                nn_progress_end(&bar);
                rc = -1;
                break;
            }
            if (cfg->clip > 0.0f) nn_clip_grad_norm(&model->params, cfg->clip);
            lr = nn_schedule_lr(&sched, st.step++);
            nn_optim_step(&opt, (float)lr);
            if (ema.avg) nn_ema_update(&ema, &model->params);
            st.loss_sum += (double)loss->data[0] * n;
            for (int i = 0; i < n; i++) st.correct += argmax(logits->data + (size_t)i * C, C) == labels[i];
            st.seen += n;
            st.batch++;
            double elapsed = nn_seconds() - t0;
            nn_progress_update(&bar, st.batch, loss->data[0], elapsed > 0 ? st.seen / elapsed : 0.0);
            if (cfg->on_step) cfg->on_step(cfg->user, st.step);
        }
        if (rc != 0) break;
        nn_progress_end(&bar);
        double train_seconds = nn_seconds() - t0;
        hold_average(&ema, model, &holds_average, true); /* evaluate and save the average */
        nn_epoch_metrics *m = &hist->epochs[hist->n];
        m->epoch = st.epoch;
        m->train_loss = st.loss_sum / st.seen;
        m->train_acc = (double)st.correct / st.seen;
        m->test_acc = nn_evaluate(model, ctx, &data->test, cfg->loss, &m->test_loss, NULL);
        m->lr = lr;
        m->images_per_sec = st.seen / train_seconds;
        double score = m->test_acc;
        if (data->has_val) {
            hist->val_acc[hist->n] = nn_evaluate(model, ctx, &data->val, cfg->loss, &hist->val_loss[hist->n], NULL);
            score = hist->val_acc[hist->n];
        }
        m->seconds = nn_seconds() - t0;
        hist->n++;
        if (cfg->log) log_epoch(cfg, hist, data->has_val);
        double extra[2] = {hist->val_loss[hist->n - 1], hist->val_acc[hist->n - 1]};
        if (metrics && nn_metrics_write(metrics, m, extra) != 0) rc = -1;
        if (score > st.best) {
            st.best = score;
            hist->best_epoch = st.epoch;
            st.since_best = 0;
            if (best_params) snapshot(model, best_params);
        } else {
            st.since_best++;
        }
        bool early_stop = cfg->early_stop > 0 && data->has_val && st.since_best >= cfg->early_stop;
        /* The position after this epoch: the next one starts from here. */
        train_state next = st;
        next.epoch = st.epoch + 1;
        next.batch = next.seen = next.correct = 0;
        next.loss_sum = next.train_seconds = 0.0;
        next.loader_rng = loader.rng;
        if (rc == 0 && cfg->save_path &&
            train_state_save(cfg->save_path, cfg, data, model, &opt, &next, hist, data->has_val, best_params, ema.avg) != 0)
            rc = -1;
        /* After the checkpoint, so a callback that fails (a plot that cannot
         * be written) still leaves this epoch saved. */
        if (rc == 0 && cfg->on_epoch && cfg->on_epoch(cfg->user, hist) != 0) rc = -1;
        st = next;
        st.epoch--; /* the loop's increment */
        if (early_stop) {
            hist->stopped_early = true;
            if (cfg->log)
                fprintf(cfg->log, "early stop: no validation improvement for %d epochs (best: epoch %d, %.2f%%)\n",
                        cfg->early_stop, hist->best_epoch, 100 * st.best);
            break;
        }
    }
    hold_average(&ema, model, &holds_average, true);
    /* A run with a validation set ends on its best weights. */
    if (rc == 0 && best_params) {
        restore(model, best_params);
        if (cfg->save_path && nn_model_save(model, cfg->save_path, NULL, 0, NULL, NULL, 0) != 0) rc = -1;
    }
    if (metrics && nn_metrics_close(metrics) != 0 && rc == 0) rc = -1;
    free(best_params);
    free(augment_scratch);
    nn_ema_free(&ema);
    free(labels);
    nn_ctx_free(ctx);
    nn_optim_free(&opt);
    nn_loader_free(&loader);
    if (rc != 0) return failure;
    return hist->stopped_early ? NN_TRAIN_STOPPED_EARLY : NN_TRAIN_FINISHED;
}

int nn_train_data_load(nn_train_data *d, const char *dir, int train_limit, float val_split) {
    memset(d, 0, sizeof *d);
    if (nn_dataset_load(dir, "train", &d->train) != 0) return -1;
    d->dir = dir;
    d->train_limit = train_limit > 0 ? train_limit : 0;
    d->val_split = val_split > 0.0f ? val_split : 0.0f;
    if (nn_dataset_load(dir, "t10k", &d->test) != 0) {
        nn_dataset_free(&d->train);
        return -1;
    }
    if (train_limit > 0 && train_limit < d->train.n) nn_dataset_limit(&d->train, train_limit);
    if (val_split > 0.0f) {
        int n = d->train.n, n_val = (int)lroundf(val_split * (float)n);
        if (n_val < 1 || nn_dataset_split(&d->train, n_val, &d->val) != 0) {
            nn_train_data_free(d);
            return nn_error("--val-split %g leaves no validation or no training examples out of %d", val_split, n);
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
