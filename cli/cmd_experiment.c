/* nn experiment: the "deep-learning techniques" study. Several configurations
 * (baseline SGD, momentum, Adam, AdamW with weight decay, dropout, LayerNorm,
 * GELU, all together) are trained the same way - same data, epochs, batch
 * size, schedule and seeds - by libnn's study loop (nn/study.h), and compared
 * in one table (results.csv, results.md) and two overlaid plots (test
 * accuracy and train-minus-test gap per epoch). This file holds the
 * configurations (as data), the flags and the output.
 *
 * The train accuracy per epoch is nn_train's running average over the epoch's
 * batches (dropout on, weights still moving); the final train-test gap in the
 * table uses the exact train accuracy instead, evaluated on the whole
 * training set in evaluation mode after the last epoch (nn_study_run's
 * final_train_acc). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/study.h"
#include "nn/train.h"
#include "plot/plot.h"
#include "progress.h"
#include "study_stats.h"
#include "core/util.h"

#define CMD "experiment"
#define MAX_SEEDS 100

/* ---- The configurations ------------------------------------------------------ */

/* One configuration: what it changes relative to the plain-SGD baseline.
 * Everything not listed here (width, epochs, batch size, cosine schedule,
 * data, seeds) is the same for all. A configuration with an arch trains that
 * layer stack (a CNN) instead of the MLP of --hidden. */
typedef struct exp_config {
    const char *name, *what;
    nn_optim_kind opt;
    float lr, wd;
    nn_act act;
    bool layer_norm;
    float dropout, smoothing;
    bool standard; /* in the default set */
    float input_dropout, ema;
    const char *arch;
    bool augment; /* the default distortions of nn train --augment */
} exp_config;

#define DROPOUT_P 0.3f
#define CONVNET(norm1, norm2)                                                                                 \
    "conv(32,3)" norm1 " relu maxpool(2) conv(64,3)" norm2 " relu maxpool(2) flatten dropout(0.5) linear(10)"
#define ADAMW_WD 0.05f

static const exp_config configs[] = {
    {.name = "baseline", .what = "plain SGD, lr 0.1, ReLU", .opt = NN_OPT_SGD, .lr = 0.1f, .standard = true},
    {.name = "momentum", .what = "SGD + momentum 0.9, lr 0.05", .opt = NN_OPT_MOMENTUM, .lr = 0.05f, .standard = true},
    {.name = "adam", .what = "Adam, lr 0.001", .opt = NN_OPT_ADAM, .lr = 1e-3f, .standard = true},
    {.name = "adamw", .what = "AdamW, lr 0.001, decoupled weight decay 0.05", .opt = NN_OPT_ADAMW, .lr = 1e-3f,
     .wd = ADAMW_WD, .standard = true},
    {.name = "dropout", .what = "baseline + dropout 0.3 on hidden layers", .opt = NN_OPT_SGD, .lr = 0.1f,
     .dropout = DROPOUT_P, .standard = true},
    {.name = "layernorm", .what = "baseline + LayerNorm before each activation", .opt = NN_OPT_SGD, .lr = 0.1f,
     .layer_norm = true, .standard = true},
    {.name = "gelu", .what = "baseline with GELU instead of ReLU", .opt = NN_OPT_SGD, .lr = 0.1f, .act = NN_ACT_GELU,
     .standard = true},
    {.name = "all", .what = "AdamW + weight decay + dropout + LayerNorm + GELU", .opt = NN_OPT_ADAMW, .lr = 1e-3f,
     .wd = ADAMW_WD, .act = NN_ACT_GELU, .layer_norm = true, .dropout = DROPOUT_P, .standard = true},
    /* extras, chosen with --configs */
    {.name = "nesterov", .what = "SGD + Nesterov momentum 0.9, lr 0.05", .opt = NN_OPT_NESTEROV, .lr = 0.05f},
    {.name = "l2", .what = "baseline + L2 weight decay 5e-4", .opt = NN_OPT_SGD, .lr = 0.1f, .wd = 5e-4f},
    {.name = "smoothing", .what = "baseline + label smoothing 0.1", .opt = NN_OPT_SGD, .lr = 0.1f, .smoothing = 0.1f},
    {.name = "input-dropout", .what = "baseline + dropout 0.2 on the input pixels", .opt = NN_OPT_SGD, .lr = 0.1f,
     .input_dropout = 0.2f},
    {.name = "ema", .what = "baseline, evaluating a moving average of the weights (0.999)", .opt = NN_OPT_SGD,
     .lr = 0.1f, .ema = 0.999f},
    {.name = "convnet", .what = "Keras' MNIST convnet, Adam, lr 0.001", .opt = NN_OPT_ADAM, .lr = 1e-3f,
     .arch = CONVNET("", "")},
    {.name = "convnet-bn", .what = "convnet + BatchNorm after each conv", .opt = NN_OPT_ADAM, .lr = 1e-3f,
     .arch = CONVNET(" batchnorm", " batchnorm")},
    {.name = "convnet-augment", .what = "convnet + random shifts, rotations and zooms", .opt = NN_OPT_ADAM,
     .lr = 1e-3f, .arch = CONVNET("", ""), .augment = true},
};
#define N_CONFIGS ((int)(sizeof configs / sizeof configs[0]))

