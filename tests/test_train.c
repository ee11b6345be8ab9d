/* nn_train in-process, on a small synthetic dataset that a linear model can
 * learn (class c lights up row c of an 10x10 image): how each run ends
 * (finished, stopped early, interrupted, diverged, failed), the callbacks,
 * and a resume that continues bit for bit. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "nn/error.h"
#include "nn/study.h"
#include "nn/train.h"

#define SIDE 10

static void make_split(nn_dataset *d, int n, uint64_t seed) {
    nn_rng r;
    nn_rng_seed(&r, seed, 9);
    d->n = n, d->rows = SIDE, d->cols = SIDE;
    d->images = malloc((size_t)n * SIDE * SIDE);
    d->labels = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        int c = (int)nn_rng_below(&r, NN_DATA_CLASSES);
        d->labels[i] = (uint8_t)c;
        for (int p = 0; p < SIDE * SIDE; p++) {
            int noise = (int)nn_rng_below(&r, 60);
            d->images[(size_t)i * SIDE * SIDE + p] = (uint8_t)(p / SIDE == c ? 195 + noise : noise);
        }
    }
}

static nn_train_data data(bool with_val) {
    nn_train_data d = {0};
    make_split(&d.train, 600, 1);
    make_split(&d.test, 200, 2);
    if (with_val) {
        make_split(&d.val, 200, 3);
        d.has_val = true;
    }
    nn_dataset_mean_std(&d.train, &d.mean, &d.std);
    d.channels = 1;
    d.classes = NN_DATA_CLASSES;
    return d;
}

static nn_train_config config(void) {
    nn_train_config c = {0};
    c.spec = "flatten linear(10)";
    c.loss = NN_LOSS_CE;
    c.opt = nn_optim_defaults(NN_OPT_SGD);
    c.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 0.1f};
    c.batch_size = 50;
    c.epochs = 3;
    c.seed = 4;
    return c;
}

typedef struct counter {
    long steps, epochs, stop_at;
    volatile sig_atomic_t *stop;
    double last_test_acc;
    nn_train_progress last; /* the last progress report */
} counter;

static void count_step(void *user, const nn_train_progress *p) {
    counter *c = user;
    c->steps = p->step;
    c->last = *p;
    if (c->stop && p->step == c->stop_at) *c->stop = 1;
}

static int count_epoch(void *user, const nn_history *h) {
    counter *c = user;
    c->epochs++;
    c->last_test_acc = h->epochs[h->n - 1].test_acc;
    return 0;
}

static char path_buf[2][128];
static const char *tmp_path(int i, const char *name) {
    snprintf(path_buf[i], sizeof path_buf[i], "/tmp/nn_test_train_%d_%s", (int)getpid(), name);
    return path_buf[i];
}

static void test_finished_with_callbacks(void) {
    nn_train_data d = data(false);
    nn_train_config c = config();
    counter n = {0};
    c.label = "run";
    c.on_progress = count_step, c.on_epoch = count_epoch, c.user = &n;
    nn_model m;
    nn_history h;
    CHECK(nn_train(&c, &d, &m, &h) == NN_TRAIN_FINISHED);
    CHECK(h.n == 3 && n.epochs == 3 && n.steps == 3 * 12);
    CHECK(n.last.epoch == 3 && n.last.epochs == 3 && n.last.batch == 12 && n.last.batches == 12);
    CHECK(n.last.images_per_sec > 0 && isfinite(n.last.loss) && strcmp(n.last.label, "run") == 0);
    CHECKF(n.last_test_acc > 0.95, "test accuracy %.3f", n.last_test_acc);
    CHECK(n.last_test_acc == h.epochs[2].test_acc);
    nn_history_free(&h);
    nn_model_free(&m);
    nn_train_data_free(&d);
}

static void test_stopped_early(void) {
    nn_train_data d = data(true);
    nn_train_config c = config();
    c.sched.base_lr = 0.0f; /* nothing improves after the first epoch */
    c.epochs = 6;
    c.early_stop = 2;
    nn_model m;
    nn_history h;
    CHECK(nn_train(&c, &d, &m, &h) == NN_TRAIN_STOPPED_EARLY);
    CHECK(h.n == 3 && h.stopped_early && h.best_epoch == 1);
    nn_history_free(&h);
    nn_model_free(&m);
    nn_train_data_free(&d);
}

