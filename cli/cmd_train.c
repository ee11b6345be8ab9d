/* nn train: flags -> nn_train_config, then the shared training loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "nn/model.h"
#include "nn/train.h"
#include "plot/plot.h"
#include "progress.h"

static const char *const usage_text =
    "usage: nn train [OPTIONS]\n"
    "\n"
    "Trains a digit classifier and reports train/test loss and accuracy per epoch.\n"
    "With no options: an MLP 784-1024-1024-10 with ReLU, cross-entropy, SGD with\n"
    "Nesterov momentum 0.9, lr 0.05 with a cosine schedule, batch 128, 6 epochs on\n"
    "MNIST (98.5% test accuracy in about 30 seconds on two cores).\n"
    "\n";

static const char *const epilogue =
    "\n"
    "Ctrl-C stops after the current step and writes a resumable checkpoint (exit 130).\n"
    "\n"
    "SPEC: layers separated by spaces, each NAME or NAME(ARGS), positional numbers\n"
    "first, then key=value; input sizes are inferred from the data. Layers:\n"
    "  linear(OUT)  conv(OUT,K[,stride=S][,padding=P])  maxpool(K[,stride=S])\n"
    "  avgpool(K[,stride=S])  batchnorm  layernorm  relu  leakyrelu[(SLOPE)]  gelu\n"
    "  sigmoid  tanh  dropout(P)  flatten\n"
    "The last layer must give one score per class. Examples:\n"
    "  --arch 'conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten dropout(0.5) linear(10)'\n"
    "  --arch 'flatten linear(1024) relu linear(1024) relu linear(10)'   (the default MLP)\n";

enum { MODEL_LINEAR, MODEL_MLP };
enum { PRESET_NONE = -1, PRESET_BASIC, PRESET_ADVANCED, PRESET_CNN };

typedef struct widths {
    int w[MAX_HIDDEN];
    int n;
} widths;

/* Everything a user can set, before it becomes an nn_train_config. Flags
 * whose type matches write into cfg directly. */
typedef struct train_opts {
    nn_train_config cfg;
    const char *arch;      /* --arch, a CNN preset's or a resumed file's spec; NULL = the MLP flags */
    const char *arch_from; /* which: "--arch", "--preset cnn" or "the checkpoint" */
    char *spec; /* the model the run trains (owned) */
    int model, act, norm, loss, opt, schedule, preset, precision;
    widths hidden;
    float dropout, input_dropout;
    double lr, momentum, wd;
    bool augment, no_augment;
    nn_augment aug;
    long seed;
    int threads, train_limit;
    double val_split;
    const char *dataset, *data_dir, *plot_path, *resume;
    nn_train_settings resumed;
    progress_bar bar;
} train_opts;

static int parse_spec(const char *value, void *target) {
    if (nn_spec_check(value) != 0) return -1;
    *(const char **)target = value;
    return 0;
}

static int parse_hidden(const char *value, void *target) {
    widths *h = target;
    int n = parse_widths(value, h->w, MAX_HIDDEN);
    if (n < 0)
        return nn_error("'%s' is not a list of widths like 1024,1024 (each 1 to 65536, at most %d)", value,
                        MAX_HIDDEN);
    h->n = n;
    return 0;
}

#define N_FLAGS 64

