/* nn train: flags -> nn_train_config, then the shared training loop. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "nn/model.h"
#include "nn/train.h"
#include "plot/plot.h"

static const char *const train_help =
    "usage: nn train [OPTIONS]\n"
    "\n"
    "Trains a digit classifier and reports train/test loss and accuracy per epoch.\n"
    "With no options: an MLP 784-1024-1024-10 with ReLU, cross-entropy, SGD with\n"
    "Nesterov momentum 0.9, lr 0.05 with a cosine schedule, batch 128, 6 epochs on\n"
    "MNIST (98.5% test accuracy in about 30 seconds on two cores).\n"
    "\n"
    "model:\n"
    "  --arch SPEC             any layer stack, e.g. a CNN (see below); replaces the\n"
    "                          MLP flags --model, --hidden, --act, --norm, --dropout,\n"
    "                          --input-dropout\n"
    "  --model linear|mlp      softmax regression or multi-layer perceptron (mlp)\n"
    "  --hidden LIST           hidden widths, e.g. 1024,1024 (1024,1024)\n"
    "  --act relu|gelu|sigmoid|tanh   hidden activation (relu)\n"
    "  --norm none|layer       LayerNorm after each hidden linear, before the activation (none)\n"
    "  --dropout P             dropout after each hidden activation, 0 = off (0)\n"
    "  --input-dropout P       dropout on the input pixels, 0 = off (0)\n"
    "loss and optimiser:\n"
    "  --loss ce|mse           cross-entropy, or MSE of softmax against one-hot (ce)\n"
    "  --label-smoothing S     cross-entropy label smoothing (0)\n"
    "  --opt sgd|momentum|nesterov|adam|adamw   optimiser (nesterov)\n"
    "  --lr X                  learning rate (0.05; 0.001 for adam/adamw)\n"
    "  --momentum X            momentum of momentum/nesterov (0.9)\n"
    "  --wd X                  weight decay: L2 added to the gradient for sgd-family and\n"
    "                          adam, decoupled for adamw; never on biases or LayerNorm (0)\n"
    "  --schedule const|step|cosine   learning-rate schedule over all steps (cosine)\n"
    "  --warmup N              linear warm-up steps (0)\n"
    "  --clip X                clip the gradients' global L2 norm to X, 0 = off (0)\n"
    "  --ema D                 evaluate and save a moving average of the weights, updated\n"
    "                          after every step with decay D (e.g. 0.999); 0 = off (0)\n"
    "augmentation (training images only, drawn from --seed):\n"
    "  --augment               random affine distortions of every training image\n"
    "  --aug-shift PX          at most PX pixels of shift along each axis (2)\n"
    "  --aug-rotate DEG        at most DEG degrees of rotation (10)\n"
    "  --aug-scale F           zoom by a factor in [1-F, 1+F] (0.1)\n"
    "                          (each --aug-* flag also turns --augment on)\n"
    "  --no-augment            no distortions (e.g. to take them off --preset cnn)\n"
    "training:\n"
    "  --epochs N              passes over the training set (6)\n"
    "  --batch-size N          mini-batch size (128)\n"
    "  --seed N                seeds initialisation, shuffling and dropout (1)\n"
    "  --threads N             OpenMP and OpenBLAS threads (all cores)\n"
    "  --train-limit N         train on the first N training images only\n"
    "  --val-split F           hold out the last fraction F of the training set for validation\n"
    "  --early-stop N          stop after N epochs without validation improvement\n"
    "                          (needs --val-split; the checkpoint keeps the best epoch)\n"
    "  --preset basic|advanced|cnn\n"
    "                          basic: the course's assignment, 784-1024-1024-10 ReLU,\n"
    "                          cross-entropy, plain SGD lr 0.1, batch 256, 10 epochs;\n"
    "                          advanced: LayerNorm + GELU + dropout 0.2 (input 0.2) +\n"
    "                          AdamW wd 0.1, label smoothing 0.1, weight average 0.999,\n"
    "                          30 epochs: 98.9% (docs/RESULTS.md);\n"
    "                          cnn: four 3x3 convs with BatchNorm, max pooling, linear(128),\n"
    "                          dropout 0.3; --augment, AdamW lr 0.002 wd 0.05, warm-up 300\n"
    "                          + cosine, label smoothing 0.1, 10 epochs (docs/RESULTS.md).\n"
    "                          Other flags override a preset's values.\n"
    "data and output:\n"
    "  --dataset mnist|fashion-mnist   which data (mnist), from data/<dataset>\n"
    "  --data DIR              folder with the four IDX files instead\n"
    "  --metrics FILE.csv      per-epoch metrics\n"
    "  --plot FILE.png|.svg    train vs test accuracy and loss per epoch\n"
    "  --graph FILE.dot        the computation graph of one training step (Graphviz; render\n"
    "                          with: dot -Tpng FILE.dot -o graph.png)\n"
    "  --save FILE.safetensors checkpoint, rewritten atomically after every epoch; it also\n"
    "                          holds the optimiser state and position, so the run can resume.\n"
    "                          With --val-split it ends holding the best epoch's weights\n"
    "  --resume FILE           continue an interrupted run from its checkpoint, with the\n"
    "                          same settings (flags given here are applied on top); the\n"
    "                          result is bit-identical to an uninterrupted run. Keeps\n"
    "                          saving to FILE unless --save says otherwise\n"
    "\n"
    "Ctrl-C stops after the current step and writes a resumable checkpoint (exit 130).\n"
    "  -h, --help              this help\n"
    "\n"
    "SPEC: layers separated by spaces, each NAME or NAME(ARGS), positional numbers\n"
    "first, then key=value; input sizes are inferred from the data. Layers:\n"
    "  linear(OUT)  conv(OUT,K[,stride=S][,padding=P])  maxpool(K[,stride=S])\n"
    "  avgpool(K[,stride=S])  batchnorm  layernorm  relu  leakyrelu[(SLOPE)]  gelu\n"
    "  sigmoid  tanh  dropout(P)  flatten\n"
    "The last layer must give one score per class. Examples:\n"
    "  --arch 'conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten dropout(0.5) linear(10)'\n"
    "  --arch 'flatten linear(1024) relu linear(1024) relu linear(10)'   (the default MLP)\n";

enum {
    OPT_MODEL = 256, OPT_HIDDEN, OPT_ACT, OPT_NORM, OPT_DROPOUT, OPT_LOSS, OPT_SMOOTH, OPT_OPT, OPT_LR,
    OPT_MOMENTUM, OPT_WD, OPT_SCHEDULE, OPT_WARMUP, OPT_CLIP, OPT_EPOCHS, OPT_BATCH, OPT_SEED, OPT_THREADS,
    OPT_LIMIT, OPT_VAL, OPT_EARLY, OPT_PRESET, OPT_DATASET, OPT_DATA, OPT_METRICS, OPT_PLOT, OPT_SAVE,
    OPT_RESUME, OPT_GRAPH, OPT_INPUT_DROPOUT, OPT_EMA, OPT_ARCH, OPT_AUGMENT, OPT_AUG_SHIFT, OPT_AUG_ROTATE,
    OPT_AUG_SCALE, OPT_NO_AUGMENT,
};

static const struct option train_options[] = {
    {"model", required_argument, 0, OPT_MODEL}, {"hidden", required_argument, 0, OPT_HIDDEN},
    {"act", required_argument, 0, OPT_ACT}, {"norm", required_argument, 0, OPT_NORM},
    {"dropout", required_argument, 0, OPT_DROPOUT}, {"loss", required_argument, 0, OPT_LOSS},
    {"label-smoothing", required_argument, 0, OPT_SMOOTH}, {"opt", required_argument, 0, OPT_OPT},
    {"lr", required_argument, 0, OPT_LR}, {"momentum", required_argument, 0, OPT_MOMENTUM},
    {"wd", required_argument, 0, OPT_WD}, {"schedule", required_argument, 0, OPT_SCHEDULE},
    {"warmup", required_argument, 0, OPT_WARMUP}, {"clip", required_argument, 0, OPT_CLIP},
    {"epochs", required_argument, 0, OPT_EPOCHS}, {"batch-size", required_argument, 0, OPT_BATCH},
    {"seed", required_argument, 0, OPT_SEED}, {"threads", required_argument, 0, OPT_THREADS},
    {"train-limit", required_argument, 0, OPT_LIMIT}, {"val-split", required_argument, 0, OPT_VAL},
    {"early-stop", required_argument, 0, OPT_EARLY}, {"preset", required_argument, 0, OPT_PRESET},
    {"dataset", required_argument, 0, OPT_DATASET}, {"data", required_argument, 0, OPT_DATA},
    {"metrics", required_argument, 0, OPT_METRICS}, {"plot", required_argument, 0, OPT_PLOT},
    {"save", required_argument, 0, OPT_SAVE}, {"resume", required_argument, 0, OPT_RESUME},
    {"graph", required_argument, 0, OPT_GRAPH}, {"input-dropout", required_argument, 0, OPT_INPUT_DROPOUT},
    {"ema", required_argument, 0, OPT_EMA}, {"arch", required_argument, 0, OPT_ARCH},
    {"augment", no_argument, 0, OPT_AUGMENT}, {"no-augment", no_argument, 0, OPT_NO_AUGMENT}, {"aug-shift", required_argument, 0, OPT_AUG_SHIFT},
    {"aug-rotate", required_argument, 0, OPT_AUG_ROTATE}, {"aug-scale", required_argument, 0, OPT_AUG_SCALE},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
};

/* Everything a user can set, before it becomes an nn_train_config. */
typedef struct train_options_t {
    nn_train_config cfg;
    const char *arch;       /* --arch or a CNN preset's, or NULL for the MLP flags */
    const char *arch_from;  /* which: "--arch" or "--preset cnn" */
    const char *mlp_flag;   /* the last MLP flag given on the command line, if any */
    char spec[NN_SPEC_MAX]; /* the model the run trains */
    nn_mlp_config mlp;
    bool linear;
    int hidden[NN_MLP_MAX_HIDDEN];
    int n_hidden;
    bool augment;
    nn_augment aug;
    bool lr_set;
    double lr;
    double momentum;
    int threads, train_limit;
    double val_split;
    const char *dataset, *data_dir;
    const char *plot_path; /* redrawn after every epoch */
} train_opts;