/* ---- Options ----------------------------------------------------------------- */

/* Default sizes: the full study (8 configurations x 3 seeds x 15 epochs)
 * took 8 minutes on two cores; --overfit trains on 1,000 images for long
 * enough that the baseline memorises them (3 minutes). */
#define DEF_EPOCHS 15
#define DEF_HIDDEN 256
#define DEF_SEEDS 3
#define DEF_BATCH 128
#define DEF_TARGET 98
#define OVERFIT_LIMIT 1000
#define OVERFIT_EPOCHS 100
#define OVERFIT_TARGET 85

#define STR_(x) #x
#define STR(x) STR_(x)

static const char *const usage_text =
    "usage: nn experiment [OPTIONS]\n"
    "\n"
    "Trains several configurations the same way (same data, epochs, batch size,\n"
    "cosine schedule and seeds) and compares them: DIR/results.csv and\n"
    "DIR/results.md (per configuration, mean +- std over seeds of the final and best\n"
    "test accuracy, the final train-test gap, epochs to the target accuracy, and\n"
    "seconds), DIR/test_accuracy.png (test accuracy per epoch, all configurations\n"
    "overlaid, mean over seeds), DIR/gap.png (train minus test accuracy per epoch),\n"
    "DIR/runs.csv (one row per run) and DIR/epochs.csv (one row per run and epoch).\n"
    "Progress (run i/N, configuration, epoch, ETA) goes to stderr; the table to stdout.\n"
    "\n"
    "configurations (MLPs with the same hidden widths unless a layer stack is\n"
    "named, cross-entropy, cosine learning-rate schedule without warm-up):\n";

static const char *const epilogue =
    "\nThe default study (8 configurations x " STR(DEF_SEEDS) " seeds, " STR(DEF_EPOCHS) " epochs, all 60,000 training\n"
    "images) takes about 8 minutes on two cores, --overfit about 3.\n";

typedef struct exp_opts {
    int selected[N_CONFIGS]; /* indices into configs[] */
    int n_selected;
    int seeds, epochs, batch_size, train_limit, threads;
    long seed;
    int *hidden; /* owned */
    int n_hidden;
    bool overfit;
    double target; /* percent */
    const char *dataset, *data_dir, *out;
} exp_opts;

static int find_config(const char *name, size_t len) {
    for (int i = 0; i < N_CONFIGS; i++)
        if (strlen(configs[i].name) == len && strncmp(configs[i].name, name, len) == 0) return i;
    return -1;
}