/* The one declaration of nn train's flags. */
static void make_table(train_opts *o, flag *t) {
    const flag table[] = {
        FLAG_SECTION("model:"),
        {"arch", FLAG_CUSTOM, &o->arch, .parse = parse_spec, .metavar = "SPEC", .def = "",
         .help = "any layer stack, e.g. a CNN (see below); replaces the\n"
                 "MLP flags --model, --hidden, --act, --norm, --dropout,\n--input-dropout"},
        {"model", FLAG_CHOICE, &o->model, .choices = "linear|mlp", .help = "softmax regression or multi-layer perceptron"},
        {"hidden", FLAG_CUSTOM, &o->hidden, .parse = parse_hidden, .metavar = "LIST", .def = "1024,1024",
         .help = "hidden widths, e.g. 1024,1024"},
        {"act", FLAG_CHOICE, &o->act, .choices = "relu|gelu|sigmoid|tanh", .help = "hidden activation"},
        {"norm", FLAG_CHOICE, &o->norm, .choices = "none|layer",
         .help = "LayerNorm after each hidden linear, before the activation"},
        {"dropout", FLAG_FLOAT, &o->dropout, 0, 0.95, .metavar = "P",
         .help = "dropout after each hidden activation, 0 = off"},
        {"input-dropout", FLAG_FLOAT, &o->input_dropout, 0, 0.95, .metavar = "P",
         .help = "dropout on the input pixels, 0 = off"},
        FLAG_SECTION("loss and optimiser:"),
        {"loss", FLAG_CHOICE, &o->loss, .choices = "ce|mse", .help = "cross-entropy, or MSE of softmax against one-hot"},
        {"label-smoothing", FLAG_FLOAT, &o->cfg.label_smoothing, 0, 0.99, .metavar = "S",
         .help = "cross-entropy label smoothing"},
        {"opt", FLAG_CHOICE, &o->opt, .choices = "sgd|momentum|nesterov|adam|adamw", .help = "optimiser"},
        {"lr", FLAG_DOUBLE, &o->lr, 0, 1e9, .metavar = "X", .def = "0.05; 0.001 for adam/adamw",
         .help = "learning rate"},
        {"momentum", FLAG_DOUBLE, &o->momentum, 0, 0.9999, .metavar = "X", .help = "momentum of momentum/nesterov"},
        {"wd", FLAG_DOUBLE, &o->wd, 0, 10, .metavar = "X", .def = "0; 0.01 for adamw",
         .help = "weight decay: L2 added to the gradient for sgd-family and\n"
                 "adam, decoupled for adamw; never on biases or LayerNorm"},
        {"schedule", FLAG_CHOICE, &o->schedule, .choices = "const|step|cosine",
         .help = "learning-rate schedule over all steps (step: 10x down\nafter each third)"},
        {"warmup", FLAG_LONG, &o->cfg.sched.warmup, 0, 100000000, .metavar = "N", .help = "linear warm-up steps"},
        {"clip", FLAG_FLOAT, &o->cfg.clip, 0, 1e6, .metavar = "X",
         .help = "clip the gradients' global L2 norm to X, 0 = off"},
        {"ema", FLAG_FLOAT, &o->cfg.ema, 0, 0.999999, .metavar = "D",
         .help = "evaluate and save a moving average of the weights, updated\n"
                 "after every step with decay D (e.g. 0.999); 0 = off"},
        FLAG_SECTION("augmentation (training images only, drawn from --seed):"),
        {"augment", FLAG_SWITCH, &o->augment, .help = "random affine distortions of every training image"},
        {"aug-shift", FLAG_FLOAT, &o->aug.shift, 0, 14, .metavar = "PX",
         .help = "at most PX pixels of shift along each axis"},
        {"aug-rotate", FLAG_FLOAT, &o->aug.rotate, 0, 180, .metavar = "DEG", .help = "at most DEG degrees of rotation"},
        {"aug-scale", FLAG_FLOAT, &o->aug.scale, 0, 0.9, .metavar = "F",
         .help = "zoom by a factor in [1-F, 1+F]\n(each --aug-* flag also turns --augment on)"},
        {"no-augment", FLAG_SWITCH, &o->no_augment, .help = "no distortions (e.g. to take them off --preset cnn)"},
        FLAG_SECTION("training:"),
        {"epochs", FLAG_INT, &o->cfg.epochs, 1, 100000, .metavar = "N", .help = "passes over the training set"},
        {"batch-size", FLAG_INT, &o->cfg.batch_size, 1, 65536, .metavar = "N", .help = "mini-batch size"},
        {"seed", FLAG_LONG, &o->seed, 0, 2147483647, .metavar = "N",
         .help = "seeds initialisation, shuffling, augmentation and dropout"},
        {"threads", FLAG_INT, &o->threads, 1, 256, .metavar = "N", .def = "all cores",
         .help = "OpenMP and OpenBLAS threads"},
        {"precision", FLAG_CHOICE, &o->precision, .choices = "fp32|bf16",
         .help = "the linear layers' products: bf16 rounds both operands to\n"
                 "bfloat16 and sums in fp32 (needs AVX512_BF16; without it,\n"
                 "fp32 with a note); weights and optimiser stay fp32"},
        {"train-limit", FLAG_INT, &o->train_limit, 1, 100000000, .metavar = "N", .def = "",
         .help = "train on the first N training images only"},
        {"val-split", FLAG_DOUBLE, &o->val_split, 0, 0.9, .metavar = "F", .def = "",
         .help = "hold out the last fraction F of the training set for validation"},
        {"early-stop", FLAG_INT, &o->cfg.early_stop, 0, 100000, .metavar = "N", .def = "",
         .help = "stop after N epochs without validation improvement\n"
                 "(needs --val-split; the checkpoint keeps the best epoch)"},
        {"preset", FLAG_CHOICE, &o->preset, .choices = "basic|advanced|cnn", .def = "",
         .help = "\nbasic: the course's assignment, 784-1024-1024-10 ReLU,\n"
                 "cross-entropy, plain SGD lr 0.1, batch 256, 10 epochs;\n"
                 "advanced: LayerNorm + GELU + dropout 0.2 (input 0.2) +\n"
                 "AdamW wd 0.1, label smoothing 0.1, weight average 0.999,\n"
                 "30 epochs: 98.9% (docs/RESULTS.md);\n"
                 "cnn: four 3x3 convs with BatchNorm, max pooling, linear(128),\n"
                 "dropout 0.3; --augment, AdamW lr 0.002 wd 0.05, warm-up 300\n"
                 "+ cosine, label smoothing 0.1, 10 epochs (docs/RESULTS.md).\n"
                 "Other flags override a preset's values."},
        FLAG_SECTION("data and output:"),
        {"dataset", FLAG_STRING, &o->dataset, .metavar = "mnist|fashion-mnist", .help = "which data, from data/<dataset>"},
        {"data", FLAG_STRING, &o->data_dir, .metavar = "DIR", .help = "folder with the four IDX files instead"},
        {"metrics", FLAG_STRING, &o->cfg.metrics_path, .metavar = "FILE.csv", .help = "per-epoch metrics"},
        {"plot", FLAG_CUSTOM, &o->plot_path, .parse = flag_picture, .metavar = "FILE.png|.svg", .def = "",
         .help = "train vs test accuracy and loss per epoch"},
        {"graph", FLAG_STRING, &o->cfg.graph_path, .metavar = "FILE.dot",
         .help = "the computation graph of one training step (Graphviz; render\n"
                 "with: dot -Tpng FILE.dot -o graph.png)"},
        {"save", FLAG_STRING, &o->cfg.save_path, .metavar = "FILE.safetensors",
         .help = "checkpoint, rewritten atomically after every epoch; it also\n"
                 "holds the optimiser state, the position and every setting, so\n"
                 "the run can resume. With --val-split it ends holding the best\n"
                 "epoch's weights"},
        {"resume", FLAG_STRING, &o->resume, .metavar = "FILE",
         .help = "continue an interrupted run from its checkpoint, with the\n"
                 "settings stored in it (a flag here that contradicts one is\n"
                 "an error); the result is bit-identical to an uninterrupted\n"
                 "run. Keeps saving to FILE unless --save says otherwise"},
        FLAG_END,
    };
    _Static_assert(sizeof table / sizeof *table <= N_FLAGS, "N_FLAGS is too small");
    memcpy(t, table, sizeof table);
}

