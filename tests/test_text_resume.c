/* Text runs lose nothing either. A language model's run (by steps) and a
 * text classifier's (by epochs), stopped mid-way by a stop request or killed
 * with SIGKILL and resumed from their checkpoint, end with every tensor of
 * the checkpoint (weights, optimiser moments, the raw weights under the
 * average, the best weights) byte for byte the uninterrupted run's, and the
 * same metrics rows but for the timings. Dropout, weight averaging, clipping
 * and a warm-up schedule all run, so each generator and counter must come
 * back. A checkpoint of other settings or other data is refused naming the
 * setting or the vocabulary; nn train --resume does the same from the
 * command line. A small GPT (posembed, two pre-LayerNorm blocks, dropout,
 * AdamW with weight decay, warm-up + cosine to a floor, clipping) is killed
 * and resumed the same way, from the library and from the command line on
 * two threads. A run with an answer-only loss (--targets answer) keeps the
 * setting in its checkpoint: the resumed run trains the same way without
 * being told, and refuses --targets all. */
#include <omp.h>
#include <signal.h>
#include <sys/stat.h>

#include "check.h"
#include "run_child.h"
#include "run_nn.h"
#include "nn/seq2seq.h"
#include "nn/train.h"

#define SHAKESPEARE "datasets/tinyshakespeare"
#define LANGUAGES "datasets/names-by-language"

/* A scratch path that lives as long as the test (tmp's buffers rotate). */
static const char *keep(const char *name) {
    static char paths[32][256];
    static int n;
    char *p = paths[n++ % 32];
    snprintf(p, sizeof paths[0], "%s", tmp(name));
    return p;
}

/* stderr is one line. */
static bool one_line(void) {
    char *nl = strchr(err_text, '\n');
    return nl && nl[1] == '\0';
}

static bool have(const char *path) {
    bool ok = access(path, R_OK) == 0;
    if (!ok) SKIP("%s is missing", path);
    return ok;
}

/* NULL when every tensor of a is in b under its name with the same bytes
 * and b has no other; else what differs. */
static const char *tensor_difference(const char *a, const char *b) {
    static char what[256];
    nn_safetensors x = {0}, y = {0};
    snprintf(what, sizeof what, "a file does not load, or they hold different numbers of tensors");
    bool same = nn_st_load(&x, a) == 0 && nn_st_load(&y, b) == 0 && x.n_tensors == y.n_tensors && x.n_tensors > 0;
    for (int i = 0; same && i < x.n_tensors; i++) {
        const nn_st_tensor *tx = &x.tensors[i], *ty = nn_st_find(&y, tx->name);
        same = ty && tx->nbytes == ty->nbytes && memcmp(x.data + tx->offset, y.data + ty->offset, tx->nbytes) == 0;
        if (!same) snprintf(what, sizeof what, "tensor %s", tx->name);
    }
    nn_st_free(&x);
    nn_st_free(&y);
    return same ? NULL : what;
}

/* Checks that the checkpoints at a and b hold the same tensors. */
#define CHECK_SAME_TENSORS(a, b)                                                                                 \
    do {                                                                                                         \
        const char *diff_ = tensor_difference(a, b);                                                             \
        CHECKF(!diff_, "%s differs between %s and %s", diff_, a, b);                                             \
    } while (0)

static bool has_tensor(const char *path, const char *name) {
    nn_safetensors st;
    if (nn_st_load(&st, path) != 0) return false;
    bool has = nn_st_find(&st, name) != NULL;
    nn_st_free(&st);
    return has;
}

static char *meta_of(const char *path, const char *key, char *buf, size_t cap) {
    nn_safetensors st;
    buf[0] = '\0';
    if (nn_st_load(&st, path) == 0 && nn_st_meta(&st, key)) snprintf(buf, cap, "%s", nn_st_meta(&st, key));
    nn_st_free(&st);
    return buf;
}

/* Two metrics files with the same rows but for the timings (the columns
 * seconds and images_per_sec, the 7th and 8th); at least two rows. */