static void test_diverged(void) {
    nn_train_data d = data(false);
    nn_train_config c = config();
    c.spec = "flatten linear(16) relu linear(10)";
    c.sched.base_lr = 1e30f; /* the weights' product overflows */
    nn_model m;
    nn_history h;
    CHECK(nn_train(&c, &d, &m, &h) == NN_TRAIN_DIVERGED);
    /* The message speaks of the run (step, learning rate), not of a program's flags. */
    CHECKF(strstr(nn_last_error(), "loss became") && strstr(nn_last_error(), "with learning rate 1e+30") &&
               !strstr(nn_last_error(), "--"),
           "%s", nn_last_error());
    nn_history_free(&h);
    nn_model_free(&m);
    nn_train_data_free(&d);
}

static void test_failed(void) {
    nn_train_data d = data(false);
    nn_train_config c = config();
    nn_model m;
    nn_history h;
    c.spec = "flatten linear(7)"; /* not one score per class */
    CHECK(nn_train(&c, &d, &m, &h) == NN_TRAIN_FAILED);
    CHECKF(strstr(nn_last_error(), "10 classes"), "%s", nn_last_error());
    nn_history_free(&h);
    c = config();
    c.save_path = "/nonexistent-dir/m.safetensors";
    CHECK(nn_train(&c, &d, &m, &h) == NN_TRAIN_FAILED);
    CHECKF(strstr(nn_last_error(), "/nonexistent-dir/m.safetensors"), "%s", nn_last_error());
    nn_history_free(&h);
    nn_model_free(&m);
    nn_train_data_free(&d);
}

/* Interrupted after step 20 (epoch 2), then resumed: the same weights as a
 * run that was never interrupted. */
static void test_interrupted_then_resumed(void) {
    nn_train_data d = data(false);
    nn_train_config c = config();
    c.spec = "flatten dropout(0.2) linear(16) relu linear(10)";
    c.opt = nn_optim_defaults(NN_OPT_ADAM);
    c.sched.base_lr = 1e-2f;
    nn_model full, part, resumed;
    nn_history h;
    CHECK(nn_train(&c, &d, &full, &h) == NN_TRAIN_FINISHED);
    nn_history_free(&h);

    volatile sig_atomic_t stop = 0;
    counter n = {.stop_at = 20, .stop = &stop};
    nn_train_config ci = c;
    ci.save_path = tmp_path(0, "int.safetensors");
    ci.stop = &stop, ci.on_progress = count_step, ci.user = &n;
    CHECK(nn_train(&ci, &d, &part, &h) == NN_TRAIN_INTERRUPTED);
    CHECKF(strstr(nn_last_error(), "interrupted at epoch 2, step 8") && strstr(nn_last_error(), ci.save_path) &&
               !strstr(nn_last_error(), "--"),
           "%s", nn_last_error());
    nn_history_free(&h);
    nn_model_free(&part);

    /* The checkpoint holds the settings field by field ... */
    static nn_train_settings saved;
    CHECKF(nn_train_settings_read(&saved, ci.save_path) == 0, "%s", nn_last_error());
    CHECK(saved.cfg.opt.kind == NN_OPT_ADAM && saved.cfg.sched.base_lr == 1e-2f && saved.cfg.batch_size == 50 &&
          saved.cfg.epochs == 3 && saved.cfg.seed == 4 && saved.cfg.opt.beta2 == c.opt.beta2);
    CHECK(strcmp(saved.spec, "flatten dropout(0.2) linear(16) relu linear(10)") == 0 && saved.cfg.spec == saved.spec);
    /* ... and a resume that asks for another one is refused, naming it. */
    nn_train_config cr = saved.cfg;
    cr.resume_path = ci.save_path;
    cr.sched.base_lr = 2e-2f;
    CHECK(nn_train(&cr, &d, &resumed, &h) == NN_TRAIN_FAILED);
    CHECKF(strstr(nn_last_error(), "learning rate 0.01; this run asks for 0.02"), "%s", nn_last_error());
    cr.sched.base_lr = 1e-2f;
    cr.batch_size = 25;
    CHECK(nn_train(&cr, &d, &resumed, &h) == NN_TRAIN_FAILED);
    CHECKF(strstr(nn_last_error(), "batch size 50; this run asks for 25"), "%s", nn_last_error());
    /* The settings read back resume the run bit for bit. */
    cr.batch_size = 50;
    CHECK(nn_train(&cr, &d, &resumed, &h) == NN_TRAIN_FINISHED);
    CHECK(h.n == 3);
    CHECK(resumed.params.count == full.params.count &&
          memcmp(resumed.params.data, full.params.data, full.params.count * sizeof(float)) == 0);
    nn_history_free(&h);
    nn_model_free(&resumed);

    /* Interrupted without a checkpoint to write: still an interruption. */
    stop = 0;
    ci.save_path = NULL;
    CHECK(nn_train(&ci, &d, &part, &h) == NN_TRAIN_INTERRUPTED);
    CHECKF(strstr(nn_last_error(), "no save path"), "%s", nn_last_error());
    nn_history_free(&h);
    nn_model_free(&part);
    unlink(tmp_path(0, "int.safetensors"));
    nn_train_settings_free(&saved);
    nn_model_free(&full);
    nn_train_data_free(&d);
}