/* "baseline,adamw" -> selected indices, in the order given. */
static int parse_configs(const char *s, void *target) {
    exp_opts *o = target;
    o->n_selected = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int k = find_config(p, len);
        if (k < 0) {
            char names[512];
            size_t n = 0;
            for (int i = 0; i < N_CONFIGS; i++)
                n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", configs[i].name);
            return nn_error("unknown configuration '%.*s' (one of: %s)", (int)len, p, names);
        }
        for (int i = 0; i < o->n_selected; i++)
            if (o->selected[i] == k) return nn_error("'%s' is listed twice", configs[k].name);
        o->selected[o->n_selected++] = k;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

static int parse_hidden(const char *value, void *target) {
    exp_opts *o = target;
    int *w, n = parse_widths(value, &w);
    if (n < 1) {
        free(w);
        return nn_error("'%s' is not a list of widths like 256,256 (at least one, each 1..65536)", value);
    }
    free(o->hidden);
    o->hidden = w;
    o->n_hidden = n;
    return 0;
}

static int parse_folder(const char *value, void *target) {
    if (!*value) return nn_error("empty folder name");
    *(const char **)target = value;
    return 0;
}

/* Returns -1 to go on, else the exit status to return now. */
static int parse_args(int argc, char **argv, exp_opts *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < N_CONFIGS; i++)
        if (configs[i].standard) o->selected[o->n_selected++] = i;
    o->seeds = DEF_SEEDS;
    o->seed = 1;
    o->epochs = DEF_EPOCHS;
    o->batch_size = DEF_BATCH;
    o->hidden = nn_xmalloc(2 * sizeof *o->hidden);
    o->hidden[0] = o->hidden[1] = DEF_HIDDEN;
    o->n_hidden = 2;
    o->target = DEF_TARGET;
    o->dataset = "mnist";
    flag table[] = {
        FLAG_SECTION("options:"),
        {"configs", FLAG_CUSTOM, o, .parse = parse_configs, .metavar = "LIST", .def = "the first eight",
         .help = "comma-separated names from the list above"},
        {"seeds", FLAG_INT, &o->seeds, 1, MAX_SEEDS, .metavar = "K", .help = "train each configuration with seeds S..S+K-1"},
        {"seed", FLAG_LONG, &o->seed, 0, 0x7fffffffL - MAX_SEEDS, .metavar = "S", .help = "first seed"},
        {"epochs", FLAG_INT, &o->epochs, 1, 100000, .metavar = "N",
         .def = STR(DEF_EPOCHS) "; " STR(OVERFIT_EPOCHS) " with --overfit", .help = "epochs per run"},
        {"hidden", FLAG_CUSTOM, o, .parse = parse_hidden, .metavar = "LIST", .def = STR(DEF_HIDDEN) "," STR(DEF_HIDDEN),
         .help = "hidden widths"},
        {"batch-size", FLAG_INT, &o->batch_size, 1, 65536, .metavar = "N", .help = "mini-batch size"},
        {"train-limit", FLAG_INT, &o->train_limit, 1, 100000000, .metavar = "N",
         .def = "all; " STR(OVERFIT_LIMIT) " with --overfit", .help = "train on the first N training images"},
        {"overfit", FLAG_SWITCH, &o->overfit,
         .help = "the over-fitting study: " STR(OVERFIT_LIMIT) " training images and " STR(OVERFIT_EPOCHS) " epochs,\n"
                 "so the baseline memorises its training set; shows which\n"
                 "techniques close the train-test gap (out: runs/overfit)"},
        {"target", FLAG_DOUBLE, &o->target, 0.01, 100, .metavar = "PCT",
         .def = STR(DEF_TARGET) "; " STR(OVERFIT_TARGET) " with --overfit",
         .help = "test accuracy (%) for the 'epochs to' column"},
        {"threads", FLAG_INT, &o->threads, 1, 256, .metavar = "N", .def = "all cores", .help = "OpenMP and OpenBLAS threads"},
        {"dataset", FLAG_STRING, &o->dataset, .metavar = "mnist|fashion-mnist", .help = "which data, from data/<dataset>"},
        {"data", FLAG_CUSTOM, &o->data_dir, .parse = parse_folder, .metavar = "DIR", .def = "",
         .help = "folder with the four IDX files instead"},
        {"out", FLAG_CUSTOM, &o->out, .parse = parse_folder, .metavar = "DIR", .def = "runs/experiment",
         .help = "output folder, created if missing"},
        FLAG_END,
    };
    /* The usage text lists the configurations. */
    char usage[4096];
    size_t len = (size_t)snprintf(usage, sizeof usage, "%s", usage_text);
    for (int i = 0; i < N_CONFIGS && len < sizeof usage; i++)
        len += (size_t)snprintf(usage + len, sizeof usage - len, "  %-16s %s%s\n", configs[i].name, configs[i].what,
                                configs[i].standard ? "" : " (extra)");
    if (len < sizeof usage) snprintf(usage + len, sizeof usage - len, "\n");
    int rc = flags_parse(CMD, table, argc, argv, usage, epilogue, NULL);
    if (rc >= 0) return rc;
    if (o->overfit) {
        if (!flag_given(table, "train-limit")) o->train_limit = OVERFIT_LIMIT;
        if (!flag_given(table, "epochs")) o->epochs = OVERFIT_EPOCHS;
        if (!flag_given(table, "target")) o->target = OVERFIT_TARGET;
    }
    if (!o->out) o->out = o->overfit ? "runs/overfit" : "runs/experiment";
    return -1;
}

/* ---- Progress with an ETA ----------------------------------------------------- */

/* nn_train reports each epoch through on_epoch; the study prints it as one
 * line on stderr with the time left for the whole study (from the average
 * time per epoch so far). */
typedef struct eta_log {
    FILE *out;
    const char *label; /* "[3/24] adamw seed 1 epoch" */
    int epochs;        /* per run */
    double t0;
    long done, total;  /* epochs, over all runs */
    progress_bar bar;
} eta_log;

/* "1h02m", "12m05s", "42s" */
static const char *fmt_duration(double s, char *buf, size_t cap) {
    long t = lround(s < 0 ? 0 : s);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
    return buf;
}