static bool same_metrics(const char *a, const char *b) {
    static char x[1 << 15], y[1 << 15];
    slurp(a, x, sizeof x);
    slurp(b, y, sizeof y);
    char *sx, *sy, *lx = strtok_r(x, "\n", &sx), *ly = strtok_r(y, "\n", &sy);
    int rows = 0;
    for (; lx && ly; lx = strtok_r(NULL, "\n", &sx), ly = strtok_r(NULL, "\n", &sy), rows++) {
        char *fx, *fy, *vx = strtok_r(lx, ",", &fx), *vy = strtok_r(ly, ",", &fy);
        for (int col = 0; vx && vy; col++, vx = strtok_r(NULL, ",", &fx), vy = strtok_r(NULL, ",", &fy))
            if (col != 6 && col != 7 && strcmp(vx, vy) != 0) {
                fprintf(stderr, "  %s and %s: row %d column %d: %s vs %s\n", a, b, rows, col + 1, vx, vy);
                return false;
            }
        if (vx || vy) return false;
    }
    return !lx && !ly && rows >= 3;
}

/* ---- the library ---- */

static volatile sig_atomic_t stop_flag;
static long stop_at, kill_at;

/* on_progress: a stop request after step stop_at; SIGKILL after step kill_at. */
static void interrupt_at(void *user, const nn_train_progress *p) {
    (void)user;
    if (p->step == stop_at) stop_flag = 1;
    if (p->step == kill_at) raise(SIGKILL);
}

static nn_text text;
static nn_train_config child_cfg;

static nn_train_config lm_config(const char *save, const char *metrics) {
    nn_train_config c = nn_train_config_defaults();
    c.spec = "embed(16) dropout(0.1) lstm(32) linear(65)";
    c.opt = nn_optim_defaults(NN_OPT_ADAMW);
    c.sched = (nn_schedule){.kind = NN_SCHED_COSINE, .base_lr = 3e-3f, .warmup = 5};
    c.clip = 0.5f;
    c.ema = 0.9f;
    c.batch_size = 8;
    c.context = 16;
    c.steps = 40;
    c.eval_every = 10;
    c.eval_windows = 16;
    c.seed = 11;
    c.data_path = SHAKESPEARE;
    c.save_path = save;
    c.metrics_path = metrics;
    c.stop = &stop_flag;
    c.on_progress = interrupt_at;
    return c;
}

static void lm_in_child(void) {
    nn_model m;
    nn_lm_history h;
    nn_train_lm(&child_cfg, &text, &m, &h);
}

static nn_train_status lm_run(const nn_train_config *c, nn_lm_history *h) {
    nn_model m;
    nn_lm_history own;
    stop_flag = 0;
    nn_train_status rc = nn_train_lm(c, &text, &m, h ? h : &own);
    nn_model_free(&m);
    if (!h) nn_lm_history_free(&own);
    return rc;
}