static void defaults(train_opts *o) {
    memset(o, 0, sizeof *o);
    o->model = MODEL_MLP;
    o->act = NN_ACT_RELU;
    o->aug = NN_AUGMENT_DEFAULT;
    o->loss = NN_LOSS_CE;
    o->opt = NN_OPT_NESTEROV;
    o->cfg.opt = nn_optim_defaults(NN_OPT_NESTEROV);
    o->schedule = NN_SCHED_COSINE;
    o->cfg.sched = (nn_schedule){.kind = NN_SCHED_COSINE, .gamma = 0.1f};
    o->cfg.batch_size = 128;
    o->cfg.epochs = 6;
    o->seed = 1;
    o->hidden = (widths){{1024, 1024}, 2};
    o->lr = 0.05;
    o->momentum = 0.9;
    o->dataset = "mnist";
    o->preset = PRESET_NONE;
}

/* The best CNN found (docs/RESULTS.md): four 3x3 convs with BatchNorm, two
 * poolings, one hidden linear layer. */
#define PRESET_CNN_ARCH                                                                                         \
    "conv(32,3) batchnorm relu conv(32,3) batchnorm relu maxpool(2) conv(64,3) batchnorm relu conv(64,3) "        \
    "batchnorm relu maxpool(2) flatten linear(128) batchnorm relu dropout(0.3) linear(10)"