static void defaults(train_opts *o) {
    memset(o, 0, sizeof *o);
    o->mlp.act = NN_ACT_RELU;
    o->aug = NN_AUGMENT_DEFAULT;
    o->cfg.loss = NN_LOSS_CE;
    o->cfg.opt = nn_optim_defaults(NN_OPT_NESTEROV);
    o->cfg.sched = (nn_schedule){.kind = NN_SCHED_COSINE, .gamma = 0.1f};
    o->cfg.batch_size = 128;
    o->cfg.epochs = 6;
    o->cfg.seed = 1;
    o->hidden[0] = o->hidden[1] = 1024;
    o->n_hidden = 2;
    o->lr = 0.05;
    o->momentum = 0.9;
    o->dataset = "mnist";
}

/* The best CNN found (docs/RESULTS.md): four 3x3 convs with BatchNorm, two
 * poolings, one hidden linear layer. */
#define PRESET_CNN_ARCH                                                                                         \
    "conv(32,3) batchnorm relu conv(32,3) batchnorm relu maxpool(2) conv(64,3) batchnorm relu conv(64,3) "        \
    "batchnorm relu maxpool(2) flatten linear(128) batchnorm relu dropout(0.3) linear(10)"

static int apply_preset(train_opts *o, const char *name) {
    if (strcmp(name, "basic") == 0) {
        o->cfg.opt = nn_optim_defaults(NN_OPT_SGD);
        o->cfg.sched.kind = NN_SCHED_CONST;
        o->lr = 0.1;
        o->cfg.batch_size = 256;
        o->cfg.epochs = 10;
    } else if (strcmp(name, "advanced") == 0) {
        o->mlp.layer_norm = true;
        o->mlp.act = NN_ACT_GELU;
        o->mlp.dropout = 0.2f;
        o->mlp.input_dropout = 0.2f;
        o->cfg.ema = 0.999f;
        o->cfg.label_smoothing = 0.1f;
        o->cfg.opt = nn_optim_defaults(NN_OPT_ADAMW);
        o->cfg.opt.weight_decay = 0.1f;
        o->lr = 1e-3;
        o->cfg.sched.kind = NN_SCHED_COSINE;
        o->cfg.sched.warmup = 500;
        o->cfg.batch_size = 128;
        o->cfg.epochs = 30;
    } else if (strcmp(name, "cnn") == 0) {
        o->arch = PRESET_CNN_ARCH;
        o->arch_from = "--preset cnn";
        o->augment = true;
        o->cfg.label_smoothing = 0.1f;
        o->cfg.opt = nn_optim_defaults(NN_OPT_ADAMW);
        o->cfg.opt.weight_decay = 0.05f;
        o->lr = 2e-3;
        o->cfg.sched.kind = NN_SCHED_COSINE;
        o->cfg.sched.warmup = 300;
        o->cfg.batch_size = 128;
        o->cfg.epochs = 10;
    } else {
        return usage_error("train", "--preset: unknown preset '%s' (basic, advanced or cnn)", name);
    }
    return 0;
}