static int eta_epoch(void *user, const nn_history *h) {
    eta_log *e = user;
    e->done++;
    double elapsed = nn_seconds() - e->t0;
    char a[32], b[32], tail[96];
    snprintf(tail, sizeof tail, "  [%s elapsed, ETA %s]", fmt_duration(elapsed, a, sizeof a),
             fmt_duration(elapsed / (double)e->done * (double)(e->total - e->done), b, sizeof b));
    progress_end(&e->bar);
    print_epoch_line(e->out, e->label, e->epochs, h, tail);
    return 0;
}

static void eta_progress(void *user, const nn_train_progress *p) {
    eta_log *e = user;
    progress_train(&e->bar, p);
}

/* ---- Results ------------------------------------------------------------------ */

/* A growing text buffer for the files written at the end of each run. */
typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void __attribute__((format(printf, 2, 3))) put(text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        t->cap = 2 * (t->cap + (size_t)n) + 256;
        t->p = nn_xrealloc(t->p, t->cap);
    }
}

/* A CSV number: empty when not finite. */
static void put_num(text *t, double v, const char *fmt) {
    put(t, ",");
    if (isfinite(v)) put(t, fmt, v);
}

/* "98.21 ± 0.05" (percent), "98.21" for a single value, "—" for none. */
static void put_pct(text *t, const double ms[2]) {
    if (!isfinite(ms[0])) put(t, "—");
    else if (!isfinite(ms[1])) put(t, "%.2f", 100 * ms[0]);
    else put(t, "%.2f ± %.2f", 100 * ms[0], 100 * ms[1]);
}

typedef struct study {
    const exp_opts *o;
    const char *dir;     /* dataset folder */
    int n_train, n_test; /* images */
    char arch[128];      /* "MLP 784-256-256-10", "MLP 784-256-256-10 and CNNs" */
    char command[1024];  /* the command line, for results.md */
    nn_study_run *runs;
    int n_runs;
    char *paths[6];      /* results.csv, results.md, test_accuracy.png, gap.png, runs.csv, epochs.csv */
} study;

enum { P_CSV, P_MD, P_ACC, P_GAP, P_RUNS, P_EPOCHS };
static const char *const file_names[] = {"results.csv", "results.md", "test_accuracy.png", "gap.png", "runs.csv",
                                         "epochs.csv"};

/* The name of a run's configuration (runs count configurations in the order selected). */
static const char *config_name(const study *st, const nn_study_run *rr) {
    return configs[st->o->selected[rr->config]].name;
}

static int write_text(const char *path, text *t) {
    int rc = nn_write_file_atomic(path, t->p ? t->p : "", t->len);
    free(t->p);
    memset(t, 0, sizeof *t);
    return rc;
}

static int write_results_csv(const study *st) {
    text t = {0};
    put(&t, "config,description,runs,diverged,final_test_acc_mean,final_test_acc_std,best_test_acc_mean,"
            "best_test_acc_std,best_epoch_mean,final_train_acc_mean,gap_mean,gap_std,target_acc,"
            "epochs_to_target_mean,runs_reaching_target,seconds_mean,seconds_std\n");
    for (int i = 0; i < st->o->n_selected; i++) {
        int c = st->o->selected[i];
        study_summary s;
        study_summarise(st->runs, st->n_runs, i, st->o->target / 100.0, &s);
        if (s.runs == 0) continue;
        put(&t, "%s,\"%s\",%d,%d", configs[c].name, configs[c].what, s.runs, s.runs - s.ok);
        put_num(&t, s.final_acc[0], "%.6f");
        put_num(&t, s.final_acc[1], "%.6f");
        put_num(&t, s.best_acc[0], "%.6f");
        put_num(&t, s.best_acc[1], "%.6f");
        put_num(&t, s.best_epoch, "%.2f");
        put_num(&t, s.train_acc, "%.6f");
        put_num(&t, s.gap[0], "%.6f");
        put_num(&t, s.gap[1], "%.6f");
        put_num(&t, st->o->target / 100.0, "%.4f");
        put_num(&t, s.to_target, "%.2f");
        put(&t, ",%d", s.reached);
        put_num(&t, s.seconds[0], "%.1f");
        put_num(&t, s.seconds[1], "%.1f");
        put(&t, "\n");
    }
    return write_text(st->paths[P_CSV], &t);
}

