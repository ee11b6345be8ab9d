/* nn train on text: a character language model trained by steps
 * (nn_train_lm), its validation loss and a sample of its writing at every
 * evaluation; or, on a folder of one file per class, a classifier trained by
 * epochs (nn_train_classify_text) with the validation accuracy after each.
 * Both resume from their checkpoints and draw their curves with --plot. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "commands.h"
#include "core/util.h"
#include "nn/train.h"
#include "plot/plot.h"
#include "progress.h"

static const char *const text_sets[] = {"tinyshakespeare", "names", "names-by-language", "addition", "addition3"};

bool is_text_dataset(const char *dataset) {
    for (size_t i = 0; i < sizeof text_sets / sizeof *text_sets; i++)
        if (strcmp(dataset, text_sets[i]) == 0) return true;
    return false;
}

/* Text rather than IDX images: a file, or a folder that holds a .txt file
 * (anything else gets the IDX loader's message about the four files). */
bool is_text_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return false;
    if (S_ISREG(st.st_mode)) return true;
    DIR *dir = opendir(path);
    bool text = false;
    for (struct dirent *e; dir && !text && (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        text = e->d_name[0] != '.' && len > 4 && strcmp(e->d_name + len - 4, ".txt") == 0;
    }
    if (dir) closedir(dir);
    return text;
}

/* ---- a language model ---- */

typedef struct lm_cli {
    const nn_text *data;
    const char *plot_path;
    progress_bar bar;
    bool bar_open;
    long steps;
} lm_cli;

static void show_progress(void *user, const nn_train_progress *p) {
    lm_cli *c = user;
    if (!c->bar_open) progress_begin(&c->bar, "steps", c->steps);
    c->bar_open = true;
    progress_update(&c->bar, p->step, p->loss, p->images_per_sec);
    raise_for_tests(p->step);
}

static int print_token(void *user, int id) {
    const nn_vocab *v = user;
    char buf[8];
    nn_vocab_token(v, id, buf, sizeof buf);
    fputs(buf, stdout);
    return 0;
}

/* The loss curves of a language model's run against the step, in nats:
 * training (the mean since the previous evaluation) and validation. */
static int plot_lm(const char *path, const nn_lm_history *h) {
    int n = h->n;
    double *x = nn_xmalloc((size_t)n * 3 * sizeof(double)), *train = x + n, *val = x + 2 * n;
    for (int i = 0; i < n; i++) {
        x[i] = (double)h->evals[i].step;
        train[i] = h->evals[i].train_loss;
        val[i] = h->evals[i].val_loss;
    }
    nn_series series[2] = {{"train", x, train, n, 0}, {"validation", x, val, n, 0}};
    nn_panel panel = {"Loss per step", "step", "loss (nats per token)", series, 2, 0, 0};
    int rc = nn_plot(path, &panel, 1);
    free(x);
    return rc;
}

/* The evaluation's line, then 200 characters the model writes from a line
 * break, and the plot so far. */
static int show_eval(void *user, const nn_lm_history *h, nn_model *m) {
    lm_cli *c = user;
    const nn_lm_eval *e = &h->evals[h->n - 1];
    progress_end(&c->bar);
    c->bar_open = false;
    printf("step %5ld/%ld  train loss %.4f  val loss %.4f (%.3f bits/char, acc %.1f%%)  lr %.3g  %.1f s  %.0f tok/s\n",
           e->step, c->steps, e->train_loss, e->val_loss, e->val_loss / 0.6931471805599453, 100 * e->val_acc, e->lr,
           e->seconds, e->tokens_per_sec);
    nn_rng rng;
    nn_rng_seed(&rng, 1, 0);
    int start = nn_vocab_id(&c->data->vocab, '\n');
    printf("  | ");
    fflush(stdout);
    nn_generate(m, (int[]){start >= 0 ? start : 0}, 1, 200, 1.0f, 0, &rng, print_token, (void *)&c->data->vocab);
    printf("\n");
    fflush(stdout);
    return c->plot_path ? plot_lm(c->plot_path, h) : 0;
}

/* The settings of the first line that only some runs change: the
 * optimiser's betas and weight decay, the cosine's floor, bf16, a weight
 * average, an answer-only loss (the rest of the line is each run's own). */
static void print_settings(const nn_train_config *cfg) {
    const nn_optim_config *o = &cfg->opt;
    if (o->kind == NN_OPT_ADAM || o->kind == NN_OPT_ADAMW) printf(", betas (%g, %g)", o->beta1, o->beta2);
    if (o->weight_decay > 0.0f) printf(", weight decay %g", o->weight_decay);
    if (cfg->sched.kind == NN_SCHED_COSINE && cfg->sched.min_lr > 0.0f) printf(", min lr %g", cfg->sched.min_lr);
    if (cfg->clip > 0.0f) printf(", clip %g", cfg->clip);
    if (cfg->precision == NN_PRECISION_BF16) printf(", bf16 products");
    if (cfg->ema > 0.0f) printf(", weight average %g", cfg->ema);
    if (cfg->targets == NN_TARGETS_ANSWER) printf(", answers only");
}