static const char *preset_arg(int argc, char **argv) {
    const char *preset = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) preset = argv[i + 1];
        else if (strncmp(argv[i], "--preset=", 9) == 0) preset = argv[i] + 9;
    }
    return preset;
}

/* Returns -1 to go on, else the exit status to return now. */
static int parse_args(int argc, char **argv, train_opts *o) {
    const char *cmd = "train";
    const char *preset = preset_arg(argc, argv);
    if (preset && apply_preset(o, preset) != 0) return EXIT_USAGE;
    optind = 0;
    opterr = 0;
    int c;
    long iv;
    double fv;
    bool wd_set = false;
    double wd = 0.0;
    while ((c = getopt_long(argc, argv, "h", train_options, NULL)) != -1) {
        if (c == OPT_MODEL || c == OPT_HIDDEN || c == OPT_ACT || c == OPT_NORM || c == OPT_DROPOUT ||
            c == OPT_INPUT_DROPOUT)
            for (const struct option *opt = train_options; opt->name; opt++)
                if (opt->val == c) o->mlp_flag = opt->name;
        switch (c) {
        case 'h': fputs(train_help, stdout); return 0;
        case OPT_ARCH:
            if (nn_spec_parse(optarg, (nn_layer[NN_MODEL_MAX_LAYERS]){0}, NN_MODEL_MAX_LAYERS) < 0)
                return usage_error(cmd, "--arch: %s", nn_last_error());
            o->arch = optarg;
            o->arch_from = "--arch";
            break;
        case OPT_AUGMENT: o->augment = true; break;
        case OPT_NO_AUGMENT: o->augment = false; break;
        case OPT_AUG_SHIFT:
            if (parse_float_flag(cmd, "--aug-shift", optarg, 0.0, 14.0, &fv)) return EXIT_USAGE;
            o->aug.shift = (float)fv, o->augment = true;
            break;
        case OPT_AUG_ROTATE:
            if (parse_float_flag(cmd, "--aug-rotate", optarg, 0.0, 180.0, &fv)) return EXIT_USAGE;
            o->aug.rotate = (float)fv, o->augment = true;
            break;
        case OPT_AUG_SCALE:
            if (parse_float_flag(cmd, "--aug-scale", optarg, 0.0, 0.9, &fv)) return EXIT_USAGE;
            o->aug.scale = (float)fv, o->augment = true;
            break;
        case OPT_MODEL:
            if (strcmp(optarg, "linear") && strcmp(optarg, "mlp"))
                return usage_error(cmd, "--model: unknown model '%s' (linear or mlp)", optarg);
            o->linear = strcmp(optarg, "linear") == 0;
            break;
        case OPT_HIDDEN:
            if ((o->n_hidden = parse_widths(optarg, o->hidden, NN_MLP_MAX_HIDDEN)) < 0)
                return usage_error(cmd, "--hidden: '%s' is not a list of widths like 1024,1024 (at most %d)",
                                   optarg, NN_MLP_MAX_HIDDEN);
            break;
        case OPT_ACT:
            if (nn_act_parse(optarg, &o->mlp.act) != 0)
                return usage_error(cmd, "--act: unknown activation '%s' (relu, gelu, sigmoid, tanh)", optarg);
            break;
        case OPT_NORM:
            if (strcmp(optarg, "none") && strcmp(optarg, "layer"))
                return usage_error(cmd, "--norm: unknown normalisation '%s' (none or layer)", optarg);
            o->mlp.layer_norm = strcmp(optarg, "layer") == 0;
            break;
        case OPT_DROPOUT:
            if (parse_float_flag(cmd, "--dropout", optarg, 0.0, 0.95, &fv)) return EXIT_USAGE;
            o->mlp.dropout = (float)fv;
            break;
        case OPT_INPUT_DROPOUT:
            if (parse_float_flag(cmd, "--input-dropout", optarg, 0.0, 0.95, &fv)) return EXIT_USAGE;
            o->mlp.input_dropout = (float)fv;
            break;
        case OPT_EMA:
            if (parse_float_flag(cmd, "--ema", optarg, 0.0, 0.999999, &fv)) return EXIT_USAGE;
            o->cfg.ema = (float)fv;
            break;
        case OPT_LOSS:
            if (strcmp(optarg, "ce") && strcmp(optarg, "mse"))
                return usage_error(cmd, "--loss: unknown loss '%s' (ce or mse)", optarg);
            o->cfg.loss = strcmp(optarg, "ce") == 0 ? NN_LOSS_CE : NN_LOSS_MSE;
            break;
        case OPT_SMOOTH:
            if (parse_float_flag(cmd, "--label-smoothing", optarg, 0.0, 0.99, &fv)) return EXIT_USAGE;
            o->cfg.label_smoothing = (float)fv;
            break;
        case OPT_OPT: {
            nn_optim_kind kind;
            if (nn_optim_parse(optarg, &kind) != 0)
                return usage_error(cmd, "--opt: unknown optimiser '%s' (sgd, momentum, nesterov, adam, adamw)",
                                   optarg);
            o->cfg.opt = nn_optim_defaults(kind);
            if (!o->lr_set) o->lr = kind == NN_OPT_ADAM || kind == NN_OPT_ADAMW ? 1e-3 : 0.05;
            break;
        }
        case OPT_LR:
            if (parse_float_flag(cmd, "--lr", optarg, 0.0, 1e9, &o->lr)) return EXIT_USAGE;
            o->lr_set = true;
            break;
        case OPT_MOMENTUM:
            if (parse_float_flag(cmd, "--momentum", optarg, 0.0, 0.9999, &o->momentum)) return EXIT_USAGE;
            break;
        case OPT_WD:
            if (parse_float_flag(cmd, "--wd", optarg, 0.0, 10.0, &wd)) return EXIT_USAGE;
            wd_set = true;
            break;
        case OPT_SCHEDULE:
            if (nn_schedule_parse(optarg, &o->cfg.sched.kind) != 0)
                return usage_error(cmd, "--schedule: unknown schedule '%s' (const, step, cosine)", optarg);
            break;
        case OPT_WARMUP:
            if (parse_int_flag(cmd, "--warmup", optarg, 0, 100000000, &iv)) return EXIT_USAGE;
            o->cfg.sched.warmup = iv;
            break;
        case OPT_CLIP:
            if (parse_float_flag(cmd, "--clip", optarg, 0.0, 1e6, &fv)) return EXIT_USAGE;
            o->cfg.clip = (float)fv;
            break;
        case OPT_EPOCHS:
            if (parse_int_flag(cmd, "--epochs", optarg, 1, 100000, &iv)) return EXIT_USAGE;
            o->cfg.epochs = (int)iv;
            break;
        case OPT_BATCH:
            if (parse_int_flag(cmd, "--batch-size", optarg, 1, 65536, &iv)) return EXIT_USAGE;
            o->cfg.batch_size = (int)iv;
            break;
        case OPT_SEED:
            if (parse_int_flag(cmd, "--seed", optarg, 0, 0x7fffffffL, &iv)) return EXIT_USAGE;
            o->cfg.seed = (uint64_t)iv;
            break;
        case OPT_THREADS:
            if (parse_int_flag(cmd, "--threads", optarg, 1, 256, &iv)) return EXIT_USAGE;
            o->threads = (int)iv;
            break;
        case OPT_LIMIT:
            if (parse_int_flag(cmd, "--train-limit", optarg, 1, 100000000, &iv)) return EXIT_USAGE;
            o->train_limit = (int)iv;
            break;
        case OPT_VAL:
            if (parse_float_flag(cmd, "--val-split", optarg, 0.0, 0.9, &o->val_split)) return EXIT_USAGE;
            break;
        case OPT_EARLY:
            if (parse_int_flag(cmd, "--early-stop", optarg, 0, 100000, &iv)) return EXIT_USAGE;
            o->cfg.early_stop = (int)iv;
            break;
        case OPT_PRESET: break; /* applied before the other flags */
        case OPT_DATASET: o->dataset = optarg; break;
        case OPT_DATA: o->data_dir = optarg; break;
        case OPT_METRICS: o->cfg.metrics_path = optarg; break;
        case OPT_PLOT: o->plot_path = optarg; break;
        case OPT_SAVE: o->cfg.save_path = optarg; break;
        case OPT_RESUME: o->cfg.resume_path = optarg; break;
        case OPT_GRAPH: o->cfg.graph_path = optarg; break;
        case ':': return usage_error(cmd, "%s needs a value", argv[optind - 1]);
        default:
            return usage_error(cmd, "unknown option '%s'", optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        }
    }
    if (optind < argc) return usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (o->arch && o->mlp_flag)
        return usage_error(cmd, "%s gives the whole model; drop --%s (or write it into a spec with --arch)",
                           o->arch_from, o->mlp_flag);
    if (wd_set) o->cfg.opt.weight_decay = (float)wd;
    o->cfg.opt.momentum = (float)o->momentum;
    o->cfg.sched.base_lr = (float)o->lr;
    o->cfg.sched.step_size = 0;
    if (o->cfg.early_stop > 0 && o->val_split <= 0.0)
        return usage_error(cmd, "--early-stop needs a validation set: add --val-split F");
    if (o->plot_path && !nn_is_picture_path(o->plot_path))
        return usage_error(cmd, "--plot: '%s' must end in .png or .svg", o->plot_path);
    return -1;
}

/* The flags of a run joined by the unit separator (0x1f), for its
 * checkpoint; --resume itself is left out. */
static char *join_args(int argc, char **argv) {
    size_t len = 1;
    for (int i = 1; i < argc; i++) len += strlen(argv[i]) + 1;
    char *s = nn_xmalloc(len), *p = s;
    *p = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--resume=", 9) == 0) continue;
        p += sprintf(p, "%s%s", p == s ? "" : "\x1f", argv[i]);
    }
    return s;
}

