/* nn train on text: a character language model trained by steps
 * (nn_train_lm), its validation loss and a sample of its writing at every
 * evaluation; or, on a folder of one file per class, a classifier trained by
 * epochs (nn_train_classify_text) with the validation accuracy after each. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include "commands.h"
#include "core/util.h"
#include "nn/train.h"
#include "progress.h"

static const char *const text_sets[] = {"tinyshakespeare", "names", "names-by-language"};

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

typedef struct text_run {
    const nn_text *data;
    progress_bar bar;
    long steps;
} text_run;

static void show_progress(void *user, const nn_train_progress *p) {
    text_run *r = user;
    if (p->step == 1) progress_begin(&r->bar, "steps", r->steps);
    progress_update(&r->bar, p->step, p->loss, p->images_per_sec);
}

static int print_token(void *user, int id) {
    const nn_vocab *v = user;
    char buf[8];
    nn_vocab_token(v, id, buf, sizeof buf);
    fputs(buf, stdout);
    return 0;
}

/* The evaluation's line, then 200 characters the model writes from a line break. */
static int show_eval(void *user, const nn_lm_history *h, nn_model *m) {
    text_run *r = user;
    const nn_lm_eval *e = &h->evals[h->n - 1];
    progress_end(&r->bar);
    printf("step %5ld/%ld  train loss %.4f  val loss %.4f (%.3f bits/char, acc %.1f%%)  lr %.3g  %.1f s  %.0f tok/s\n",
           e->step, r->steps, e->train_loss, e->val_loss, e->val_loss / 0.6931471805599453, 100 * e->val_acc, e->lr,
           e->seconds, e->tokens_per_sec);
    nn_rng rng;
    nn_rng_seed(&rng, 1, 0);
    int start = nn_vocab_id(&r->data->vocab, '\n');
    printf("  | ");
    fflush(stdout);
    nn_generate(m, (int[]){start >= 0 ? start : 0}, 1, 200, 1.0f, 0, &rng, print_token, (void *)&r->data->vocab);
    printf("\n");
    if (h->evals[h->n - 1].step < r->steps) progress_begin(&r->bar, "steps", r->steps);
    fflush(stdout);
    return 0;
}

/* ---- a classifier of one file per class ---- */

typedef struct classify_cli {
    progress_bar bar;
    int epochs;
} classify_cli;

static void show_classify_progress(void *user, const nn_train_progress *p) {
    classify_cli *c = user;
    if (p->batch == 1) {
        char label[64];
        snprintf(label, sizeof label, "epoch %d/%d", p->epoch, p->epochs);
        progress_begin(&c->bar, label, p->batches);
    }
    progress_update(&c->bar, p->batch, p->loss, p->images_per_sec);
}

/* One line per epoch: the validation split is what the history's test columns hold. */
static int show_classify_epoch(void *user, const nn_history *h) {
    classify_cli *c = user;
    const nn_epoch_metrics *m = &h->epochs[h->n - 1];
    progress_end(&c->bar);
    printf("epoch %2d/%d  train loss %.4f acc %6.2f%%  val loss %.4f acc %6.2f%%  lr %.3g  %.1f s  %.0f seq/s\n",
           m->epoch, c->epochs, m->train_loss, 100 * m->train_acc, m->test_loss, 100 * m->test_acc, m->lr, m->seconds,
           m->images_per_sec);
    fflush(stdout);
    return 0;
}