static void test_lm_resume(void) {
    /* One thread: the numbers depend on the thread count. */
    omp_set_num_threads(1);
    if (!have(SHAKESPEARE "/input.txt")) return;
    CHECKF(nn_text_load(&text, SHAKESPEARE, NN_TEXT_AUTO, 11, NULL) == 0, "%s", nn_last_error());
    nn_train_config full = lm_config(keep("lm_full.st"), keep("lm_full.csv"));
    nn_lm_history h_full;
    stop_at = kill_at = 0;
    CHECKF(lm_run(&full, &h_full) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    CHECK(h_full.n == 4 && has_tensor(full.save_path, "train.raw") && has_tensor(full.save_path, "train.optim_v"));

    /* A stop request between two evaluations: the checkpoint is of that step. */
    nn_train_config c = lm_config(keep("lm_stop.st"), keep("lm_stop.csv"));
    stop_at = 25;
    CHECK(lm_run(&c, NULL) == NN_TRAIN_INTERRUPTED);
    CHECKF(strstr(nn_last_error(), "interrupted at step 25; resumable checkpoint saved to "), "%s", nn_last_error());
    stop_at = 0;
    char buf[64];
    CHECKF(strcmp(meta_of(c.save_path, "nn.train.step", buf, sizeof buf), "25") == 0, "step %s", buf);
    /* The checkpoint is not the finished run's yet. */
    CHECK(tensor_difference(full.save_path, c.save_path) != NULL);
    c.resume_path = c.save_path;
    nn_lm_history h;
    CHECKF(lm_run(&c, &h) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    CHECK_SAME_TENSORS(full.save_path, c.save_path);
    CHECK(same_metrics(full.metrics_path, c.metrics_path));
    CHECK(h.n == h_full.n);
    for (int i = 0; i < h.n && i < h_full.n; i++)
        CHECKF(h.evals[i].step == h_full.evals[i].step && h.evals[i].train_loss == h_full.evals[i].train_loss &&
                   h.evals[i].val_loss == h_full.evals[i].val_loss && h.evals[i].lr == h_full.evals[i].lr,
               "evaluation %d differs", i);
    nn_lm_history_free(&h);

    /* SIGKILL after step 25: the checkpoint of step 20's evaluation stays. */
    child_cfg = lm_config(keep("lm_kill.st"), keep("lm_kill.csv"));
    kill_at = 25;
    char msg[4096];
    int status = run_in_child(lm_in_child, msg, sizeof msg);
    kill_at = 0;
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child ended with status %d: %s", status, msg);
    CHECKF(strcmp(meta_of(child_cfg.save_path, "nn.train.step", buf, sizeof buf), "20") == 0, "step %s", buf);
    c = lm_config(keep("lm_kill.st"), keep("lm_kill.csv"));
    c.resume_path = c.save_path;
    CHECKF(lm_run(&c, NULL) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    CHECK_SAME_TENSORS(full.save_path, c.save_path);
    CHECK(same_metrics(full.metrics_path, c.metrics_path));

    /* Another run's settings or data: refused, naming what differs; the
     * checkpoint stays as it was. */
    child_cfg = lm_config(keep("lm_other.st"), NULL);
    stop_at = 15;
    CHECK(lm_run(&child_cfg, NULL) == NN_TRAIN_INTERRUPTED);
    stop_at = 0;
    c = lm_config(keep("lm_other.st"), NULL);
    c.resume_path = c.save_path;
    c.sched.base_lr = 1e-2f;
    CHECKF(lm_run(&c, NULL) == NN_TRAIN_FAILED && strstr(nn_last_error(), "learning rate 0.003; this run asks for 0.01"),
           "%s", nn_last_error());
    c.sched.base_lr = 3e-3f;
    c.steps = 50;
    CHECKF(lm_run(&c, NULL) == NN_TRAIN_FAILED && strstr(nn_last_error(), "steps 40; this run asks for 50"), "%s",
           nn_last_error());
    c.steps = 40;
    c.spec = "embed(16) dropout(0.1) gru(32) linear(65)";
    CHECKF(lm_run(&c, NULL) == NN_TRAIN_FAILED && strstr(nn_last_error(), "holds the model 'embed(16) dropout(0.1) lstm(32)"),
           "%s", nn_last_error());
    CHECKF(strcmp(meta_of(c.save_path, "nn.train.step", buf, sizeof buf), "15") == 0, "step %s", buf);
    /* Text with other characters. */
    FILE *f = fopen(tmp("other.txt"), "w");
    for (int i = 0; f && i < 200; i++) fputs("to be or not to be\n", f);
    if (f) fclose(f);
    nn_text other;
    CHECK(nn_text_load(&other, tmp("other.txt"), NN_TEXT_AUTO, 11, NULL) == 0);
    c = lm_config(keep("lm_other.st"), NULL);
    c.resume_path = c.save_path;
    nn_model m;
    nn_lm_history h2;
    CHECKF(nn_train_lm(&c, &other, &m, &h2) == NN_TRAIN_FAILED && strstr(nn_last_error(), "another vocabulary (65 tokens") &&
               nn_train_text_check(c.save_path, &other) != 0 && nn_train_text_check(c.save_path, &text) == 0,
           "%s", nn_last_error());
    nn_model_free(&m);
    nn_lm_history_free(&h2);
    nn_text_free(&other);
    nn_lm_history_free(&h_full);
    nn_text_free(&text);
}

/* A small GPT: learned positions, two pre-LayerNorm blocks, the output tied
 * to the embedding; dropout in the residual branches so the dropout
 * generator's state must come back, AdamW decaying the matrices only,
 * warm-up + cosine to a floor, clipping. */
#define GPT_SPEC                                                                                                  \
    "embed(32) posembed dropout(0.1) repeat(2, residual(layernorm attention(4) dropout(0.1)) "                    \
    "residual(layernorm linear(64) gelu linear(32) dropout(0.1))) layernorm unembed"

static nn_train_config gpt_config(const char *save, const char *metrics) {
    nn_train_config c = lm_config(save, metrics);
    c.spec = GPT_SPEC;
    c.opt.weight_decay = 0.1f;
    c.opt.beta2 = 0.99f;
    c.sched = (nn_schedule){.kind = NN_SCHED_COSINE, .base_lr = 1e-3f, .warmup = 5, .min_lr = 1e-4f};
    c.clip = 1.0f;
    c.ema = 0;
    return c;
}

static void test_gpt_resume(void) {
    omp_set_num_threads(1);
    if (!have(SHAKESPEARE "/input.txt")) return;
    CHECKF(nn_text_load(&text, SHAKESPEARE, NN_TEXT_AUTO, 11, NULL) == 0, "%s", nn_last_error());
    stop_at = kill_at = 0;
    nn_train_config full = gpt_config(keep("gpt_full.st"), keep("gpt_full.csv"));
    CHECKF(lm_run(&full, NULL) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    CHECK(has_tensor(full.save_path, "res1.attn1.in_proj_weight") && has_tensor(full.save_path, "train.optim_v"));

    /* SIGKILL after step 27: step 20's checkpoint stays, and is not the end. */
    child_cfg = gpt_config(keep("gpt_kill.st"), keep("gpt_kill.csv"));
    kill_at = 27;
    char msg[4096], buf[64];
    int status = run_in_child(lm_in_child, msg, sizeof msg);
    kill_at = 0;
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child ended with status %d: %s", status, msg);
    CHECKF(strcmp(meta_of(child_cfg.save_path, "nn.train.step", buf, sizeof buf), "20") == 0, "step %s", buf);
    CHECK(tensor_difference(full.save_path, child_cfg.save_path) != NULL);
    nn_train_config c = gpt_config(keep("gpt_kill.st"), keep("gpt_kill.csv"));
    c.resume_path = c.save_path;
    CHECKF(lm_run(&c, NULL) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    CHECK_SAME_TENSORS(full.save_path, c.save_path);
    CHECK(same_metrics(full.metrics_path, c.metrics_path));

    /* A stop request mid-way (between evaluations) resumes as exactly. */
    c = gpt_config(keep("gpt_stop.st"), NULL);
    stop_at = 13;
    CHECK(lm_run(&c, NULL) == NN_TRAIN_INTERRUPTED);
    stop_at = 0;
    c.resume_path = c.save_path;
    CHECKF(lm_run(&c, NULL) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    CHECK_SAME_TENSORS(full.save_path, c.save_path);
    nn_text_free(&text);
}

/* on_epoch: a copy of the checkpoint of every epoch, FILE.eN. */
static int copy_checkpoint(void *user, const nn_history *h) {
    const char *save = user;
    char to[512], cmd[1200];
    snprintf(to, sizeof to, "%s.e%d", save, h->epochs[h->n - 1].epoch);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", save, to);
    return system(cmd) == 0 ? 0 : nn_error("could not copy %s", save);
}

static nn_train_config classify_config(const char *save, const char *metrics) {
    nn_train_config c = nn_train_config_defaults();
    c.spec = "embed(8) dropout(0.1) gru(16) last linear(18)";
    c.opt = nn_optim_defaults(NN_OPT_ADAM);
    c.sched = (nn_schedule){.kind = NN_SCHED_COSINE, .base_lr = 1e-2f, .warmup = 20};
    c.clip = 1.0f;
    c.ema = 0.9f;
    c.batch_size = 256;
    c.epochs = 3;
    c.seed = 2;
    c.data_path = LANGUAGES;
    c.save_path = save;
    c.metrics_path = metrics;
    c.stop = &stop_flag;
    c.on_progress = interrupt_at;
    c.on_epoch = copy_checkpoint;
    c.user = (void *)save;
    return c;
}

static void classify_in_child(void) {
    nn_model m;
    nn_history h;
    nn_train_classify_text(&child_cfg, &text, &m, &h);
}

static nn_train_status classify_run(const nn_train_config *c) {
    nn_model m;
    nn_history h;
    stop_flag = 0;
    nn_train_status rc = nn_train_classify_text(c, &text, &m, &h);
    nn_model_free(&m);
    nn_history_free(&h);
    return rc;
}

static void test_classifier_resume(void) {
    omp_set_num_threads(1);
    if (!have(LANGUAGES "/Russian.txt")) return;
    CHECKF(nn_text_load(&text, LANGUAGES, NN_TEXT_AUTO, 2, NULL) == 0, "%s", nn_last_error());
    stop_at = kill_at = 0;
    nn_train_config full = classify_config(keep("c_full.st"), keep("c_full.csv"));
    CHECKF(classify_run(&full) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    /* The last epoch's resumable checkpoint, then the finished run's (the best weights only). */
    char e3[256];
    snprintf(e3, sizeof e3, "%s.e3", full.save_path);
    CHECK(has_tensor(e3, "train.optim_m") && has_tensor(e3, "train.raw") && has_tensor(e3, "train.best"));
    CHECK(!has_tensor(full.save_path, "train.optim_m"));

    /* 67 steps an epoch: stopped 33 steps into epoch 2. */
    nn_train_config c = classify_config(keep("c_stop.st"), keep("c_stop.csv"));
    stop_at = 100;
    CHECK(classify_run(&c) == NN_TRAIN_INTERRUPTED);
    CHECKF(strstr(nn_last_error(), "interrupted at epoch 2, step 33; resumable checkpoint saved to "), "%s",
           nn_last_error());
    stop_at = 0;
    c.resume_path = c.save_path;
    CHECKF(classify_run(&c) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    snprintf(e3, sizeof e3, "%s.e3", c.save_path);
    char full_e3[256];
    snprintf(full_e3, sizeof full_e3, "%s.e3", full.save_path);
    CHECK_SAME_TENSORS(full_e3, e3);
    CHECK_SAME_TENSORS(full.save_path, c.save_path);
    CHECK(same_metrics(full.metrics_path, c.metrics_path));

    /* SIGKILL in epoch 2: epoch 1's checkpoint stays. */
    child_cfg = classify_config(keep("c_kill.st"), keep("c_kill.csv"));
    kill_at = 100;
    char msg[4096], buf[32];
    int status = run_in_child(classify_in_child, msg, sizeof msg);
    kill_at = 0;
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child ended with status %d: %s", status, msg);
    CHECKF(strcmp(meta_of(child_cfg.save_path, "nn.train.epoch", buf, sizeof buf), "2") == 0, "epoch %s", buf);
    c = classify_config(keep("c_kill.st"), keep("c_kill.csv"));
    c.resume_path = c.save_path;
    CHECKF(classify_run(&c) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    snprintf(e3, sizeof e3, "%s.e3", c.save_path);
    CHECK_SAME_TENSORS(full_e3, e3);
    CHECK_SAME_TENSORS(full.save_path, c.save_path);
    CHECK(same_metrics(full.metrics_path, c.metrics_path));

    /* A finished run's checkpoint holds no training state. */
    c.resume_path = full.save_path;
    c.save_path = keep("c_again.st");
    CHECKF(classify_run(&c) == NN_TRAIN_FAILED && strstr(nn_last_error(), "not a resumable checkpoint"), "%s",
           nn_last_error());
    nn_text_free(&text);
}

/* ---- the command line ---- */

#define LM_RUN                                                                                                    \
    "--data " SHAKESPEARE "/input.txt --arch 'embed(8) lstm(16) linear(65)' --steps 30 --eval-every 10 "          \
    "--eval-windows 16 --context 16 --batch-size 8 --opt adamw --ema 0.9 --threads 1 --seed 3"

static void test_cli_lm_resume(void) {
    if (!have(SHAKESPEARE "/input.txt")) return;
    int rc = nn("train " LM_RUN " --save %s --metrics %s", tmp("cli_full.st"), tmp("cli_full.csv"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    /* Ctrl-C after step 15. */
    rc = nn_limited("NN_TEST_RAISE=15:2", "train " LM_RUN " --save %s --metrics %s", tmp("cli_int.st"),
                    tmp("cli_int.csv"));
    CHECKF(rc == 130 && one_line_error("interrupted at step 15; resumable checkpoint saved to ") &&
               strstr(err_text, "; resume with nn train --resume "),
           "exited %d: %s", rc, err_text);
    /* Every setting comes from the file: one that contradicts it is named. */
    rc = nn("train --resume %s --lr 0.5", tmp("cli_int.st"));
    CHECKF(rc == 1 && one_line_error("was trained with learning rate 0.001; this run asks for 0.5"), "exited %d: %s",
           rc, err_text);
    rc = nn("train --resume %s --context 32", tmp("cli_int.st"));
    CHECKF(rc == 1 && one_line_error("was trained with context 16; this run asks for 32"), "exited %d: %s", rc,
           err_text);
    FILE *f = fopen(tmp("other.txt"), "w");
    for (int i = 0; f && i < 200; i++) fputs("to be or not to be\n", f);
    if (f) fclose(f);
    rc = nn("train --resume %s --data %s", tmp("cli_int.st"), tmp("other.txt"));
    CHECKF(rc == 1 && one_line_error("another vocabulary") && one_line(), "exited %d: %s", rc,
           err_text);
    rc = nn("train --resume %s --metrics %s --threads 1", tmp("cli_int.st"), tmp("cli_int.csv"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "resuming from") && strstr(out_text, "step    20/30") &&
          !strstr(out_text, "step    10/30"));
    CHECK_SAME_TENSORS(tmp("cli_full.st"), tmp("cli_int.st"));
    CHECK(same_metrics(tmp("cli_full.csv"), tmp("cli_int.csv")));
    /* SIGKILL after step 25: resumed from step 20's evaluation. */
    rc = nn_limited("NN_TEST_RAISE=25:9", "train " LM_RUN " --save %s", tmp("cli_kill.st"));
    CHECKF(rc == 128 + SIGKILL, "exited %d: %s", rc, err_text);
    rc = nn("train --resume %s --threads 1", tmp("cli_kill.st"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "step    30/30") && !strstr(out_text, "step    20/30"));
    CHECK_SAME_TENSORS(tmp("cli_full.st"), tmp("cli_kill.st"));
}

/* The GPT from the command line with its recipe's flags, on two threads
 * (the resumed run is given the same count): killed mid-way, resumed, the
 * same bits. */
#define GPT_RUN                                                                                                   \
    "--data " SHAKESPEARE "/input.txt --arch '" GPT_SPEC "' --steps 30 --eval-every 10 --eval-windows 16 "        \
    "--context 16 --batch-size 8 --opt adamw --lr 1e-3 --wd 0.1 --beta2 0.99 --schedule cosine --warmup 5 "         \
    "--min-lr 1e-4 --clip 1 --threads 2 --seed 5"

static void test_cli_gpt_resume(void) {
    if (!have(SHAKESPEARE "/input.txt")) return;
    int rc = nn("train " GPT_RUN " --save %s", tmp("cli_gpt_full.st"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    rc = nn_limited("NN_TEST_RAISE=25:9", "train " GPT_RUN " --save %s", tmp("cli_gpt_kill.st"));
    CHECKF(rc == 128 + SIGKILL, "exited %d: %s", rc, err_text);
    rc = nn("train --resume %s --threads 2", tmp("cli_gpt_kill.st"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "resuming from") && strstr(out_text, "step    30/30") && !strstr(out_text, "step    20/30"));
    CHECK_SAME_TENSORS(tmp("cli_gpt_full.st"), tmp("cli_gpt_kill.st"));
}

/* One-digit sums (90 train, 10 held out) in a scratch folder. */
static const char *write_sums(void) {
    static char dir[256];
    snprintf(dir, sizeof dir, "%s", keep("sums"));
    CHECK(mkdir(dir, 0777) == 0);
    nn_addition_config c = nn_addition_defaults(1);
    char *train = NULL, *test = NULL, path[300];
    CHECK(nn_addition_generate(&c, &train, &test) == 0);
    const char *names[2] = {"train.lines.txt", "test.lines.txt"}, *texts[2] = {train, test};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "w");
        CHECK(f && texts[i] && fputs(texts[i], f) >= 0 && fclose(f) == 0);
    }
    free(train);
    free(test);
    return dir;
}

#define ANSWER_RUN                                                                                                \
    "--arch 'embed(8) posembed residual(layernorm attention(2)) layernorm unembed' --steps 30 --eval-every 10 "    \
    "--context 16 --batch-size 8 --opt adamw --threads 1 --seed 2"

static void test_cli_answer_resume(void) {
    const char *dir = write_sums();
    int rc = nn("train --data %s " ANSWER_RUN " --targets answer --save %s --metrics %s", dir, tmp("ans_full.st"),
                tmp("ans_full.csv"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    char buf[64];
    CHECKF(strcmp(meta_of(tmp("ans_full.st"), "nn.config.targets", buf, sizeof buf), "answer") == 0, "targets '%s'",
           buf);
    /* The setting trains otherwise than the default. */
    rc = nn("train --data %s " ANSWER_RUN " --save %s", dir, tmp("ans_all.st"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECKF(strcmp(meta_of(tmp("ans_all.st"), "nn.config.targets", buf, sizeof buf), "all") == 0, "targets '%s'", buf);
    CHECK(tensor_difference(tmp("ans_full.st"), tmp("ans_all.st")) != NULL);
    /* Ctrl-C after step 15, resumed without --targets: the same bits. */
    rc = nn_limited("NN_TEST_RAISE=15:2", "train --data %s " ANSWER_RUN " --targets answer --save %s --metrics %s", dir,
                    tmp("ans_int.st"), tmp("ans_int.csv"));
    CHECKF(rc == 130 && one_line_error("interrupted at step 15"), "exited %d: %s", rc, err_text);
    rc = nn("train --resume %s --targets all", tmp("ans_int.st"));
    CHECKF(rc == 1 && one_line_error("was trained with language-model targets answer; this run asks for all"),
           "exited %d: %s", rc, err_text);
    rc = nn("train --resume %s --metrics %s --threads 1", tmp("ans_int.st"), tmp("ans_int.csv"));
    CHECKF(rc == 0 && strstr(out_text, "resuming from"), "exited %d: %s", rc, err_text);
    CHECK_SAME_TENSORS(tmp("ans_full.st"), tmp("ans_int.st"));
    CHECK(same_metrics(tmp("ans_full.csv"), tmp("ans_int.csv")));
}

#define CLASSIFY_RUN                                                                                              \
    "--data " LANGUAGES " --arch 'embed(8) gru(16) last linear(18)' --epochs 3 --batch-size 256 --threads 1 "      \
    "--seed 4"

static void test_cli_classifier_resume(void) {
    if (!have(LANGUAGES "/Russian.txt")) return;
    int rc = nn("train " CLASSIFY_RUN " --save %s", tmp("cli_c_full.st"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    rc = nn_limited("NN_TEST_RAISE=100:9", "train " CLASSIFY_RUN " --save %s", tmp("cli_c_kill.st"));
    CHECKF(rc == 128 + SIGKILL, "exited %d: %s", rc, err_text);
    rc = nn("train --resume %s --threads 1", tmp("cli_c_kill.st"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "resuming from") && strstr(out_text, "epoch  2/3") && !strstr(out_text, "epoch  1/3"));
    CHECK_SAME_TENSORS(tmp("cli_c_full.st"), tmp("cli_c_kill.st"));
    /* A language model's checkpoint is not this data's. */
    if (access(tmp("cli_kill.st"), R_OK) == 0) {
        rc = nn("train --resume %s --data " LANGUAGES, tmp("cli_kill.st"));
        CHECKF(rc == 1 && one_line_error("was trained on stream data; this data is classes"), "exited %d: %s", rc,
               err_text);
    }
}

TEST_MAIN(TEST(test_lm_resume), TEST(test_gpt_resume), TEST(test_classifier_resume), TEST(test_cli_lm_resume), TEST(test_cli_gpt_resume),
          TEST(test_cli_classifier_resume), TEST(test_cli_answer_resume))
