/* A language model's run (nn_train_lm) on the committed Tiny Shakespeare:
 * a short run takes the validation loss well below the uniform ln(65); the
 * checkpoint carries the vocabulary and generates with it; the metrics CSV
 * has a row per evaluation; the same seed gives the same run; bad settings
 * are refused; nn train draws its loss curves and graph; --preset charlstm and gpt;
 * a GPT's batch cut between threads makes the whole batch's step. */
#include <math.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "run_nn.h"
#include "nn/train.h"

#define DATA "datasets/tinyshakespeare"

static nn_train_config lm_config(void) {
    nn_train_config c = nn_train_config_defaults();
    c.spec = "embed(32) lstm(128) linear(65)";
    c.opt = nn_optim_defaults(NN_OPT_ADAM);
    c.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 3e-3f};
    c.clip = 1.0f;
    c.batch_size = 16;
    c.context = 32;
    c.steps = 200;
    c.eval_every = 100;
    c.eval_windows = 200;
    return c;
}

static int evals_seen;
static int count_evals(void *user, const nn_lm_history *h, nn_model *m) {
    evals_seen = h->n;
    return 0;
}

static void test_learns_shakespeare(void) {
    /* One thread: a small LSTM's many short parallel regions crawl when the
     * machine running the suite is oversubscribed (and the run's numbers
     * depend on the thread count). */
    omp_set_num_threads(1);
    nn_text t;
    if (access(DATA "/input.txt", R_OK) != 0) {
        SKIP("%s is missing: the language-model run not checked", DATA);
        return;
    }
    CHECKF(nn_text_load(&t, DATA, NN_TEXT_AUTO, 1, NULL) == 0, "%s", nn_last_error());
    CHECK(t.vocab.size == 65);
    nn_train_config c = lm_config();
    char save[256], metrics[256];
    snprintf(save, sizeof save, "%s", tmp("lm.safetensors"));
    snprintf(metrics, sizeof metrics, "%s", tmp("lm.csv"));
    c.save_path = save;
    c.metrics_path = metrics;
    c.on_eval = count_evals;
    nn_model m;
    nn_lm_history h;
    CHECKF(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    CHECKF(h.n == 2 && evals_seen == 2 && h.evals[1].step == 200, "%d evaluations", h.n);
    double uniform = log(65.0);
    CHECKF(h.evals[1].val_loss < 0.7 * uniform && h.evals[1].val_loss < h.evals[0].val_loss,
           "validation loss %g then %g (uniform: %g)", h.evals[0].val_loss, h.evals[1].val_loss, uniform);
    /* The same seed, the same run. */
    nn_train_config again = lm_config();
    nn_model m2;
    nn_lm_history h2;
    CHECKF(nn_train_lm(&again, &t, &m2, &h2) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    CHECK(h2.evals[1].val_loss == h.evals[1].val_loss &&
          memcmp(m2.params.data, m.params.data, m.params.count * sizeof(float)) == 0);
    /* The checkpoint: the model and its vocabulary. */
    nn_model back;
    CHECKF(nn_model_load(&back, c.save_path) == 0, "%s", nn_last_error());
    CHECK(back.vocab == 65 && memcmp(back.params.data, m.params.data, m.params.count * sizeof(float)) == 0);
    nn_safetensors st;
    CHECK(nn_st_load(&st, c.save_path) == 0);
    nn_vocab v;
    CHECKF(nn_vocab_parse(&v, nn_st_meta(&st, "nn.vocab"), c.save_path) == 0, "%s", nn_last_error());
    CHECK(v.size == 65 && v.chars[v.size - 1] == 'z');
    nn_vocab_free(&v);
    nn_st_free(&st);
    /* The metrics: a header and a row per evaluation. */
    FILE *f = fopen(c.metrics_path, "r");
    char line[512];
    int rows = 0;
    CHECK(f && fgets(line, sizeof line, f) &&
          strcmp(line, "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,images_per_sec,step,val_bits_per_char\n") ==
              0);
    while (f && fgets(line, sizeof line, f)) rows++;
    if (f) fclose(f);
    CHECK(rows == 2);
    nn_model_free(&back);
    nn_model_free(&m2);
    nn_model_free(&m);
    nn_lm_history_free(&h2);
    nn_lm_history_free(&h);
    nn_text_free(&t);
}

static void test_bad_settings(void) {
    nn_text t;
    if (access(DATA "/input.txt", R_OK) != 0) {
        SKIP("%s is missing", DATA);
        return;
    }
    CHECK(nn_text_load(&t, DATA, NN_TEXT_AUTO, 1, NULL) == 0);
    nn_model m;
    nn_lm_history h;
    nn_train_config c = lm_config();
    c.steps = 0;
    CHECK(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FAILED && strstr(nn_last_error(), "at least 1"));
    nn_model_free(&m);
    nn_lm_history_free(&h);
    c = lm_config();
    c.spec = "embed(8) lstm(8) linear(10)";
    CHECKF(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FAILED && strstr(nn_last_error(), "65 classes"), "%s",
           nn_last_error());
    nn_model_free(&m);
    nn_lm_history_free(&h);
    nn_text_free(&t);
}

/* nn train on text draws the loss curves (--plot) and the first step's
 * graph (--graph); what only images take is still refused. */
static void test_cli_plot_and_graph(void) {
    if (access(DATA "/input.txt", R_OK) != 0) {
        SKIP("%s is missing", DATA);
        return;
    }
    int rc = nn("train --data " DATA "/input.txt --arch 'embed(8) lstm(16) linear(65)' --steps 20 --eval-every 10 "
                "--eval-windows 8 --context 8 --batch-size 4 --threads 1 --plot %s --graph %s",
                tmp("loss.svg"), tmp("step.dot"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "plot: ") && strstr(out_text, "step    20/20"));
    char buf[1 << 14];
    slurp(tmp("loss.svg"), buf, sizeof buf);
    CHECKF(strstr(buf, "<svg"), "%s is not an SVG", tmp("loss.svg"));
    slurp(tmp("step.dot"), buf, sizeof buf);
    CHECKF(strncmp(buf, "digraph", 7) == 0 && strstr(buf, "->"), "%.200s", buf);
    rc = nn("train --data " DATA "/input.txt --steps 20 --plot %s", tmp("loss.txt"));
    CHECKF(rc == 2 && strstr(err_text, "--plot"), "exited %d: %s", rc, err_text);
    rc = nn("train --data " DATA "/input.txt --early-stop 2 --val-split 0.1");
    CHECKF(rc == 2 && strstr(err_text, "is for images"), "exited %d: %s", rc, err_text);
}

/* --preset charlstm sets the recipe (the output layer sized by the data),
 * --preset gpt a whole GPT,
 * a flag overrides one of its values, --arch the whole model; a preset for
 * other data is refused. */
static void test_cli_presets(void) {
    if (access(DATA "/input.txt", R_OK) != 0) {
        SKIP("%s is missing", DATA);
        return;
    }
    int rc = nn("train --data " DATA "/input.txt --preset charlstm --steps 1 --eval-every 1 --eval-windows 2 "
                "--context 8 --batch-size 2 --threads 1");
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECKF(strstr(out_text, "training embed(64) lstm(512) dropout(0.2) linear(65) on") &&
               strstr(out_text, "adam lr 0.002, cosine schedule, batch 2, context 8, 1 steps"),
           "%.300s", out_text);
    rc = nn("train --data " DATA "/input.txt --preset charlstm --arch 'embed(8) lstm(8) linear(65)' --steps 1 "
            "--eval-every 1 --eval-windows 2 --context 8 --batch-size 2 --threads 1");
    CHECKF(rc == 0 && strstr(out_text, "training embed(8) lstm(8) linear(65) on"), "exited %d: %.300s", rc, out_text);
    rc = nn("train --data " DATA "/input.txt --preset cnn");
    CHECKF(rc == 2 && strstr(err_text, "--preset cnn is for images"), "exited %d: %s", rc, err_text);
    rc = nn("train --data " DATA "/input.txt --preset namegru");
    CHECKF(rc == 2 && strstr(err_text, "one .txt file per class"), "exited %d: %s", rc, err_text);
    rc = nn("train --data datasets/names-by-language --preset charlstm");
    CHECKF(rc == 2 && strstr(err_text, "try --preset namegru"), "exited %d: %s", rc, err_text);
    rc = nn("train --preset charlstm");
    CHECKF(rc == 2 && strstr(err_text, "is for text"), "exited %d: %s", rc, err_text);
    /* --preset gpt: the whole spec (its output tied, so not sized by the
     * data) and AdamW's betas, decay and floor, kept in the checkpoint */
    rc = nn("train --data " DATA "/input.txt --preset gpt --steps 1 --eval-every 1 --eval-windows 2 --context 8 "
            "--batch-size 2 --threads 1 --save %s",
            tmp("gpt.safetensors"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECKF(strstr(out_text, "training embed(128) posembed repeat(4, residual(layernorm attention(4,bias=0) "
                            "dropout(0.1)) residual(layernorm linear(512,bias=0) gelu linear(128,bias=0) "
                            "dropout(0.1))) layernorm unembed on") &&
               strstr(out_text, "adamw lr 0.002, cosine schedule, batch 2, context 8, 1 steps"),
           "%.400s", out_text);
    nn_train_settings s;
    CHECKF(nn_train_settings_read(&s, tmp("gpt.safetensors")) == 0, "%s", nn_last_error());
    CHECKF(s.cfg.opt.kind == NN_OPT_ADAMW && s.cfg.opt.beta2 == 0.99f && s.cfg.opt.weight_decay == 0.1f &&
               s.cfg.sched.min_lr == 1e-4f && s.cfg.sched.warmup == 200 && s.cfg.clip == 1.0f,
           "adamw beta2 %g wd %g, min lr %g, warm-up %ld, clip %g", s.cfg.opt.beta2, s.cfg.opt.weight_decay,
           s.cfg.sched.min_lr, s.cfg.sched.warmup, s.cfg.clip);
    nn_train_settings_free(&s);
    rc = nn("train --data datasets/names-by-language --preset gpt");
    CHECKF(rc == 2 && strstr(err_text, "--preset gpt is for a language model's text"), "exited %d: %s", rc,
           err_text);
}

/* On text, flags that tune the optimiser without naming it (--wd, --beta1,
 * --beta2) and --min-lr reach the run: the checkpoint's settings hold them,
 * and the first line shows them. */
static void test_cli_optimiser_flags(void) {
    if (access(DATA "/input.txt", R_OK) != 0) {
        SKIP("%s is missing", DATA);
        return;
    }
    int rc = nn("train --data " DATA "/input.txt --arch 'embed(8) lstm(8) linear(65)' --steps 2 --eval-every 2 "
                "--eval-windows 2 --context 8 --batch-size 2 --threads 1 --beta1 0.8 --beta2 0.99 --wd 0.1 "
                "--schedule cosine --min-lr 1e-4 --save %s",
                tmp("opt.safetensors"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    /* and the run's first line says so */
    CHECKF(strstr(out_text, "seed 1, betas (0.8, 0.99), weight decay 0.1, min lr 0.0001"), "%.300s", out_text);
    nn_train_settings s;
    CHECKF(nn_train_settings_read(&s, tmp("opt.safetensors")) == 0, "%s", nn_last_error());
    CHECKF(s.cfg.opt.kind == NN_OPT_ADAM && s.cfg.opt.beta1 == 0.8f && s.cfg.opt.beta2 == 0.99f &&
               s.cfg.opt.weight_decay == 0.1f && s.cfg.sched.min_lr == 1e-4f,
           "beta1 %g beta2 %g wd %g min_lr %g", s.cfg.opt.beta1, s.cfg.opt.beta2, s.cfg.opt.weight_decay,
           s.cfg.sched.min_lr);
    nn_train_settings_free(&s);
}

/* With T threads a GPT's batch is cut into T shards, each run on its own
 * replica of the model (train/shards.h): the steps must be the whole
 * batch's, up to rounding, for shards of equal and of unequal size (5 rows
 * between 2 and 3 threads; a shard's weight is its share of the targets
 * that count), on Shakespeare and on sums with an answer-only loss (where
 * the shards' counts differ). Plain SGD, so the weights differ by no more
 * than the gradients. --graph draws the whole batch. */
static void shards_match(const nn_text *t, const char *spec, nn_lm_targets targets, const char *what) {
    int saved = omp_get_max_threads();
    nn_model m[3];
    nn_lm_history h[3];
    for (int run = 0; run < 3; run++) {
        omp_set_num_threads(run + 1);
        nn_train_config c = nn_train_config_defaults();
        c.spec = spec;
        c.targets = targets;
        c.opt = nn_optim_defaults(NN_OPT_SGD);
        c.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 0.5f};
        c.batch_size = 5;
        c.context = 16;
        c.steps = 20;
        c.eval_every = 10;
        c.eval_windows = 20;
        if (run == 1) c.graph_path = tmp("shards.dot"); /* the whole batch's graph, not a shard's */
        CHECKF(nn_train_lm(&c, t, &m[run], &h[run]) == NN_TRAIN_FINISHED, "%s: %s", what, nn_last_error());
    }
    omp_set_num_threads(saved);
    static char dot[1 << 16];
    slurp(tmp("shards.dot"), dot, sizeof dot);
    CHECKF(strstr(dot, "[5, 16, 32]") && !strstr(dot, "[3, 16, 32]"), "%s: the graph of 2 threads' run: %.200s", what,
           dot);
    for (int run = 1; run < 3; run++) {
        float worst = 0.0f;
        for (size_t i = 0; i < m[0].params.count; i++) {
            float d = fabsf(m[run].params.data[i] - m[0].params.data[i]);
            if (d > worst) worst = d;
        }
        CHECKF(worst < 1e-5f, "%s, %d threads: a weight %g from the one-thread run's", what, run + 1, worst);
        for (int e = 0; e < 2; e++)
            CHECKF(fabs(h[run].evals[e].train_loss - h[0].evals[e].train_loss) < 1e-5 &&
                       fabs(h[run].evals[e].val_loss - h[0].evals[e].val_loss) < 1e-5,
                   "%s, %d threads, evaluation %d: train loss %.7f (one thread %.7f), validation %.7f (%.7f)", what,
                   run + 1, e + 1, h[run].evals[e].train_loss, h[0].evals[e].train_loss, h[run].evals[e].val_loss,
                   h[0].evals[e].val_loss);
    }
    CHECKF(h[0].evals[1].val_loss < h[0].evals[0].val_loss, "%s: validation loss %g then %g", what,
           h[0].evals[0].val_loss, h[0].evals[1].val_loss);
    for (int run = 0; run < 3; run++) {
        nn_model_free(&m[run]);
        nn_lm_history_free(&h[run]);
    }
}

static void test_shards_make_the_whole_batch(void) {
    nn_text t;
    if (access(DATA "/input.txt", R_OK) != 0) {
        SKIP("%s is missing", DATA);
        return;
    }
    CHECK(nn_text_load(&t, DATA, NN_TEXT_AUTO, 1, NULL) == 0);
    shards_match(&t, "embed(32) posembed repeat(2, residual(layernorm attention(2)) residual(layernorm linear(64) "
                     "gelu linear(32))) layernorm unembed",
                 NN_TARGETS_ALL, "Shakespeare");
    nn_text_free(&t);
    /* Sums a + b = c, a and b below 30, as lines (train.lines.txt). */
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s", tmp("sums"));
    CHECK(mkdir(dir, 0777) == 0);
    snprintf(path, sizeof path, "%s/train.lines.txt", dir);
    FILE *f = fopen(path, "w");
    for (int a = 0; f && a < 30; a++)
        for (int b = 0; b < 30; b++) fprintf(f, "%d+%d=%d\n", a, b, a + b);
    if (f) fclose(f);
    CHECKF(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0 && t.kind == NN_TEXT_LINES, "%s", nn_last_error());
    shards_match(&t, "embed(32) posembed residual(layernorm attention(2)) layernorm unembed", NN_TARGETS_ANSWER,
                 "sums, answers only");
    nn_text_free(&t);
}

TEST_MAIN(TEST(test_learns_shakespeare), TEST(test_bad_settings), TEST(test_cli_plot_and_graph), TEST(test_cli_presets),
          TEST(test_cli_optimiser_flags), TEST(test_shards_make_the_whole_batch))