static int failing_epoch(void *user, const nn_history *h) {
    (void)user;
    return h->n == 2 ? nn_error("the callback gives up after epoch 2") : 0;
}

/* A callback that fails stops the run; a step schedule without a step size
 * decays 10x after each third of the run (here: each epoch). */
static void test_callback_failure_and_step_schedule(void) {
    nn_train_data d = data(false);
    nn_train_config c = config();
    c.on_epoch = failing_epoch;
    nn_model m;
    nn_history h;
    CHECK(nn_train(&c, &d, &m, &h) == NN_TRAIN_FAILED && h.n == 2);
    CHECKF(strstr(nn_last_error(), "gives up after epoch 2"), "%s", nn_last_error());
    nn_history_free(&h);
    nn_model_free(&m);
    c = config();
    c.sched.kind = NN_SCHED_STEP;
    c.sched.gamma = 0.1f;
    CHECK(nn_train(&c, &d, &m, &h) == NN_TRAIN_FINISHED && h.n == 3);
    /* The lr logged is the epoch's last step's: updates 11, 23, 35 (0-based)
     * of 36, with step size 12. */
    CHECK_NEAR(h.epochs[0].lr, 0.1, 1e-7);
    CHECK_NEAR(h.epochs[1].lr, 0.01, 1e-8);
    CHECK_NEAR(h.epochs[2].lr, 0.001, 1e-9);
    nn_history_free(&h);
    nn_model_free(&m);
    nn_train_data_free(&d);
}

/* A model the caller planned (to print its summary, say) is built, not
 * parsed again: the same weights as from the spec. */
static void test_planned_model(void) {
    nn_train_data d = data(false);
    nn_train_config c = config();
    nn_model from_spec, planned;
    nn_history h;
    CHECK(nn_train(&c, &d, &from_spec, &h) == NN_TRAIN_FINISHED);
    nn_history_free(&h);
    CHECK(nn_model_plan(&planned, c.spec, (int[]){1, SIDE, SIDE}, NN_DATA_CLASSES) == 0);
    c.spec = NULL;
    CHECK(nn_train(&c, &d, &planned, &h) == NN_TRAIN_FINISHED);
    CHECK(planned.params.count == from_spec.params.count &&
          memcmp(planned.params.data, from_spec.params.data, from_spec.params.count * sizeof(float)) == 0);
    nn_history_free(&h);
    nn_model_free(&planned);
    /* planned for other data: refused, naming both shapes */
    CHECK(nn_model_plan(&planned, "flatten linear(10)", (int[]){1, 28, 28}, NN_DATA_CLASSES) == 0);
    CHECK(nn_train(&c, &d, &planned, &h) == NN_TRAIN_FAILED);
    CHECKF(strstr(nn_last_error(), "[1,28,28]") && strstr(nn_last_error(), "[1,10,10]"), "%s", nn_last_error());
    nn_history_free(&h);
    nn_model_free(&planned);
    nn_model_free(&from_spec);
    nn_train_data_free(&d);
}

/* libnn writes nothing to the terminal: a run without callbacks, one that
 * stops early, one that diverges and one that is interrupted leave stdout
 * and stderr empty. */