static int write_runs_csv(const study *st) {
    text t = {0}, e = {0};
    put(&t, "config,seed,diverged,epochs,final_train_acc,final_test_acc,best_test_acc,best_epoch,gap,"
            "epochs_to_target,seconds\n");
    put(&e, "config,seed,epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds\n");
    for (int r = 0; r < st->n_runs; r++) {
        const nn_study_run *rr = &st->runs[r];
        if (!rr->done) continue;
        int best = 0, to_target = 0;
        for (int k = 0; k < rr->n; k++) {
            if (rr->test_acc[k] > rr->test_acc[best]) best = k;
            if (!to_target && rr->test_acc[k] >= st->o->target / 100.0) to_target = k + 1;
            put(&e, "%s,%d,%d,%.6f,%.6f,%.6f,%.6f,%.6g,%.2f\n", config_name(st, rr), (int)rr->seed, k + 1,
                rr->train_loss[k], rr->train_acc[k], rr->test_loss[k], rr->test_acc[k], rr->lr[k], rr->seconds[k]);
        }
        bool ok = !rr->diverged && rr->n > 0;
        double final_test = ok ? rr->test_acc[rr->n - 1] : NAN;
        put(&t, "%s,%d,%d,%d", config_name(st, rr), (int)rr->seed, rr->diverged ? 1 : 0, rr->n);
        put_num(&t, ok ? rr->final_train_acc : NAN, "%.6f");
        put_num(&t, final_test, "%.6f");
        put_num(&t, ok ? rr->test_acc[best] : NAN, "%.6f");
        put_num(&t, ok ? best + 1 : NAN, "%.0f");
        put_num(&t, ok ? rr->final_train_acc - final_test : NAN, "%.6f");
        put_num(&t, ok && to_target ? to_target : NAN, "%.0f");
        put_num(&t, rr->wall_seconds, "%.1f");
        put(&t, "\n");
    }
    int rc = write_text(st->paths[P_RUNS], &t);
    if (write_text(st->paths[P_EPOCHS], &e) != 0) rc = -1;
    return rc;
}

static int write_results_md(const study *st, bool print_stdout) {
    const exp_opts *o = st->o;
    text t = {0};
    put(&t, "# nn experiment: %s\n\n", o->overfit ? "over-fitting study" : "deep-learning techniques");
    put(&t, "%s, cross-entropy, cosine learning-rate schedule, batch %d, %d epochs, %d training images "
            "(%s), %d test images; %d seed%s (%ld",
        st->arch, o->batch_size, o->epochs, st->n_train, st->dir, st->n_test, o->seeds, o->seeds > 1 ? "s" : "",
        o->seed);
    if (o->seeds > 1) put(&t, "..%ld", o->seed + o->seeds - 1);
    put(&t, ") per configuration, values are mean ± sample std over seeds.\n\n");
    put(&t, "Command: `%s`\n\n", st->command);
    char target[32];
    snprintf(target, sizeof target, "%g%%", o->target);
    put(&t, "| configuration | what changes | final test acc (%%) | best test acc (%%) | train − test gap (pp) | "
            "epochs to %s | seconds per run |\n",
        target);
    put(&t, "| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (int i = 0; i < o->n_selected; i++) {
        int c = o->selected[i];
        study_summary s;
        study_summarise(st->runs, st->n_runs, i, o->target / 100.0, &s);
        if (s.runs == 0) continue;
        put(&t, "| %s | %s", configs[c].name, configs[c].what);
        if (s.ok < s.runs) put(&t, " (%d of %d runs diverged)", s.runs - s.ok, s.runs);
        put(&t, " | ");
        put_pct(&t, s.final_acc);
        put(&t, " | ");
        put_pct(&t, s.best_acc);
        put(&t, " | ");
        put_pct(&t, s.gap);
        put(&t, " | ");
        if (s.reached == 0) put(&t, "—");
        else put(&t, "%.1f", s.to_target);
        if (s.reached > 0 && s.reached < s.ok) put(&t, " (%d of %d runs)", s.reached, s.ok);
        put(&t, s.seconds[0] < 10 ? " | %.1f |\n" : " | %.0f |\n", s.seconds[0]);
    }
    put(&t, "\nFinal and best test accuracy: after the last epoch, and the highest after any epoch (best is "
            "an optimistic number: it picks the epoch by the test set). Train − test gap: accuracy on the whole "
            "training set in evaluation mode (dropout off) after the last epoch, minus the final test accuracy, "
            "in percentage points. Epochs to %s: the first epoch whose test accuracy reached it, averaged over "
            "the runs that did (— when none did). Seconds: wall-clock time of one run (training and the test "
            "evaluation after each epoch).\n\n",
        target);
    put(&t, "![test accuracy per epoch](test_accuracy.png)\n\n![train minus test accuracy per epoch](gap.png)\n\n");
    put(&t, "In gap.png the train accuracy of an epoch is the running average over its mini-batches (dropout "
            "on, weights still changing), so it is a slightly pessimistic train accuracy; the gap column above "
            "uses the exact one.\n");
    if (print_stdout) fwrite(t.p, 1, t.len, stdout);
    return write_text(st->paths[P_MD], &t);
}

