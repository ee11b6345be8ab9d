/* A language model's training run, by steps: each step a batch of random
 * windows of the training text (inputs and next-token targets), the
 * cross-entropy at every position (or, with an answer-only loss, at the
 * positions whose target is part of a line's answer and whose window holds
 * the line's whole prompt), backward, clip, an optimiser step; every
 * eval_every steps the loss on a fixed set of validation windows (the same
 * for every run, so runs compare), a row of metrics, a resumable checkpoint
 * and the program's callback (which may sample text from the model). A
 * resumed run draws the same windows from the checkpoint's generator on, so
 * it ends bit for bit where an uninterrupted one does. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "nn/seq2seq.h"
#include "train/shards.h"
#include "train/text_run.h"

/* Next-token cross-entropy of logits [B, T, V] against targets y [B*T]
 * (the mean over the targets that count: y < 0 does not). */
static nn_tensor *lm_loss(nn_ctx *ctx, nn_tensor *logits, const int *y) {
    int rows = logits->shape[0] * logits->shape[1];
    return nn_cross_entropy(ctx, nn_reshape(ctx, logits, 2, (int[]){rows, logits->shape[2]}), y, 0.0f);
}

/* Of the targets that count (y >= 0), how many are the most probable next
 * token; how many count in *counted. */
static long correct_next(const nn_tensor *logits, const int *y, long *counted) {
    int rows = logits->shape[0] * logits->shape[1], V = logits->shape[2];
    long correct = 0;
    *counted = 0;
    for (int r = 0; r < rows; r++) {
        if (y[r] < 0) continue;
        ++*counted;
        const float *z = logits->data + (size_t)r * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (z[v] > z[best]) best = v;
        correct += best == y[r];
    }
    return correct;
}

/* Mean loss (nats per token) and next-token accuracy over the targets that
 * count of the validation windows. */