static void set_optimiser(train_opts *o, nn_optim_kind kind) {
    o->opt = kind;
    o->cfg.opt = nn_optim_defaults(kind);
    o->momentum = o->cfg.opt.momentum;
    o->wd = o->cfg.opt.weight_decay;
}

static void apply_preset(train_opts *o, int preset) {
    switch (preset) {
    case PRESET_BASIC:
        set_optimiser(o, NN_OPT_SGD);
        o->schedule = NN_SCHED_CONST;
        o->lr = 0.1;
        o->cfg.batch_size = 256;
        o->cfg.epochs = 10;
        break;
    case PRESET_ADVANCED:
        o->norm = 1;
        o->act = NN_ACT_GELU;
        o->dropout = 0.2f;
        o->input_dropout = 0.2f;
        o->cfg.ema = 0.999f;
        o->cfg.label_smoothing = 0.1f;
        set_optimiser(o, NN_OPT_ADAMW);
        o->wd = 0.1;
        o->lr = 1e-3;
        o->schedule = NN_SCHED_COSINE;
        o->cfg.sched.warmup = 500;
        o->cfg.batch_size = 128;
        o->cfg.epochs = 30;
        break;
    case PRESET_CNN:
        o->arch = PRESET_CNN_ARCH;
        o->arch_from = "--preset cnn";
        o->augment = true;
        o->cfg.label_smoothing = 0.1f;
        set_optimiser(o, NN_OPT_ADAMW);
        o->wd = 0.05;
        o->lr = 2e-3;
        o->schedule = NN_SCHED_COSINE;
        o->cfg.sched.warmup = 300;
        o->cfg.batch_size = 128;
        o->cfg.epochs = 10;
        break;
    }
}

/* A resumed run starts from the settings its checkpoint holds. */
static void from_settings(train_opts *o, const nn_train_settings *s) {
    o->cfg = s->cfg;
    o->arch = s->spec;
    o->arch_from = "the checkpoint";
    o->loss = s->cfg.loss;
    o->opt = s->cfg.opt.kind;
    o->momentum = s->cfg.opt.momentum;
    o->wd = s->cfg.opt.weight_decay;
    o->schedule = s->cfg.sched.kind;
    o->lr = s->cfg.sched.base_lr;
    o->aug = s->cfg.augment;
    o->augment = !nn_augment_is_identity(&s->cfg.augment);
    if (!o->augment) o->aug = NN_AUGMENT_DEFAULT;
    o->seed = (long)s->cfg.seed;
    o->precision = s->cfg.precision;
    o->train_limit = s->train_limit;
    o->val_split = s->val_split;
    o->data_dir = s->data_dir;
}

static const char *const mlp_flags[] = {"model", "hidden", "act", "norm", "dropout", "input-dropout"};

/* From the parsed flags to the config; returns -1 to go on, else the exit
 * status of a usage error. */
static int finish(train_opts *o, const flag *table) {
    const char *cmd = "train";
    const char *mlp_flag = NULL;
    for (size_t i = 0; i < sizeof mlp_flags / sizeof *mlp_flags; i++)
        if (flag_given(table, mlp_flags[i])) mlp_flag = mlp_flags[i];
    if (flag_given(table, "arch")) o->arch_from = "--arch";
    /* Resuming with MLP flags: the model they describe is compared with the file's. */
    else if (o->resume && mlp_flag) o->arch = NULL;
    if (o->arch && mlp_flag)
        return usage_error(cmd, "%s gives the whole model; drop --%s (or write it into a spec with --arch)",
                           o->arch_from, mlp_flag);
    /* A new optimiser brings its own defaults, unless given too. */
    if (flag_given(table, "opt")) {
        nn_optim_config d = nn_optim_defaults(o->opt);
        if (!flag_given(table, "lr")) o->lr = o->opt == NN_OPT_ADAM || o->opt == NN_OPT_ADAMW ? 1e-3 : 0.05;
        if (!flag_given(table, "wd")) o->wd = d.weight_decay;
        if (!flag_given(table, "momentum")) o->momentum = d.momentum;
        o->cfg.opt = d;
    }
    o->cfg.opt.kind = o->opt;
    o->cfg.opt.momentum = (float)o->momentum;
    o->cfg.opt.weight_decay = (float)o->wd;
    o->cfg.loss = o->loss;
    o->cfg.sched.kind = o->schedule;
    o->cfg.sched.base_lr = (float)o->lr;
    o->cfg.sched.step_size = 0;
    o->cfg.seed = (uint64_t)o->seed;
    o->cfg.precision = (nn_precision)o->precision;
    if (o->cfg.precision != NN_PRECISION_FP32 && !nn_precision_supported(o->cfg.precision)) {
        fprintf(stderr, "nn train: this CPU has no AVX512_BF16 instructions: training in fp32\n");
        o->cfg.precision = NN_PRECISION_FP32;
    }
    if (flag_given(table, "aug-shift") || flag_given(table, "aug-rotate") || flag_given(table, "aug-scale"))
        o->augment = true;
    o->cfg.augment = o->augment && !o->no_augment ? o->aug : (nn_augment){0};
    if (o->resume && flag_given(table, "dataset") && !flag_given(table, "data")) o->data_dir = NULL;
    if (o->cfg.early_stop > 0 && o->val_split <= 0.0)
        return usage_error(cmd, "--early-stop needs a validation set: add --val-split F");
    return -1;
}