/* Mean over the seeds of one configuration, per epoch, of test accuracy or of
 * the train - test gap (percent). Epochs that not every finished run reached
 * (a diverged run) average the runs that did. Returns the epochs filled. */
static int mean_curve(const study *st, int config, bool gap, double *y) {
    int n = 0;
    for (int e = 0; e < st->o->epochs; e++) {
        double s = 0.0;
        int k = 0;
        for (int r = 0; r < st->n_runs; r++) {
            const nn_study_run *rr = &st->runs[r];
            if (rr->config != config || !rr->done || e >= rr->n) continue;
            s += 100.0 * (gap ? rr->train_acc[e] - rr->test_acc[e] : rr->test_acc[e]);
            k++;
        }
        if (k == 0) break;
        y[e] = s / k;
        n = e + 1;
    }
    return n;
}

static int write_plots(const study *st) {
    const exp_opts *o = st->o;
    int E = o->epochs, S = o->n_selected;
    double *x = nn_xmalloc((size_t)E * sizeof *x);
    double *acc = nn_xmalloc((size_t)E * S * sizeof *acc), *gap = nn_xmalloc((size_t)E * S * sizeof *gap);
    nn_series *sa = nn_xcalloc((size_t)S, sizeof *sa), *sg = nn_xcalloc((size_t)S, sizeof *sg);
    for (int e = 0; e < E; e++) x[e] = e + 1;
    int n_series = 0;
    /* The y axes cover the values after the first epoch or two (the first
     * tenth of a long run), so the differences between good runs stay
     * visible (the first epochs of a slow configuration, and the meaningless
     * gap of the first epoch, whose running train accuracy starts from
     * chance, are cut off). */
    double lo = INFINITY, hi = -INFINITY, glo = INFINITY, ghi = -INFINITY;
    for (int i = 0; i < S; i++) {
        int c = o->selected[i];
        double *ya = acc + (size_t)n_series * E, *yg = gap + (size_t)n_series * E;
        int n = mean_curve(st, i, false, ya);
        if (n == 0) continue;
        mean_curve(st, i, true, yg);
        int skip = n >= 20 ? n / 10 : n >= 10 ? 2 : n >= 3 ? 1 : 0;
        for (int e = skip; e < n; e++) {
            if (isfinite(ya[e])) lo = fmin(lo, ya[e]), hi = fmax(hi, ya[e]);
            if (isfinite(yg[e])) glo = fmin(glo, yg[e]), ghi = fmax(ghi, yg[e]);
        }
        sa[n_series] = (nn_series){configs[c].name, x, ya, n, 0};
        sg[n_series] = (nn_series){configs[c].name, x, yg, n, 0};
        n_series++;
    }
    int rc = 0;
    if (n_series > 0) {
        char title[256], seeds[48];
        if (o->seeds > 1) snprintf(seeds, sizeof seeds, ", %d seeds", o->seeds);
        else seeds[0] = '\0';
        double ymin = 0, ymax = 0; /* automatic */
        if (isfinite(lo) && hi > lo) {
            double pad = 0.08 * (hi - lo);
            ymin = fmax(0.0, lo - pad);
            ymax = fmin(100.0, hi + pad);
        }
        snprintf(title, sizeof title, "Test accuracy, %s, %d images%s", st->arch, st->n_train, seeds);
        nn_panel pa = {title, "epoch", "test accuracy (%)", sa, n_series, ymin, ymax};
        rc = nn_plot(st->paths[P_ACC], &pa, 1);
        snprintf(title, sizeof title, "Train - test accuracy, %s, %d images%s", st->arch, st->n_train, seeds);
        double gmin = 0, gmax = 0;
        if (isfinite(glo) && ghi > glo) {
            double pad = 0.08 * (ghi - glo);
            gmin = glo - pad;
            gmax = ghi + pad;
        }
        nn_panel pg = {title, "epoch", "train - test accuracy (percentage points)", sg, n_series, gmin, gmax};
        if (rc == 0) rc = nn_plot(st->paths[P_GAP], &pg, 1);
    }
    free(x);
    free(acc);
    free(gap);
    free(sa);
    free(sg);
    return rc;
}

static int write_all(const study *st, bool final) {
    if (write_results_csv(st) != 0 || write_runs_csv(st) != 0 || write_results_md(st, final) != 0 ||
        write_plots(st) != 0)
        return -1;
    return 0;
}

/* ---- Running ------------------------------------------------------------------ */