/* Argument vector: the saved flags of the run being resumed, then this
 * command's own (later flags win). Returns the new argc; *buf owns the
 * memory. */
static int resume_argv(const char *path, int argc, char **argv, char ***out, char **buf) {
    nn_safetensors st;
    if (nn_st_load(path, &st) != 0) return -1;
    const char *saved = nn_st_meta(&st, "nn.train.args");
    if (!saved) {
        nn_st_free(&st);
        return nn_error("%s: not a resumable checkpoint: it holds a model but no training state (nn train --save "
                        "writes one while it runs; a finished --val-split run ends holding its best weights only)",
                        path);
    }
    *buf = nn_xmalloc(strlen(saved) + 1);
    strcpy(*buf, saved);
    nn_st_free(&st);
    int n = 1;
    for (char *p = *buf; *p; p++) n += *p == '\x1f';
    char **v = nn_xmalloc((size_t)(n + argc + 1) * sizeof *v);
    int k = 0;
    v[k++] = argv[0];
    if (**buf) {
        v[k++] = *buf;
        for (char *p = *buf; *p; p++)
            if (*p == '\x1f') {
                *p = 0;
                v[k++] = p + 1;
            }
    }
    for (int i = 1; i < argc; i++) v[k++] = argv[i];
    v[k] = NULL;
    *out = v;
    return k;
}