static int train_lm(nn_train_config *cfg, const char *spec, const char *path, const char *plot_path,
                    const nn_text *data) {
    int V = data->vocab.size, status = 0;
    nn_model model = {0};
    if (nn_model_plan_text_context(&model, spec, V, V, cfg->context) != 0) {
        status = usage_error("train", "--arch: %s", nn_last_error());
        nn_model_free(&model);
        return status;
    }
    printf("training %s on %s (%s): %zu train, %zu validation tokens, vocabulary %d; %s lr %g, %s schedule, "
           "batch %d, context %d, %ld steps, seed %llu",
           spec, path, nn_text_kind_name(data->kind), data->train.n_ids, data->val.n_ids, V,
           nn_optim_name(cfg->opt.kind), (double)cfg->sched.base_lr, nn_schedule_name(cfg->sched.kind),
           cfg->batch_size, cfg->context, cfg->steps, (unsigned long long)cfg->seed);
    print_settings(cfg);
    printf("\n");
    nn_model_summary(&model, stdout);
    if (cfg->resume_path) printf("resuming from %s\n", cfg->resume_path);
    fflush(stdout);
    lm_cli c = {.data = data, .plot_path = plot_path, .steps = cfg->steps};
    struct sigaction old_sa;
    catch_sigint(&old_sa);
    cfg->stop = &stop_requested;
    cfg->on_progress = show_progress;
    cfg->on_eval = show_eval;
    cfg->user = &c;
    cfg->spec = NULL; /* planned above */
    nn_lm_history hist;
    nn_train_status rc = nn_train_lm(cfg, data, &model, &hist);
    release_sigint(&old_sa);
    progress_end(&c.bar);
    if (rc >= 0 && hist.n > 0) {
        printf("final validation loss: %.4f (%.3f bits/char)\n", hist.evals[hist.n - 1].val_loss,
               hist.evals[hist.n - 1].val_loss / 0.6931471805599453);
        if (cfg->save_path) printf("checkpoint: %s (nn generate --model %s)\n", cfg->save_path, cfg->save_path);
        if (plot_path) printf("plot: %s\n", plot_path);
        if (cfg->metrics_path) printf("metrics: %s\n", cfg->metrics_path);
    } else if (rc < 0) {
        status = train_run_error(rc, cfg);
    }
    nn_lm_history_free(&hist);
    nn_model_free(&model);
    return status;
}

/* ---- a classifier of one file per class ---- */

typedef struct classify_cli {
    progress_bar bar;
    const char *plot_path;
    int epochs;
} classify_cli;

static void show_classify_progress(void *user, const nn_train_progress *p) {
    classify_cli *c = user;
    progress_train(&c->bar, p);
    raise_for_tests(p->step);
}

/* Accuracy and loss per epoch, training and validation (the history's test
 * columns hold the validation split's). */
static int plot_classifier(const char *path, const nn_history *h) {
    int n = h->n;
    double *x = nn_xmalloc((size_t)n * 5 * sizeof(double));
    double *tr_acc = x + n, *va_acc = x + 2 * n, *tr_loss = x + 3 * n, *va_loss = x + 4 * n;
    for (int i = 0; i < n; i++) {
        const nn_epoch_metrics *m = &h->epochs[i];
        x[i] = m->epoch;
        tr_acc[i] = 100.0 * m->train_acc;
        va_acc[i] = 100.0 * m->test_acc;
        tr_loss[i] = m->train_loss;
        va_loss[i] = m->test_loss;
    }
    nn_series acc[2] = {{"train", x, tr_acc, n, 0}, {"validation", x, va_acc, n, 0}};
    nn_series loss[2] = {{"train", x, tr_loss, n, 0}, {"validation", x, va_loss, n, 0}};
    nn_panel panels[2] = {{"Accuracy per epoch", "epoch", "accuracy (%)", acc, 2, 0, 0},
                          {"Loss per epoch", "epoch", "loss", loss, 2, 0, 0}};
    int rc = nn_plot(path, panels, 2);
    free(x);
    return rc;
}

/* One line per epoch (the validation split is what the history's test
 * columns hold), and the plot so far. */
static int show_classify_epoch(void *user, const nn_history *h) {
    classify_cli *c = user;
    const nn_epoch_metrics *m = &h->epochs[h->n - 1];
    progress_end(&c->bar);
    printf("epoch %2d/%d  train loss %.4f acc %6.2f%%  val loss %.4f acc %6.2f%%  lr %.3g  %.1f s  %.0f seq/s\n",
           m->epoch, c->epochs, m->train_loss, 100 * m->train_acc, m->test_loss, 100 * m->test_acc, m->lr, m->seconds,
           m->images_per_sec);
    fflush(stdout);
    return c->plot_path ? plot_classifier(c->plot_path, h) : 0;
}