static int make_dirs(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return nn_error("%s: path too long", path);
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            struct stat sb;
            if (stat(buf, &sb) != 0) {
                if (mkdir(buf, 0777) != 0 && errno != EEXIST) return nn_error("%s: %s", buf, strerror(errno));
            } else if (!S_ISDIR(sb.st_mode)) {
                return nn_error("%s: not a folder", buf);
            }
            *p = saved;
            if (saved == '\0') break;
        }
    }
    return 0;
}

static void quote_command(char *out, size_t cap, int argc, char **argv) {
    size_t n = (size_t)snprintf(out, cap, "nn experiment");
    for (int i = 1; i < argc && n < cap; i++) {
        bool plain = strspn(argv[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:+") ==
                     strlen(argv[i]) && argv[i][0];
        n += (size_t)snprintf(out + n, cap - n, plain ? " %s" : " '%s'", argv[i]);
    }
}


/* The settings of a configuration's runs: what it changes over the
 * baseline, and what all share (width, epochs, batch size, cosine schedule).
 * *mlp_spec is the MLP's spec, for the caller to free (NULL for a layer stack). */
static nn_train_config config_of(const exp_config *ec, const exp_opts *o, int classes, char **mlp_spec) {
    nn_mlp_config mc = {.n_hidden = o->n_hidden, .hidden = o->hidden, .classes = classes, .act = ec->act,
                        .layer_norm = ec->layer_norm, .dropout = ec->dropout, .input_dropout = ec->input_dropout};
    *mlp_spec = ec->arch ? NULL : nn_mlp_spec(&mc);
    nn_train_config cfg = {0};
    cfg.spec = ec->arch ? ec->arch : *mlp_spec;
    if (ec->augment) cfg.augment = NN_AUGMENT_DEFAULT;
    cfg.ema = ec->ema;
    cfg.loss = NN_LOSS_CE;
    cfg.label_smoothing = ec->smoothing;
    cfg.opt = nn_optim_defaults(ec->opt);
    cfg.opt.weight_decay = ec->wd;
    cfg.sched = (nn_schedule){.kind = NN_SCHED_COSINE, .base_lr = ec->lr, .gamma = 0.1f};
    cfg.batch_size = o->batch_size;
    cfg.epochs = o->epochs;
    return cfg;
}

/* "MLP 784-256-256-10", with " and CNNs" when a layer stack is selected too. */
static void describe_arch(study *st, const nn_train_data *data) {
    const exp_opts *o = st->o;
    size_t n = (size_t)snprintf(st->arch, sizeof st->arch, "MLP %d", data->channels * data->train.rows * data->train.cols);
    for (int i = 0; i < o->n_hidden && n < sizeof st->arch; i++)
        n += (size_t)snprintf(st->arch + n, sizeof st->arch - n, "-%d", o->hidden[i]);
    if (n < sizeof st->arch) n += (size_t)snprintf(st->arch + n, sizeof st->arch - n, "-%d", data->classes);
    for (int i = 0; i < o->n_selected && n < sizeof st->arch; i++)
        if (configs[o->selected[i]].arch) {
            snprintf(st->arch + n, sizeof st->arch - n, " and CNNs");
            break;
        }
}

/* What the study shows while it runs: the callbacks of nn_study_run_all. */
typedef struct runner {
    study *st;
    eta_log eta;
    char label[64];
    int diverged;
} runner;

static void run_start(void *user, int r, nn_train_config *cfg) {
    runner *u = user;
    const nn_study_run *rr = &u->st->runs[r];
    snprintf(u->label, sizeof u->label, "[%d/%d] %s seed %d epoch", r + 1, u->st->n_runs, config_name(u->st, rr),
             (int)rr->seed);
    u->eta.label = u->label;
    cfg->label = u->label;
    cfg->on_epoch = eta_epoch;
    cfg->on_progress = eta_progress;
    cfg->user = &u->eta;
}

/* One line per finished run, then every file rewritten: a study stopped
 * early keeps the results of the runs it finished. */
static int run_end(void *user, int r, const nn_study_run *runs, nn_train_status status) {
    runner *u = user;
    const nn_study_run *rr = &runs[r];
    progress_end(&u->eta.bar);
    fprintf(stderr, "[%d/%d] %s seed %d: ", r + 1, u->st->n_runs, config_name(u->st, rr), (int)rr->seed);
    if (status == NN_TRAIN_DIVERGED) {
        /* The loss blew up: a result of the study, not an error. */
        u->diverged++;
        fprintf(stderr, "%s; counted as diverged\n", nn_last_error());
        u->eta.total -= u->st->o->epochs - rr->n; /* its remaining epochs will not run */
    } else {
        fprintf(stderr, "final test %.2f%%, train %.2f%% (evaluation mode), %.0f s\n", 100 * rr->test_acc[rr->n - 1],
                100 * rr->final_train_acc, rr->wall_seconds);
    }
    return write_all(u->st, false);
}

/* After the last run: the table on stdout and the files' names. */
static int finish_study(const study *st, int diverged) {
    fflush(stderr);
    if (write_results_md(st, true) != 0) return runtime_error();
    printf("\nwrote");
    for (int i = 0; i < 6; i++) printf(" %s", st->paths[i]);
    printf("\n");
    if (diverged)
        fprintf(stderr, "nn experiment: note: %d run%s diverged (see the table)\n", diverged, diverged > 1 ? "s" : "");
    return 0;
}

/* Trains the study on the data (nn_study_run_all) with Ctrl-C caught, and reports. */
static int train_all(study *st, const nn_train_data *data) {
    const exp_opts *o = st->o;
    st->n_train = data->train.n;
    st->n_test = data->test.n;
    describe_arch(st, data);
    st->n_runs = o->n_selected * o->seeds;
    st->runs = nn_xcalloc((size_t)st->n_runs, sizeof *st->runs);
    nn_study_config *sc = nn_xcalloc((size_t)o->n_selected, sizeof *sc);
    char **specs = nn_xcalloc((size_t)o->n_selected, sizeof *specs);
    for (int i = 0; i < o->n_selected; i++) {
        sc[i].name = configs[o->selected[i]].name;
        sc[i].cfg = config_of(&configs[o->selected[i]], o, data->classes, &specs[i]);
    }
    runner u = {.st = st, .eta = {.out = stderr, .epochs = o->epochs, .t0 = nn_seconds(),
                                  .total = (long)st->n_runs * o->epochs}};
    fprintf(stderr, "nn experiment: %d configuration%s x %d seed%s = %d runs of %d epochs; %s, %d train images, "
                    "batch %d; results in %s/\n",
            o->n_selected, o->n_selected > 1 ? "s" : "", o->seeds, o->seeds > 1 ? "s" : "", st->n_runs, o->epochs,
            st->arch, st->n_train, o->batch_size, o->out);
    nn_study s = {.configs = sc, .n_configs = o->n_selected, .seeds = o->seeds, .first_seed = (uint64_t)o->seed,
                  .stop = &stop_requested, .on_run_start = run_start, .on_run_end = run_end, .user = &u};
    /* Ctrl-C stops the study after the current training step; the files
     * already hold every finished run. */
    struct sigaction old_sa;
    catch_sigint(&old_sa);
    int rc = nn_study_run_all(&s, data, st->runs);
    release_sigint(&old_sa);
    progress_end(&u.eta.bar);
    if (rc != 0 && stop_requested) {
        int r = 0;
        while (r < st->n_runs && st->runs[r].done) r++;
        nn_error("interrupted in run %d of %d (%s, seed %d); the files in %s hold the %d finished runs", r + 1,
                 st->n_runs, config_name(st, &st->runs[r]), (int)st->runs[r].seed, o->out, r);
    }
    rc = rc != 0 ? runtime_error() : finish_study(st, u.diverged);
    for (int i = 0; i < o->n_selected; i++) free(specs[i]);
    free(specs);
    free(sc);
    nn_study_runs_free(st->runs, st->n_runs);
    free(st->runs);
    return rc;
}

/* The output folder and the data, then the study. */
static int run_study(const exp_opts *o, int argc, char **argv) {
    const char *dir = dataset_dir(CMD, o->dataset, o->data_dir);
    if (!dir) return EXIT_USAGE;
    set_threads(o->threads);
    study st = {.o = o, .dir = dir};
    quote_command(st.command, sizeof st.command, argc, argv);
    for (int i = 0; i < 6; i++) {
        size_t len = strlen(o->out) + strlen(file_names[i]) + 2;
        st.paths[i] = nn_xmalloc(len);
        snprintf(st.paths[i], len, "%s/%s", o->out, file_names[i]);
    }
    nn_train_data data;
    int rc;
    /* Fail on an unwritable output folder now, not after the training. */
    if (make_dirs(o->out) != 0 || write_results_csv(&st) != 0) {
        rc = runtime_error();
    } else if (nn_train_data_load(&data, dir, o->train_limit, 0.0f) != 0) {
        rc = data_error(o->dataset, o->data_dir);
    } else {
        rc = train_all(&st, &data);
        nn_train_data_free(&data);
    }
    for (int i = 0; i < 6; i++) free(st.paths[i]);
    return rc;
}

int cmd_experiment(int argc, char **argv) {
    exp_opts o;
    int status = parse_args(argc, argv, &o);
    if (status < 0) status = run_study(&o, argc, argv);
    free(o.hidden);
    return status;
}