static void test_silent(void) {
    const char *out_path = tmp_path(0, "stdout"), *err_path = tmp_path(1, "stderr");
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(saved_out >= 0 && saved_err >= 0 && out >= 0 && err >= 0);
    dup2(out, 1);
    dup2(err, 2);
    nn_train_data d = data(true);
    nn_train_config c = config();
    nn_model m;
    nn_history h;
    nn_train_status finished = nn_train(&c, &d, &m, &h);
    nn_history_free(&h);
    nn_model_free(&m);
    c.sched.base_lr = 0.0f, c.epochs = 6, c.early_stop = 2;
    nn_train_status stopped = nn_train(&c, &d, &m, &h);
    nn_history_free(&h);
    nn_model_free(&m);
    c = config();
    c.spec = "flatten linear(16) relu linear(10)";
    c.sched.base_lr = 1e30f;
    nn_train_status diverged = nn_train(&c, &d, &m, &h);
    nn_history_free(&h);
    nn_model_free(&m);
    volatile sig_atomic_t stop = 1;
    c = config();
    c.stop = &stop;
    nn_train_status interrupted = nn_train(&c, &d, &m, &h);
    nn_history_free(&h);
    nn_model_free(&m);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out), close(saved_err), close(out), close(err);
    CHECK(finished == NN_TRAIN_FINISHED && stopped == NN_TRAIN_STOPPED_EARLY && diverged == NN_TRAIN_DIVERGED &&
          interrupted == NN_TRAIN_INTERRUPTED);
    struct stat so, se;
    CHECK(stat(out_path, &so) == 0 && stat(err_path, &se) == 0);
    CHECKF(so.st_size == 0 && se.st_size == 0, "nn_train wrote %lld bytes to stdout, %lld to stderr",
           (long long)so.st_size, (long long)se.st_size);
    unlink(out_path);
    unlink(err_path);
    nn_train_data_free(&d);
}

static int count_run(void *user, int run, const nn_study_run *runs, nn_train_status status) {
    int *ended = user;
    ended[run] = status == NN_TRAIN_DIVERGED ? 2 : 1;
    return runs[run].done ? 0 : nn_error("run %d not done", run);
}

/* A study: every configuration x seed, a diverged run counted as a result. */
static void test_study(void) {
    nn_train_data d = data(false);
    nn_study_config sc[2] = {{"plain", config()}, {"blown", config()}};
    sc[1].cfg.spec = "flatten linear(16) relu linear(10)";
    sc[1].cfg.sched.base_lr = 1e30f;
    int ended[4] = {0};
    nn_study s = {.configs = sc, .n_configs = 2, .seeds = 2, .first_seed = 7, .on_run_end = count_run, .user = ended};
    nn_study_run runs[4];
    CHECKF(nn_study_run_all(&s, &d, runs) == 0, "%s", nn_last_error());
    CHECK(ended[0] == 1 && ended[1] == 1 && ended[2] == 2 && ended[3] == 2);
    CHECK(runs[0].config == 0 && runs[0].seed == 7 && runs[1].seed == 8 && runs[3].config == 1 && runs[3].seed == 8);
    CHECK(runs[0].done && !runs[0].diverged && runs[0].n == 3 && runs[0].final_train_acc > 0.9);
    CHECK(runs[0].test_acc[2] != runs[1].test_acc[2] || runs[0].train_loss[0] != runs[1].train_loss[0]);
    CHECK(runs[2].done && runs[2].diverged && isnan(runs[2].final_train_acc));
    /* the same run as nn_train's with that seed */
    nn_train_config c = config();
    c.seed = 7;
    nn_model m;
    nn_history h;
    CHECK(nn_train(&c, &d, &m, &h) == NN_TRAIN_FINISHED);
    CHECK(h.epochs[2].test_acc == runs[0].test_acc[2] && h.epochs[2].train_loss == runs[0].train_loss[2]);
    nn_history_free(&h);
    nn_model_free(&m);
    nn_study_runs_free(runs, 4);
    nn_train_data_free(&d);
}

TEST_MAIN(TEST(test_finished_with_callbacks), TEST(test_study), TEST(test_planned_model), TEST(test_silent), TEST(test_callback_failure_and_step_schedule), TEST(test_stopped_early), TEST(test_diverged), TEST(test_failed),
          TEST(test_interrupted_then_resumed))