/* The longest sequence of a split (0 for none). */
static int longest_sequence(const nn_text_split *s) {
    int longest = 0;
    for (int i = 0; i < s->n_seqs; i++) longest = s->lengths[i] > longest ? s->lengths[i] : longest;
    return longest;
}

static int train_classifier(nn_train_config *cfg, const char *spec, const char *path, const char *plot_path,
                            const nn_text *data) {
    int V = data->vocab.size, C = data->n_classes, status = 0;
    nn_model model = {0};
    /* A model with learned positions (posembed) has a row per position up
     * to its context: every sequence it trains and is validated on must
     * fit, so the data's longest, or --context when it is given. */
    int longest = longest_sequence(&data->train), val_longest = longest_sequence(&data->val);
    longest = val_longest > longest ? val_longest : longest;
    if (cfg->context && cfg->context < longest)
        return usage_error("train", "--context %d: %s has a sequence of %d tokens", cfg->context, path, longest);
    if (nn_model_plan_text_context(&model, spec, V, C, cfg->context ? cfg->context : longest) != 0) {
        status = usage_error("train", "--arch: %s", nn_last_error());
        nn_model_free(&model);
        return status;
    }
    printf("training %s on %s (classes): %d train, %d validation sequences, %d classes, vocabulary %d; %s lr %g, %s "
           "schedule, batch %d, %d epochs, seed %llu",
           spec, path, data->train.n_seqs, data->val.n_seqs, C, V, nn_optim_name(cfg->opt.kind),
           (double)cfg->sched.base_lr, nn_schedule_name(cfg->sched.kind), cfg->batch_size, cfg->epochs,
           (unsigned long long)cfg->seed);
    print_settings(cfg);
    printf("\n");
    nn_model_summary(&model, stdout);
    if (cfg->resume_path) printf("resuming from %s\n", cfg->resume_path);
    fflush(stdout);
    classify_cli c = {.plot_path = plot_path, .epochs = cfg->epochs};
    struct sigaction old_sa;
    catch_sigint(&old_sa);
    cfg->stop = &stop_requested;
    cfg->on_progress = show_classify_progress;
    cfg->on_epoch = show_classify_epoch;
    cfg->user = &c;
    cfg->spec = NULL; /* planned above */
    nn_history hist;
    nn_train_status rc = nn_train_classify_text(cfg, data, &model, &hist);
    release_sigint(&old_sa);
    progress_end(&c.bar);
    if (rc >= 0 && hist.n > 0) {
        const nn_epoch_metrics *last = &hist.epochs[hist.n - 1], *best = &hist.epochs[hist.best_epoch - 1];
        printf("final validation accuracy: %.2f%% (epoch %d)\n", 100 * last->test_acc, last->epoch);
        /* The model ends on its best epoch's weights. */
        if (best != last)
            printf("kept epoch %d, the best by validation accuracy (%.2f%%)\n", hist.best_epoch, 100 * best->test_acc);
        if (cfg->save_path)
            printf("checkpoint: %s (nn predict --model %s TEXT..., nn eval --model %s --data %s)\n", cfg->save_path,
                   cfg->save_path, cfg->save_path, path);
        if (plot_path) printf("plot: %s\n", plot_path);
        if (cfg->metrics_path) printf("metrics: %s\n", cfg->metrics_path);
    } else if (rc < 0) {
        status = train_run_error(rc, cfg);
    }
    nn_history_free(&hist);
    nn_model_free(&model);
    return status;
}

int train_text(nn_train_config *cfg, const char *arch, const char *body, const char *path, const char *plot_path) {
    nn_text data;
    if (nn_text_load(&data, path, NN_TEXT_AUTO, cfg->seed, NULL) != 0) return runtime_error();
    /* A resumed run's data must be what it was trained on: said before its
     * spec (whose output size is the data's) could fail to fit it. */
    if (cfg->resume_path && nn_train_text_check(cfg->resume_path, &data) != 0) {
        nn_text_free(&data);
        return runtime_error();
    }
    cfg->data_path = path;
    /* The output layer is sized by the data: one score per class or per token. */
    char def[512];
    bool classes = data.kind == NN_TEXT_CLASSES;
    if (!body) body = classes ? "embed(32) gru(128) last" : "embed(64) lstm(256)";
    snprintf(def, sizeof def, "%s linear(%d)", body, classes ? data.n_classes : data.vocab.size);
    const char *spec = arch ? arch : def;
    int status = classes ? train_classifier(cfg, spec, path, plot_path, &data)
                         : train_lm(cfg, spec, path, plot_path, &data);
    nn_text_free(&data);
    return status;
}