static int parse_args(int argc, char **argv, train_opts *o, flag *table) {
    defaults(o);
    make_table(o, table);
    int rc = flags_parse("train", table, argc, argv, usage_text, epilogue, NULL);
    if (rc >= 0) return rc;
    /* A preset and a resumed file's settings come first, the flags on top:
     * the second pass starts from them (the first already checked every flag). */
    int preset = o->preset;
    const char *resume = o->resume;
    if (preset != PRESET_NONE || resume) {
        defaults(o);
        if (resume) {
            if (nn_train_settings_read(&o->resumed, resume) != 0) return runtime_error();
            from_settings(o, &o->resumed);
        }
        if (preset != PRESET_NONE) apply_preset(o, preset);
        if ((rc = flags_parse("train", table, argc, argv, usage_text, epilogue, NULL)) >= 0) return rc;
    }
    return finish(o, table);
}

/* For the kill-and-resume tests: NN_TEST_RAISE=STEP:SIGNAL makes the run
 * send itself SIGNAL after optimiser step STEP, a point in the run that no
 * timer outside the process can hit reliably on a busy machine. */
static long raise_at_step;
static int raise_signal;

static void show_progress(void *user, const nn_train_progress *p) {
    train_opts *o = user;
    progress_train(&o->bar, p);
    if (raise_at_step && p->step == raise_at_step) raise(raise_signal);
}

static int show_epoch(void *user, const nn_history *h) {
    train_opts *o = user;
    progress_end(&o->bar);
    print_epoch_line(stdout, "epoch", o->cfg.epochs, h, NULL);
    return o->plot_path ? nn_plot_history(o->plot_path, h) : 0;
}

/* The error of a run that failed, with what to do about it on this command line. */
static int run_error(nn_train_status rc, const nn_train_config *cfg) {
    fflush(stdout);
    fprintf(stderr, "nn: error: %s", nn_last_error());
    if (rc == NN_TRAIN_DIVERGED) fprintf(stderr, " (try a smaller --lr)");
    if (rc == NN_TRAIN_INTERRUPTED && cfg->save_path) fprintf(stderr, "; resume with nn train --resume %s", cfg->save_path);
    if (rc == NN_TRAIN_INTERRUPTED && !cfg->save_path) fprintf(stderr, " (--save FILE makes a run resumable)");
    fprintf(stderr, "\n");
    return rc == NN_TRAIN_INTERRUPTED ? 130 : 1;
}