/* For the kill-and-resume tests: NN_TEST_RAISE=STEP:SIGNAL makes the run
 * send itself SIGNAL after optimiser step STEP, a point in the run that no
 * timer outside the process can hit reliably on a busy machine. */
static long raise_at_step;
static int raise_signal;

static void raise_on_step(void *user, long step) {
    (void)user;
    if (step == raise_at_step) raise(raise_signal);
}

static int plot_epoch(void *user, const nn_history *h) {
    const train_opts *o = user;
    return o->plot_path ? nn_plot_history(o->plot_path, h) : 0;
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
        snprintf(o->spec, sizeof o->spec, "%s", o->arch);
    } else {
        o->mlp.n_hidden = o->linear ? 0 : o->n_hidden;
        memcpy(o->mlp.hidden, o->hidden, sizeof o->hidden);
        o->mlp.classes = NN_DATA_CLASSES;
        nn_mlp_spec(&o->mlp, o->spec, sizeof o->spec);
    }
    o->cfg.spec = o->spec;
    if (o->augment) o->cfg.augment = o->aug;
    nn_model plan;
    if (nn_model_plan(&plan, o->spec, (int[]){1, data.train.rows, data.train.cols}, NN_DATA_CLASSES) != 0) {
        nn_train_data_free(&data);
        return usage_error("train", "%s: %s", o->arch ? o->arch_from : "model", nn_last_error());
    }
    /* A step schedule decays 10x after each third of the run. */
    if (o->cfg.sched.kind == NN_SCHED_STEP) {
        long steps = (long)o->cfg.epochs * ((data.train.n + o->cfg.batch_size - 1) / o->cfg.batch_size);
        o->cfg.sched.step_size = steps / 3 > 0 ? steps / 3 : 1;
    }
    o->cfg.log = stdout;
    o->cfg.label = "epoch";

    printf("training %s on %s: %d train", o->spec, dir, data.train.n);
    if (data.has_val) printf(", %d validation", data.val.n);
    printf(", %d test images; %s lr %g, %s schedule, batch %d, %d epochs, seed %llu%s", data.test.n,
           nn_optim_name(o->cfg.opt.kind), o->lr, nn_schedule_name(o->cfg.sched.kind), o->cfg.batch_size,
           o->cfg.epochs, (unsigned long long)o->cfg.seed, o->cfg.ema > 0 ? ", weight average" : "");
    if (!nn_augment_is_identity(&o->cfg.augment))
        printf(", augmentation (shift %g px, rotation %g deg, zoom %g%%)", o->cfg.augment.shift, o->cfg.augment.rotate,
               100.0 * o->cfg.augment.scale);
    printf("\n");
    nn_model_summary(&plan, stdout);
    if (o->cfg.resume_path) printf("resuming from %s\n", o->cfg.resume_path);
    fflush(stdout);

    /* Ctrl-C: finish the step, write a checkpoint, stop. */
    struct sigaction old_sa;
    catch_sigint(&old_sa);
    o->cfg.stop = &stop_requested;
    const char *test_raise = getenv("NN_TEST_RAISE");
    if (test_raise && sscanf(test_raise, "%ld:%d", &raise_at_step, &raise_signal) == 2) {
        o->cfg.on_step = raise_on_step;
    }
    o->cfg.on_epoch = plot_epoch;
    o->cfg.user = o;
    nn_model model = {0};
    nn_history hist;
    nn_train_status rc = nn_train(&o->cfg, &data, &model, &hist);
    release_sigint(&old_sa);
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
    if (rc >= 0) return 0;
    runtime_error();
    return rc == NN_TRAIN_INTERRUPTED ? 130 : 1;
}

int cmd_train(int argc, char **argv) {
    train_opts o;
    defaults(&o);
    int status = parse_args(argc, argv, &o);
    if (status >= 0) return status;
    if (!o.cfg.resume_path) {
        char *args = join_args(argc, argv);
        o.cfg.args = args;
        status = train_with(&o);
        free(args);
        return status;
    }
    /* Resuming: the saved run's flags, then this command's on top. */
    const char *resume = o.cfg.resume_path;
    char *resume_buf = NULL, **resume_args = NULL;
    int n = resume_argv(resume, argc, argv, &resume_args, &resume_buf);
    if (n < 0) return runtime_error();
    defaults(&o);
    status = parse_args(n, resume_args, &o);
    if (status < 0) {
        char *args = join_args(n, resume_args);
        o.cfg.args = args;
        if (!o.cfg.save_path) o.cfg.save_path = resume;
        status = train_with(&o);
        free(args);
    }
    free(resume_args);
    free(resume_buf);
    return status;
}