static int train_classifier(nn_train_config *cfg, const char *arch, const char *path, const nn_text *data) {
    int V = data->vocab.size, C = data->n_classes, status = 0;
    char def[64];
    snprintf(def, sizeof def, "embed(32) gru(128) last linear(%d)", C);
    const char *spec = arch ? arch : def;
    nn_model model = {0};
    if (nn_model_plan_text(&model, spec, V, C) != 0) {
        status = usage_error("train", "--arch: %s", nn_last_error());
        nn_model_free(&model);
        return status;
    }
    printf("training %s on %s (classes): %d train, %d validation sequences, %d classes, vocabulary %d; %s lr %g, %s "
           "schedule, batch %d, %d epochs, seed %llu\n",
           spec, path, data->train.n_seqs, data->val.n_seqs, C, V, nn_optim_name(cfg->opt.kind),
           (double)cfg->sched.base_lr, nn_schedule_name(cfg->sched.kind), cfg->batch_size, cfg->epochs,
           (unsigned long long)cfg->seed);
    nn_model_summary(&model, stdout);
    fflush(stdout);
    classify_cli c = {.epochs = cfg->epochs};
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
        const nn_epoch_metrics *last = &hist.epochs[hist.n - 1];
        printf("final validation accuracy: %.2f%% (epoch %d; best %.2f%% at epoch %d)\n", 100 * last->test_acc,
               last->epoch, 100 * hist.epochs[hist.best_epoch - 1].test_acc, hist.best_epoch);
        if (cfg->save_path)
            printf("checkpoint: %s (nn predict --model %s TEXT..., nn eval --model %s --data %s)\n", cfg->save_path,
                   cfg->save_path, cfg->save_path, path);
        if (cfg->metrics_path) printf("metrics: %s\n", cfg->metrics_path);
    } else if (rc < 0) {
        status = runtime_error();
        if (rc == NN_TRAIN_INTERRUPTED) status = 130;
    }
    nn_history_free(&hist);
    nn_model_free(&model);
    return status;
}

int train_text(nn_train_config *cfg, const char *arch, const char *path) {
    nn_text data;
    if (nn_text_load(&data, path, NN_TEXT_AUTO, cfg->seed, NULL) != 0) return runtime_error();
    if (data.kind == NN_TEXT_CLASSES) {
        int status = train_classifier(cfg, arch, path, &data);
        nn_text_free(&data);
        return status;
    }
    int status = 0;
    int V = data.vocab.size;
    char *spec = NULL;
    if (status == 0) {
        char def[64];
        snprintf(def, sizeof def, "embed(64) lstm(256) linear(%d)", V);
        spec = nn_xstrdup(arch ? arch : def);
    }
    nn_model model = {0};
    if (status == 0 && nn_model_plan_text(&model, spec, V, V) != 0)
        status = usage_error("train", "--arch: %s", nn_last_error());
    if (status == 0) {
        printf("training %s on %s (%s): %zu train, %zu validation tokens, vocabulary %d; %s lr %g, %s schedule, "
               "batch %d, context %d, %ld steps, seed %llu\n",
               spec, path, nn_text_kind_name(data.kind), data.train.n_ids, data.val.n_ids, V,
               nn_optim_name(cfg->opt.kind), (double)cfg->sched.base_lr, nn_schedule_name(cfg->sched.kind),
               cfg->batch_size, cfg->context, cfg->steps, (unsigned long long)cfg->seed);
        nn_model_summary(&model, stdout);
        fflush(stdout);
        text_run r = {.data = &data, .steps = cfg->steps};
        struct sigaction old_sa;
        catch_sigint(&old_sa);
        cfg->stop = &stop_requested;
        cfg->on_progress = show_progress;
        cfg->on_eval = show_eval;
        cfg->user = &r;
        cfg->spec = NULL; /* planned above */
        nn_lm_history hist;
        nn_train_status rc = nn_train_lm(cfg, &data, &model, &hist);
        release_sigint(&old_sa);
        progress_end(&r.bar);
        if (rc >= 0 && hist.n > 0) {
            printf("final validation loss: %.4f (%.3f bits/char)\n", hist.evals[hist.n - 1].val_loss,
                   hist.evals[hist.n - 1].val_loss / 0.6931471805599453);
            if (cfg->save_path) printf("checkpoint: %s (nn generate --model %s)\n", cfg->save_path, cfg->save_path);
            if (cfg->metrics_path) printf("metrics: %s\n", cfg->metrics_path);
        } else if (rc < 0) {
            status = runtime_error();
            if (rc == NN_TRAIN_INTERRUPTED) status = 130;
        }
        nn_lm_history_free(&hist);
    }
    nn_model_free(&model);
    free(spec);
    nn_text_free(&data);
    return status;
}
