/* nn train on text: a character language model trained by steps
 * (nn_train_lm), its validation loss and a sample of its writing at every
 * evaluation. */
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

int train_text(nn_train_config *cfg, const char *arch, const char *path) {
    nn_text data;
    if (nn_text_load(&data, path, NN_TEXT_AUTO, cfg->seed, NULL) != 0) return runtime_error();
    int status = 0;
    if (data.kind == NN_TEXT_CLASSES) {
        nn_error("%s: one file per class: nn train classifies text in a later release; it trains language models of "
                 "a text stream or of lines",
                 path);
        status = runtime_error();
    }
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