static double validate(nn_model *m, nn_ctx *ctx, const nn_text_windows *w, int B, int *x, int *y, double *acc) {
    bool grad = nn_set_grad_enabled(ctx, false), training = nn_set_training(ctx, false);
    double sum = 0.0;
    long correct = 0, tokens = 0;
    for (int first = 0; first < w->count; first += B) {
        nn_ctx_reset(ctx);
        int n = nn_text_windows_batch(w, first, B, x, y);
        nn_tensor *logits = nn_model_forward_tokens(m, ctx, x, n, w->block, NULL, NULL);
        long counted;
        correct += correct_next(logits, y, &counted);
        sum += (double)lm_loss(ctx, logits, y)->data[0] * counted;
        tokens += counted;
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

/* A split as one stream of ids to draw windows from: a stream as it is;
 * lines joined (nn_text_join_lines). With an answer-only loss also what its
 * targets need to count (*needs, malloc'd): the lines' answers after their
 * first '=', each with its whole prompt in the window. */
static int as_stream(const nn_text *data, const nn_text_split *s, nn_lm_targets targets, nn_text_split *out,
                     int **needs) {
    *needs = NULL;
    if (targets == NN_TARGETS_ANSWER) {
        if (data->kind != NN_TEXT_LINES)
            return nn_error("an answer-only loss (targets answer) needs lines 'PROMPT%cANSWER', one per line (as "
                            "data/addition); this data is %s",
                            NN_ANSWER_SEP, data->kind == NN_TEXT_STREAM ? "one text stream" : "not lines");
        int sep = nn_vocab_id(&data->vocab, NN_ANSWER_SEP);
        int *line_needs = NULL;
        if (sep < 0)
            return nn_error("an answer-only loss (targets answer) needs lines 'PROMPT%cANSWER'; this data has no "
                            "'%c'",
                            NN_ANSWER_SEP, NN_ANSWER_SEP);
        if (nn_answer_needs(s, sep, &line_needs) != 0) return -1;
        nn_text_join_lines(s, line_needs, out, needs);
        free(line_needs);
        return 0;
    }
    if (data->kind != NN_TEXT_LINES) *out = *s;
    else nn_text_join_lines(s, NULL, out, NULL);
    return 0;
}

/* Everything a run holds while it trains, beside the shared scaffolding. */
typedef struct lm_run {
    text_run run;
    nn_lm_history *hist;
    nn_text_split train_stream, val_stream; /* own their ids for lines */
    int *train_needs, *val_needs; /* with an answer-only loss: what a target needs to count */
    nn_text_sampler sampler;
    nn_text_windows val;
    nn_metrics_file *metrics;
    shards shards; /* the batch cut between the threads (one: whole) */
    int *x, *y;
    double t0; /* when training began, less the time of the run before a resume */
} lm_run;

static int write_row(nn_metrics_file *f, const nn_lm_history *h, int i) {
    const nn_lm_eval *e = &h->evals[i];
    nn_epoch_metrics row = {.epoch = i + 1, .train_loss = e->train_loss, .train_acc = e->train_acc,
                            .test_loss = e->val_loss, .test_acc = e->val_acc, .lr = e->lr, .seconds = e->seconds,
                            .images_per_sec = e->tokens_per_sec};
    double extra[2] = {(double)e->step, e->val_loss / log(2.0)};
    return nn_metrics_write(f, &row, extra);
}

static int lm_start(lm_run *r) {
    const nn_train_config *cfg = r->run.cfg;
    const nn_text *data = r->run.data;
    int V = data->vocab.size;
    if (cfg->steps < 1 || cfg->context < 1 || cfg->batch_size < 1 || cfg->eval_every < 1)
        return nn_error("a language model's run needs steps, context, batch size and eval_every of at least 1 "
                        "(%ld, %d, %d, %d)", cfg->steps, cfg->context, cfg->batch_size, cfg->eval_every);
    if (data->kind == NN_TEXT_CLASSES)
        return nn_error("one file per class is data for a classifier, not for a language model");
    if (as_stream(data, &data->train, cfg->targets, &r->train_stream, &r->train_needs) != 0) return -1;
    if (as_stream(data, &data->val, cfg->targets, &r->val_stream, &r->val_needs) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", nn_last_error());
        return nn_error("the held-out lines: %s", why);
    }
    if (nn_text_sampler_init(&r->sampler, &r->train_stream, cfg->context, cfg->seed) != 0 ||
        nn_text_windows_init(&r->val, &r->val_stream, cfg->context, cfg->eval_windows) != 0)
        return -1;
    r->sampler.needs = r->train_needs;
    r->val.needs = r->val_needs;
    int max_evals = (int)(cfg->steps / cfg->eval_every + 2);
    r->hist->evals = nn_xcalloc((size_t)max_evals, sizeof *r->hist->evals);
    r->run.st.loader_rng = r->sampler.rng;
    if (text_run_start(&r->run, V, cfg->steps, false) != 0) return -1;
    /* Resumed: the windows go on from where the file's generator stands. */
    r->sampler.rng = r->run.st.loader_rng;
    if (r->run.history && train_lm_history_parse(r->run.history, r->hist, max_evals) != 0)
        return nn_error("%s: metadata 'nn.train.history' is malformed (or longer than the run's evaluations)",
                        cfg->resume_path);
    shards_init(&r->shards, r->run.model, r->run.ctx, shards_count(r->run.model, cfg->batch_size));
    shards_cut(&r->shards, cfg->batch_size);
    size_t window = (size_t)cfg->batch_size * (size_t)cfg->context;
    r->x = nn_xmalloc(window * sizeof *r->x);
    r->y = nn_xmalloc(window * sizeof *r->y);
    if (cfg->metrics_path) {
        /* Rewritten from the history: after a resume it holds the rows before. */
        static const char *const extra[] = {"step", "val_bits_per_char"};
        if (!(r->metrics = nn_metrics_open(cfg->metrics_path, extra, 2))) return -1;
        for (int i = 0; i < r->hist->n; i++)
            if (write_row(r->metrics, r->hist, i) != 0) return -1;
    }
    return 0;
}

/* A checkpoint of where the run stands (the sampler's generator and the
 * time so far in the state). */
static int lm_save(lm_run *r, bool interrupted) {
    text_run *run = &r->run;
    run->st.loader_rng = r->sampler.rng;
    run->st.train_seconds = nn_seconds() - r->t0;
    char *history = train_lm_history_str(r->hist);
    int rc;
    if (interrupted) {
        char where[32];
        snprintf(where, sizeof where, "step %ld", run->st.step);
        rc = text_run_interrupt(run, 0, history, where);
    } else {
        rc = text_run_save(run, &run->st, 0, history);
    }
    free(history);
    return rc;
}

/* One evaluation, of the average with weight averaging: validation loss,
 * the history's row, metrics, checkpoint, callback. */
static int lm_evaluate(lm_run *r, double lr) {
    text_run *run = &r->run;
    const nn_train_config *cfg = run->cfg;
    train_state *st = &run->st;
    int B = cfg->batch_size, T = cfg->context;
    double seconds = nn_seconds() - r->t0, val_acc;
    text_run_hold_average(run, true);
    nn_lm_eval *e = &r->hist->evals[r->hist->n++];
    *e = (nn_lm_eval){.step = st->step, .train_loss = st->loss_sum / (double)st->seen,
                      .train_acc = (double)st->correct / (double)st->seen, .lr = lr, .seconds = seconds};
    e->val_loss = validate(run->model, run->ctx, &r->val, B, r->x, r->y, &val_acc);
    e->val_acc = val_acc;
    e->tokens_per_sec = seconds > 0 ? (double)st->step * B * T / seconds : 0.0;
    if (r->metrics && write_row(r->metrics, r->hist, r->hist->n - 1) != 0) return -1;
    st->loss_sum = 0.0;
    st->correct = st->seen = 0;
    if (cfg->save_path && lm_save(r, false) != 0) return -1;
    if (cfg->on_eval && cfg->on_eval(cfg->user, r->hist, run->model) != 0) return -1;
    return 0;
}

/* --graph of a run whose batches are cut: the whole batch's forward, drawn
 * from a context of its own (a shard's would show its rows only), with a
 * copy of the dropout generator, so the run goes on as it would without. */
static int lm_graph(lm_run *r) {
    text_run *run = &r->run;
    int B = run->cfg->batch_size, T = run->cfg->context;
    nn_ctx *ctx = nn_ctx_new(0);
    nn_rng rng = run->st.dropout_rng;
    lm_loss(ctx, nn_model_forward_tokens(run->model, ctx, r->x, B, T, NULL, &rng), r->y);
    int rc = nn_graph_save_dot(ctx, run->cfg->graph_path);
    nn_ctx_free(ctx);
    return rc;
}

/* One step on the batch in x, y: forward, loss, backward and the update;
 * *loss is the batch's (the mean over the targets that count, *counted of
 * them) and *correct its right guesses. With shards, each thread runs its
 * rows of the batch on its own replica, and their gradients are summed
 * before the update, each weighted by its share of the targets that count
 * (train/shards.h). */
static int lm_step(lm_run *r, double *lr, double *loss, long *correct, long *counted) {
    text_run *run = &r->run;
    train_state *st = &run->st;
    shards *sh = &r->shards;
    int B = run->cfg->batch_size, T = run->cfg->context;
    if (sh->n == 1) {
        nn_ctx_reset(run->ctx);
        nn_tensor *logits = nn_model_forward_tokens(run->model, run->ctx, r->x, B, T, NULL, &st->dropout_rng);
        nn_tensor *l = lm_loss(run->ctx, logits, r->y);
        *loss = l->data[0];
        *correct = correct_next(logits, r->y, counted);
        return text_run_step(run, l, lr);
    }
    if (run->cfg->graph_path && st->step == 0 && lm_graph(r) != 0) return -1;
    /* Shard 0 draws its dropout from the run's generator, the others from
     * generators seeded by it: the same draws for the same thread count. */
    for (int k = 1; k < sh->n; k++) {
        uint64_t high = nn_rng_u32(&st->dropout_rng), low = nn_rng_u32(&st->dropout_rng);
        nn_rng_seed(&sh->s[k].dropout_rng, high << 32 | low, (uint64_t)k);
    }
#pragma omp parallel for num_threads(sh->n) schedule(static, 1)
    for (int k = 0; k < sh->n; k++) {
        omp_set_num_threads(1); /* the shard's ops (and BLAS) on this thread alone */
        shard *s = &sh->s[k];
        const int *x = r->x + (size_t)s->first * T, *y = r->y + (size_t)s->first * T;
        nn_ctx_reset(s->ctx);
        nn_tensor *logits =
            nn_model_forward_tokens(s->model, s->ctx, x, s->n, T, NULL, k ? &s->dropout_rng : &st->dropout_rng);
        s->loss = lm_loss(s->ctx, logits, y);
        s->correct = correct_next(logits, y, &s->counted);
        nn_params_zero_grad(&s->model->params);
        if (isfinite(s->loss->data[0])) nn_backward(s->ctx, s->loss);
    }
    *loss = shards_weigh(sh);
    *correct = *counted = 0;
    for (int k = 0; k < sh->n; k++) {
        *correct += sh->s[k].correct;
        *counted += sh->s[k].counted;
    }
    if (text_run_check_loss(run, *loss, lr) != 0) return -1;
    shards_sum_grads(sh);
    return text_run_update(run, *lr);
}

nn_train_status nn_train_lm(const nn_train_config *cfg, const nn_text *data, nn_model *model, nn_lm_history *hist) {
    lm_run r = {.hist = hist};
    text_run *run = &r.run;
    text_run_init(run, cfg, data, model);
    train_state *st = &run->st;
    memset(hist, 0, sizeof *hist);
    if (cfg->spec) memset(model, 0, sizeof *model);
    int rc = lm_start(&r);
    int B = cfg->batch_size, T = cfg->context;
    nn_train_progress progress = {.label = cfg->label, .epoch = 1, .epochs = 1, .batches = cfg->steps};
    r.t0 = nn_seconds() - st->train_seconds;
    double lr = 0.0;
    while (rc == 0 && st->step < cfg->steps) {
        if (cfg->stop && *cfg->stop) {
            rc = lm_save(&r, true);
            break;
        }
        text_run_hold_average(run, false); /* train the raw weights */
        nn_text_sampler_next(&r.sampler, B, r.x, r.y);
        double loss;
        long correct, counted;
        if ((rc = lm_step(&r, &lr, &loss, &correct, &counted)) != 0) break;
        st->correct += correct;
        st->loss_sum += loss * (double)counted;
        st->seen += counted;
        if (cfg->on_progress) {
            double elapsed = nn_seconds() - r.t0;
            progress.batch = progress.step = st->step;
            progress.loss = (float)loss;
            progress.images_per_sec = elapsed > 0 ? (double)st->step * B * T / elapsed : 0.0;
            cfg->on_progress(cfg->user, &progress);
        }
        if (st->step % cfg->eval_every == 0 || st->step == cfg->steps) rc = lm_evaluate(&r, lr);
    }
    text_run_hold_average(run, true);
    nn_train_status status = rc == 0 ? NN_TRAIN_FINISHED : run->failure;
    if (r.metrics && nn_metrics_close(r.metrics) != 0 && status >= 0) status = NN_TRAIN_FAILED;
    shards_free(&r.shards);
    text_run_end(run);
    nn_text_sampler_free(&r.sampler);
    nn_text_windows_free(&r.val);
    if (data->kind == NN_TEXT_LINES) {
        free(r.train_stream.ids);
        free(r.val_stream.ids);
    }
    free(r.train_needs);
    free(r.val_needs);
    free(r.x);
    free(r.y);
    return status;
}