/* Runs the training the options describe; returns the exit status. */
static int train_with(train_opts *o) {
    const char *dir = dataset_dir("train", o->dataset, o->data_dir);
    if (!dir) return EXIT_USAGE;
    set_threads(o->threads);

    nn_train_data data;
    if (nn_train_data_load(&data, dir, o->train_limit, (float)o->val_split) != 0)
        return data_error(o->dataset, o->data_dir);
    if (o->arch) {
        o->spec = nn_xstrdup(o->arch);
    } else {
        nn_mlp_config mlp = {.n_hidden = o->model == MODEL_LINEAR ? 0 : o->hidden.n, .hidden = o->hidden.w,
                             .act = (nn_act)o->act, .layer_norm = o->norm == 1, .dropout = o->dropout,
                             .input_dropout = o->input_dropout, .classes = data.classes};
        o->spec = nn_mlp_spec(&mlp);
    }
    o->cfg.spec = o->spec;
    nn_model plan;
    if (nn_model_plan(&plan, o->spec, (int[]){data.channels, data.train.rows, data.train.cols}, data.classes) != 0) {
        nn_train_data_free(&data);
        return usage_error("train", "%s: %s", o->arch ? o->arch_from : "model", nn_last_error());
    }

    printf("training %s on %s: %d train", o->spec, dir, data.train.n);
    if (data.has_val) printf(", %d validation", data.val.n);
    printf(", %d test images; %s lr %g, %s schedule, batch %d, %d epochs, seed %llu%s", data.test.n,
           nn_optim_name(o->cfg.opt.kind), o->lr, nn_schedule_name(o->cfg.sched.kind), o->cfg.batch_size,
           o->cfg.epochs, (unsigned long long)o->cfg.seed, o->cfg.ema > 0 ? ", weight average" : "");
    if (o->cfg.precision == NN_PRECISION_BF16) printf(", bf16 products");
    if (!nn_augment_is_identity(&o->cfg.augment))
        printf(", augmentation (shift %g px, rotation %g deg, zoom %g%%)", o->cfg.augment.shift, o->cfg.augment.rotate,
               100.0 * o->cfg.augment.scale);
    printf("\n");
    nn_model_summary(&plan, stdout);
    nn_model_free(&plan);
    if (o->resume) printf("resuming from %s\n", o->resume);
    fflush(stdout);

    /* Ctrl-C: finish the step, write a checkpoint, stop. */
    struct sigaction old_sa;
    catch_sigint(&old_sa);
    o->cfg.stop = &stop_requested;
    const char *test_raise = getenv("NN_TEST_RAISE");
    if (test_raise && sscanf(test_raise, "%ld:%d", &raise_at_step, &raise_signal) != 2) raise_at_step = 0;
    o->cfg.on_progress = show_progress;
    o->cfg.on_epoch = show_epoch;
    o->cfg.user = o;
    nn_model model = {0};
    nn_history hist;
    nn_train_status rc = nn_train(&o->cfg, &data, &model, &hist);
    release_sigint(&old_sa);
    progress_end(&o->bar);
    if (rc == NN_TRAIN_STOPPED_EARLY)
        printf("early stop: no validation improvement for %d epochs (best: epoch %d, %.2f%%)\n", o->cfg.early_stop,
               hist.best_epoch, 100 * hist.val_acc[hist.best_epoch - 1]);
    if (rc >= 0 && hist.n > 0) {
        const nn_epoch_metrics *last = &hist.epochs[hist.n - 1];
        printf("final test accuracy: %.2f%% (epoch %d)\n", 100 * last->test_acc, last->epoch);
        /* With a validation set the model ends on its best epoch's weights. */
        if (data.has_val && hist.best_epoch >= 1 && hist.best_epoch != last->epoch) {
            int b = hist.best_epoch - 1;
            printf("kept epoch %d, the best by validation accuracy (%.2f%%): test accuracy %.2f%%\n",
                   hist.best_epoch, 100 * hist.val_acc[b], 100 * hist.epochs[b].test_acc);
        }
        if (o->cfg.save_path) printf("checkpoint: %s\n", o->cfg.save_path);
        if (o->plot_path) printf("plot: %s\n", o->plot_path);
        if (o->cfg.metrics_path) printf("metrics: %s\n", o->cfg.metrics_path);
    }
    nn_history_free(&hist);
    nn_model_free(&model);
    nn_train_data_free(&data);
    free(o->spec);
    o->spec = NULL;
    nn_train_settings_free(&o->resumed);
    return rc >= 0 ? 0 : run_error(rc, &o->cfg);
}

int cmd_train(int argc, char **argv) {
    static train_opts o; /* holds a resumed file's settings: kept off the stack */
    flag table[N_FLAGS];
    int status = parse_args(argc, argv, &o, table);
    if (status >= 0) return status;
    if (o.resume) {
        o.cfg.resume_path = o.resume;
        if (!o.cfg.save_path) o.cfg.save_path = o.resume;
    }
    return train_with(&o);
}
