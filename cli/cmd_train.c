/* nn train: flags -> nn_train_config, then the shared training loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "nn/model.h"
#include "nn/train.h"
#include "plot/plot.h"
#include "progress.h"
#include "core/util.h"

static const char *const usage_text =
    "usage: nn train [OPTIONS]\n"
    "\n"
    "Trains a digit classifier and reports train/test loss and accuracy per epoch.\n"
    "With no options: an MLP 784-1024-1024-10 with ReLU, cross-entropy, SGD with\n"
    "Nesterov momentum 0.9, lr 0.05 with a cosine schedule, batch 128, 6 epochs on\n"
    "MNIST (98.5% test accuracy in about 30 seconds on two cores).\n"
    "\n"
    "On text (--dataset tinyshakespeare or names, or --data FILE.txt): a character\n"
    "language model trained by steps on random windows, with the validation loss\n"
    "and a sample of its writing every --eval-every steps. With no options:\n"
    "embed(64) lstm(256) linear(V), Adam lr 0.002, clip 1, batch 32, context 64,\n"
    "2000 steps; nn generate --model FILE writes with the checkpoint.\n"
    "On a folder of one .txt file per class (--dataset names-by-language): a\n"
    "classifier trained by epochs, with the validation accuracy after each. With\n"
    "no options: embed(32) gru(128) last linear(C), Adam lr 0.003, clip 1, batch\n"
    "64, 10 epochs; nn predict --model FILE TEXT... and nn eval use the checkpoint,\n"
    "which ends holding the best epoch's weights by validation accuracy.\n"
    "Text runs resume (--resume), plot (--plot), draw their graph (--graph) and\n"
    "average their weights (--ema) as image runs do.\n"
    "\n";

static const char *const epilogue =
    "\n"
    "Ctrl-C stops after the current step and writes a resumable checkpoint (exit 130).\n"
    "\n"
    "SPEC: layers separated by spaces, each NAME or NAME(ARGS), positional numbers\n"
    "first, then key=value; input sizes are inferred from the data. Layers:\n"
    "  linear(OUT[,bias=0])  conv(OUT,K[,stride=S][,padding=P])  maxpool(K[,stride=S])\n"
    "  avgpool(K[,stride=S])  batchnorm  layernorm  relu  leakyrelu[(SLOPE)]  gelu\n"
    "  sigmoid  tanh  dropout(P)  flatten\n"
    "  text: embed(D)  rnn(H)  lstm(H)  gru(H)  last (a sequence's last step)\n"
    "        mean (the average of a sequence's steps)  posembed (learned positions,\n"
    "        up to --context)  attention(HEADS[,causal=0][,bias=0]) (multi-head\n"
    "        self-attention; causal unless causal=0)  unembed (scores from the\n"
    "        embed layer's own matrix: a tied output layer)\n"
    "  blocks: residual(LAYERS) (x + f(x); LAYERS keep the shape)\n"
    "          repeat(N, LAYERS) (N copies in a row, each its own weights)\n"
    "The last layer must give one score per class. Examples:\n"
    "  --arch 'conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten dropout(0.5) linear(10)'\n"
    "  --arch 'flatten linear(1024) relu linear(1024) relu linear(10)'   (the default MLP)\n"
    "  --arch 'embed(128) posembed repeat(4, residual(layernorm attention(4))\n"
    "          residual(layernorm linear(512) gelu linear(128))) layernorm unembed'   (a GPT)\n";

enum { MODEL_LINEAR, MODEL_MLP };
enum { NORM_NONE, NORM_LAYER };
enum { PRESET_NONE = -1, PRESET_BASIC, PRESET_ADVANCED, PRESET_CNN, PRESET_CHARLSTM, PRESET_NAMEGRU, PRESET_GPT };
#define PRESET_IS_TEXT(p) ((p) == PRESET_CHARLSTM || (p) == PRESET_NAMEGRU || (p) == PRESET_GPT)
static const char *const preset_names[] = {"basic", "advanced", "cnn", "charlstm", "namegru", "gpt"};

/* What a user can set. Every setting of the run is a field of cfg, which the
 * flags write into directly; the rest is the program's: the MLP the model
 * flags describe, the augmentation switches, where the data comes from. */
typedef struct train_opts {
    nn_train_config cfg;
    nn_mlp_config mlp;     /* the MLP flags (mlp.hidden points into hidden) */
    int *hidden;           /* --hidden's widths (owned) */
    int model, norm, preset;
    const char *arch;      /* --arch, a CNN preset's or a resumed file's spec; NULL = the MLP flags */
    const char *arch_from; /* which: "--arch", "--preset cnn" or "the checkpoint" */
    const char *text_body; /* a text preset's layers before the output layer (sized by the data) */
    bool augment, no_augment;
    nn_augment aug;        /* --aug-*: the distortions --augment turns on */
    int threads, train_limit;
    float val_split;
    const char *dataset, *data_dir, *plot_path, *resume;
    nn_train_settings resumed; /* the checkpoint's, when resuming */
    progress_bar bar;
    bool text; /* the data is text: a language model's run */
} train_opts;

FLAG_ENUM_FUNCS(act, nn_act, nn_act_parse, nn_act_name)
FLAG_ENUM_FUNCS(loss, nn_loss_kind, nn_loss_parse, nn_loss_name)
FLAG_ENUM_FUNCS(optim, nn_optim_kind, nn_optim_parse, nn_optim_name)
FLAG_ENUM_FUNCS(schedule, nn_schedule_kind, nn_schedule_parse, nn_schedule_name)
FLAG_ENUM_FUNCS(precision, nn_precision, nn_precision_parse, nn_precision_name)
FLAG_ENUM_FUNCS(targets, nn_lm_targets, nn_lm_targets_parse, nn_lm_targets_name)

/* --arch's syntax and arguments, checked as the flag is read (no data needed
 * for a usage error); its shapes when it is planned for the data. */
static int parse_spec(const char *value, void *target) {
    if (nn_spec_check(value) != 0) return -1;
    *(const char **)target = value;
    return 0;
}

static int parse_hidden(const char *value, void *target) {
    train_opts *o = target;
    int *w, n = parse_widths(value, &w);
    if (n < 0) return nn_error("'%s' is not a list of widths like 1024,1024 (each 1 to 65536)", value);
    free(o->hidden);
    o->hidden = w;
    o->mlp.hidden = w;
    o->mlp.n_hidden = n;
    return 0;
}

static const char *show_hidden(const void *target) {
    static char buf[64];
    const train_opts *o = target;
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < o->mlp.n_hidden && n < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%d", i ? "," : "", o->mlp.hidden[i]);
    return buf;
}

/* --help's defaults that depend on the optimiser, from the library's. */
static char lr_default[64], wd_default[64];

static flag *model_flags(train_opts *o, flag *t) {
    const flag table[] = {
        FLAG_SECTION("model:"),
        {"arch", FLAG_CUSTOM, &o->arch, .parse = parse_spec, .metavar = "SPEC", .def = "",
         .help = "any layer stack, e.g. a CNN (see below); replaces the\n"
                 "MLP flags --model, --hidden, --act, --norm, --dropout,\n--input-dropout"},
        {"model", FLAG_CHOICE, &o->model, .choices = "linear|mlp", .help = "softmax regression or multi-layer perceptron"},
        {"hidden", FLAG_CUSTOM, o, .parse = parse_hidden, .show = show_hidden, .metavar = "LIST",
         .help = "hidden widths, e.g. 1024,1024"},
        {"act", FLAG_CUSTOM, &o->mlp.act, .parse = parse_act, .show = show_act, .metavar = "relu|gelu|sigmoid|tanh",
         .help = "hidden activation"},
        {"norm", FLAG_CHOICE, &o->norm, .choices = "none|layer",
         .help = "LayerNorm after each hidden linear, before the activation"},
        {"dropout", FLAG_FLOAT, &o->mlp.dropout, 0, 0.95, .metavar = "P",
         .help = "dropout after each hidden activation, 0 = off"},
        {"input-dropout", FLAG_FLOAT, &o->mlp.input_dropout, 0, 0.95, .metavar = "P",
         .help = "dropout on the input pixels, 0 = off"},
    };
    return flags_append(t, table, sizeof table / sizeof *table);
}

static flag *optimiser_flags(train_opts *o, flag *t) {
    nn_train_config *c = &o->cfg;
    snprintf(lr_default, sizeof lr_default, "%g; %g for adam/adamw", (double)nn_optim_default_lr(NN_OPT_SGD),
             (double)nn_optim_default_lr(NN_OPT_ADAM));
    snprintf(wd_default, sizeof wd_default, "%g; %g for adamw", (double)nn_optim_defaults(NN_OPT_SGD).weight_decay,
             (double)nn_optim_defaults(NN_OPT_ADAMW).weight_decay);
    const flag table[] = {
        FLAG_SECTION("loss and optimiser:"),
        {"loss", FLAG_CUSTOM, &c->loss, .parse = parse_loss, .show = show_loss, .metavar = "ce|mse",
         .help = "cross-entropy, or MSE of softmax against one-hot"},
        {"label-smoothing", FLAG_FLOAT, &c->label_smoothing, 0, 0.99, .metavar = "S",
         .help = "cross-entropy label smoothing"},
        {"opt", FLAG_CUSTOM, &c->opt.kind, .parse = parse_optim, .show = show_optim,
         .metavar = "sgd|momentum|nesterov|adam|adamw", .help = "optimiser"},
        {"lr", FLAG_FLOAT, &c->sched.base_lr, 0, 1e9, .metavar = "X", .def = lr_default, .help = "learning rate"},
        {"momentum", FLAG_FLOAT, &c->opt.momentum, 0, 0.9999, .metavar = "X", .help = "momentum of momentum/nesterov"},
        {"wd", FLAG_FLOAT, &c->opt.weight_decay, 0, 10, .metavar = "X", .def = wd_default,
         .help = "weight decay: L2 added to the gradient for sgd-family and\n"
                 "adam, decoupled for adamw; never on biases or LayerNorm"},
        {"schedule", FLAG_CUSTOM, &c->sched.kind, .parse = parse_schedule, .show = show_schedule,
         .metavar = "const|step|cosine",
         .help = "learning-rate schedule over all steps (step: 10x down\nafter each third)"},
        {"warmup", FLAG_LONG, &c->sched.warmup, 0, 100000000, .metavar = "N", .help = "linear warm-up steps"},
        {"min-lr", FLAG_FLOAT, &c->sched.min_lr, 0, 1e9, .metavar = "X",
         .help = "the learning rate the cosine schedule ends at"},
        {"beta1", FLAG_FLOAT, &c->opt.beta1, 0, 0.999999, .metavar = "B", .help = "adam/adamw's first-moment decay"},
        {"beta2", FLAG_FLOAT, &c->opt.beta2, 0, 0.999999, .metavar = "B", .help = "adam/adamw's second-moment decay"},
        {"clip", FLAG_FLOAT, &c->clip, 0, 1e6, .metavar = "X", .help = "clip the gradients' global L2 norm to X, 0 = off"},
        {"ema", FLAG_FLOAT, &c->ema, 0, 0.999999, .metavar = "D",
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
    };
    return flags_append(t, table, sizeof table / sizeof *table);
}

static flag *training_flags(train_opts *o, flag *t) {
    nn_train_config *c = &o->cfg;
    const flag table[] = {
        FLAG_SECTION("training:"),
        {"epochs", FLAG_INT, &c->epochs, 1, 100000, .metavar = "N", .help = "passes over the training set"},
        {"batch-size", FLAG_INT, &c->batch_size, 1, 65536, .metavar = "N", .help = "mini-batch size"},
        {"seed", FLAG_U64, &c->seed, 0, 2147483647, .metavar = "N",
         .help = "seeds initialisation, shuffling, augmentation and dropout"},
        {"threads", FLAG_INT, &o->threads, 1, 256, .metavar = "N", .def = "all cores",
         .help = "OpenMP and OpenBLAS threads"},
        {"precision", FLAG_CUSTOM, &c->precision, .parse = parse_precision, .show = show_precision,
         .metavar = "fp32|bf16",
         .help = "the linear layers' products: bf16 rounds both operands to\n"
                 "bfloat16 and sums in fp32 (needs AVX512_BF16; without it,\n"
                 "fp32 with a note); weights and optimiser stay fp32"},
        {"train-limit", FLAG_INT, &o->train_limit, 1, 100000000, .metavar = "N", .def = "",
         .help = "train on the first N training images only"},
        {"val-split", FLAG_FLOAT, &o->val_split, 0, 0.9, .metavar = "F", .def = "",
         .help = "hold out the last fraction F of the training set for validation"},
        {"early-stop", FLAG_INT, &c->early_stop, 0, 100000, .metavar = "N", .def = "",
         .help = "stop after N epochs without validation improvement\n"
                 "(needs --val-split; the checkpoint keeps the best epoch)"},
        {"preset", FLAG_CHOICE, &o->preset, .choices = "basic|advanced|cnn|charlstm|namegru|gpt", .def = "",
         .help = "\nbasic: the course's assignment, 784-1024-1024-10 ReLU,\n"
                 "cross-entropy, plain SGD lr 0.1, batch 256, 10 epochs;\n"
                 "advanced: LayerNorm + GELU + dropout 0.2 (input 0.2) +\n"
                 "AdamW wd 0.1, label smoothing 0.1, weight average 0.999,\n"
                 "30 epochs: 98.9% (docs/RESULTS.md);\n"
                 "cnn: four 3x3 convs with BatchNorm, max pooling, linear(128),\n"
                 "dropout 0.3; --augment, AdamW lr 0.002 wd 0.05, warm-up 300\n"
                 "+ cosine, label smoothing 0.1, 10 epochs (docs/RESULTS.md);\n"
                 "charlstm (a language model, e.g. Tiny Shakespeare):\n"
                 "embed(64) lstm(512) dropout(0.2) linear(V), context 128,\n"
                 "Adam lr 0.002, warm-up 100 + cosine, clip 1, batch 32,\n"
                 "3000 steps: validation loss ~1.48 (docs/RESULTS.md);\n"
                 "namegru (one file per class, e.g. names-by-language):\n"
                 "embed(64) gru(256) last dropout(0.5) linear(C), AdamW lr\n"
                 "0.003 wd 0.1, cosine, clip 1, label smoothing 0.1, batch 64,\n"
                 "12 epochs: 85.6% (mean of 3 seeds, docs/RESULTS.md);\n"
                 "gpt (a language model, e.g. Tiny Shakespeare): embed(128)\n"
                 "posembed, 4 pre-LayerNorm blocks of attention(4) and an\n"
                 "MLP 512 wide, dropout 0.1, output tied to the embedding;\n"
                 "context 128, batch 16, AdamW lr 0.002 betas (0.9, 0.99)\n"
                 "wd 0.1, warm-up 200 + cosine to 1e-4, clip 1, 9000 steps:\n"
                 "validation loss ~1.50 (docs/RESULTS.md).\n"
                 "Other flags override a preset's values."},
    };
    return flags_append(t, table, sizeof table / sizeof *table);
}

static flag *text_flags(train_opts *o, flag *t) {
    nn_train_config *c = &o->cfg;
    const flag table[] = {
        FLAG_SECTION("text (a language model, by steps):"),
        {"steps", FLAG_LONG, &c->steps, 1, 100000000, .metavar = "N", .def = "2000", .help = "optimiser steps"},
        {"context", FLAG_INT, &c->context, 1, 100000, .metavar = "T", .def = "64",
         .help = "characters per training window (a classifier with posembed: the longest\n"
                 "sequence it takes; the data's longest by default)"},
        {"eval-every", FLAG_INT, &c->eval_every, 1, 100000000, .metavar = "K", .def = "250",
         .help = "validation loss, checkpoint and a sample every K steps"},
        {"eval-windows", FLAG_INT, &c->eval_windows, 0, 100000000, .metavar = "N", .def = "all",
         .help = "validation windows, the same for every run (0 = all that fit)"},
        {"targets", FLAG_CUSTOM, &c->targets, .parse = parse_targets, .show = show_targets, .metavar = "all|answer",
         .help = "which next tokens the loss counts: all, or on lines\n"
                 "'PROMPT=ANSWER' (addition) only each line's answer after\n"
                 "its first '=' and its end, as nn eval scores it, where\n"
                 "the window holds the whole prompt (the validation loss\n"
                 "and accuracy too)"},
    };
    return flags_append(t, table, sizeof table / sizeof *table);
}

static flag *output_flags(train_opts *o, flag *t) {
    nn_train_config *c = &o->cfg;
    const flag table[] = {
        FLAG_SECTION("data and output:"),
        {"dataset", FLAG_STRING, &o->dataset, .metavar = "NAME",
         .help = "which data, from data/<dataset>: mnist, fashion-mnist,\ntinyshakespeare, names, names-by-language, addition,\naddition3 (make data DATASET=NAME)"},
        {"data", FLAG_STRING, &o->data_dir, .metavar = "DIR|FILE",
         .help = "folder with the four IDX files instead, or text: a file\nor a folder (nn/text.h says how its layout is read)"},
        {"metrics", FLAG_STRING, &c->metrics_path, .metavar = "FILE.csv", .help = "per-epoch metrics"},
        {"plot", FLAG_CUSTOM, &o->plot_path, .parse = flag_picture, .metavar = "FILE.png|.svg", .def = "",
         .help = "train vs test accuracy and loss per epoch (a text\n"
                 "classifier: vs validation; a language model: train and\n"
                 "validation loss per step)"},
        {"graph", FLAG_STRING, &c->graph_path, .metavar = "FILE.dot",
         .help = "the computation graph of one training step (Graphviz; render\n"
                 "with: dot -Tpng FILE.dot -o graph.png)"},
        {"save", FLAG_STRING, &c->save_path, .metavar = "FILE.safetensors",
         .help = "checkpoint, rewritten atomically after every epoch\n"
                 "(a language model: every --eval-every steps); it also\n"
                 "holds the optimiser state, the position and every\n"
                 "setting, so the run can resume. With --val-split (a text\n"
                 "classifier: always) it ends holding the best epoch's\n"
                 "weights by validation accuracy"},
        {"resume", FLAG_STRING, &o->resume, .metavar = "FILE",
         .help = "continue an interrupted run from its checkpoint, with the\n"
                 "settings stored in it (a flag here that contradicts one is\n"
                 "an error); the result is bit-identical to an uninterrupted\n"
                 "run. Keeps saving to FILE unless --save says otherwise"},
    };
    return flags_append(t, table, sizeof table / sizeof *table);
}

/* The one declaration of nn train's flags, each writing into o (the caller
 * frees the table). */
static flag *make_table(train_opts *o) {
    return output_flags(o, text_flags(o, training_flags(o, optimiser_flags(o, model_flags(o, NULL)))));
}

/* Before any flag: the library's defaults and the program's. */
static void defaults(train_opts *o) {
    free(o->hidden);
    nn_train_settings_free(&o->resumed);
    memset(o, 0, sizeof *o);
    o->cfg = nn_train_config_defaults();
    o->hidden = nn_xmalloc(2 * sizeof *o->hidden);
    o->hidden[0] = o->hidden[1] = 1024;
    o->mlp = (nn_mlp_config){.n_hidden = 2, .hidden = o->hidden, .act = NN_ACT_RELU};
    o->model = MODEL_MLP;
    o->aug = NN_AUGMENT_DEFAULT;
    o->dataset = "mnist";
    o->preset = PRESET_NONE;
}

/* An optimiser brings its own defaults (learning rate and weight decay included). */
static void set_optimiser(nn_train_config *c, nn_optim_kind kind) {
    c->opt = nn_optim_defaults(kind);
    c->sched.base_lr = nn_optim_default_lr(kind);
}

/* The best CNN found (docs/RESULTS.md): four 3x3 convs with BatchNorm, two
 * poolings, one hidden linear layer. */
#define PRESET_CNN_ARCH                                                                                         \
    "conv(32,3) batchnorm relu conv(32,3) batchnorm relu maxpool(2) conv(64,3) batchnorm relu conv(64,3) "        \
    "batchnorm relu maxpool(2) flatten linear(128) batchnorm relu dropout(0.3) linear(10)"

/* The best GPT found for Tiny Shakespeare in 15 minutes of two cores
 * (docs/RESULTS.md, "Transformer"): pre-LayerNorm blocks, dropout on each
 * block's output, the output tied to the token embedding. */
#define PRESET_GPT_ARCH                                                                                          \
    "embed(128) posembed repeat(4, residual(layernorm attention(4,bias=0) dropout(0.1)) residual(layernorm "      \
    "linear(512,bias=0) gelu linear(128,bias=0) dropout(0.1))) layernorm unembed"

static void apply_preset(train_opts *o, int preset) {
    nn_train_config *c = &o->cfg;
    switch (preset) {
    case PRESET_BASIC:
        set_optimiser(c, NN_OPT_SGD);
        c->sched.kind = NN_SCHED_CONST;
        c->sched.base_lr = 0.1f;
        c->batch_size = 256;
        c->epochs = 10;
        break;
    case PRESET_ADVANCED:
        o->norm = NORM_LAYER;
        o->mlp.act = NN_ACT_GELU;
        o->mlp.dropout = o->mlp.input_dropout = 0.2f;
        c->ema = 0.999f;
        c->label_smoothing = 0.1f;
        set_optimiser(c, NN_OPT_ADAMW);
        c->opt.weight_decay = 0.1f;
        c->sched.kind = NN_SCHED_COSINE;
        c->sched.base_lr = 1e-3f;
        c->sched.warmup = 500;
        c->batch_size = 128;
        c->epochs = 30;
        break;
    case PRESET_CNN:
        o->arch = PRESET_CNN_ARCH;
        o->arch_from = "--preset cnn";
        o->augment = true;
        c->label_smoothing = 0.1f;
        set_optimiser(c, NN_OPT_ADAMW);
        c->opt.weight_decay = 0.05f;
        c->sched.kind = NN_SCHED_COSINE;
        c->sched.base_lr = 2e-3f;
        c->sched.warmup = 300;
        c->batch_size = 128;
        c->epochs = 10;
        break;
    case PRESET_CHARLSTM: /* docs/RESULTS.md, "Text" */
        o->text_body = "embed(64) lstm(512) dropout(0.2)";
        set_optimiser(c, NN_OPT_ADAM);
        c->sched.kind = NN_SCHED_COSINE;
        c->sched.base_lr = 2e-3f;
        c->sched.warmup = 100;
        c->clip = 1.0f;
        c->batch_size = 32;
        c->context = 128;
        c->steps = 3000;
        c->eval_every = 500;
        break;
    case PRESET_NAMEGRU: /* docs/RESULTS.md, "Text" */
        o->text_body = "embed(64) gru(256) last dropout(0.5)";
        set_optimiser(c, NN_OPT_ADAMW);
        c->opt.weight_decay = 0.1f;
        c->sched.kind = NN_SCHED_COSINE;
        c->sched.base_lr = 3e-3f;
        c->clip = 1.0f;
        c->label_smoothing = 0.1f;
        c->batch_size = 64;
        c->epochs = 12;
        break;
    case PRESET_GPT: /* docs/RESULTS.md, "Transformer" */
        o->arch = PRESET_GPT_ARCH;
        o->arch_from = "--preset gpt";
        set_optimiser(c, NN_OPT_ADAMW);
        c->opt.beta2 = 0.99f;
        c->opt.weight_decay = 0.1f;
        c->sched.kind = NN_SCHED_COSINE;
        c->sched.base_lr = 2e-3f;
        c->sched.min_lr = 1e-4f;
        c->sched.warmup = 200;
        c->clip = 1.0f;
        c->batch_size = 16;
        c->context = 128;
        c->steps = 9000;
        c->eval_every = 1000;
        break;
    }
}

/* A resumed run starts from the settings its checkpoint holds. */
static int from_checkpoint(train_opts *o, const char *path) {
    if (nn_train_settings_read(&o->resumed, path) != 0 || nn_train_settings_read_text(&o->resumed, path) != 0)
        return -1;
    const nn_train_settings *s = &o->resumed;
    o->cfg = s->cfg;
    o->arch = s->spec;
    o->arch_from = "the checkpoint";
    o->augment = !nn_augment_is_identity(&s->cfg.augment);
    if (o->augment) o->aug = s->cfg.augment;
    o->train_limit = s->train_limit;
    o->val_split = s->val_split;
    o->data_dir = s->data_dir;
    return 0;
}

static const char *const mlp_flags[] = {"model", "hidden", "act", "norm", "dropout", "input-dropout"};

/* Adam for a text run whose flags name no optimiser, keeping what the flags
 * do say about it (--wd, --beta1, --beta2). */
static void text_optimiser(nn_train_config *c, const flag *table) {
    nn_optim_config given = c->opt;
    c->opt = nn_optim_defaults(NN_OPT_ADAM);
    if (flag_given(table, "wd")) c->opt.weight_decay = given.weight_decay;
    if (flag_given(table, "beta1")) c->opt.beta1 = given.beta1;
    if (flag_given(table, "beta2")) c->opt.beta2 = given.beta2;
}

/* A language model's defaults for what the flags leave unsaid: the char-LSTM
 * recipe (Adam lr 0.002, constant, clip 1, batch 32, context 64, 2000 steps). */
static void text_defaults(train_opts *o, const flag *table) {
    nn_train_config *c = &o->cfg;
    if (!flag_given(table, "opt")) text_optimiser(c, table);
    if (!flag_given(table, "lr")) c->sched.base_lr = flag_given(table, "opt") ? nn_optim_default_lr(c->opt.kind) : 2e-3f;
    if (!flag_given(table, "schedule")) c->sched.kind = NN_SCHED_CONST;
    if (!flag_given(table, "clip")) c->clip = 1.0f;
    if (!flag_given(table, "batch-size")) c->batch_size = 32;
    if (!c->steps) c->steps = 2000;
    if (!c->context) c->context = 64;
    if (!c->eval_every) c->eval_every = 250;
}

/* A text classifier's defaults (the recipe): Adam lr 0.003,
 * constant, clip 1, batch 64, 10 epochs. */
static void classifier_defaults(train_opts *o, const flag *table) {
    nn_train_config *c = &o->cfg;
    if (!flag_given(table, "opt")) text_optimiser(c, table);
    if (!flag_given(table, "lr")) c->sched.base_lr = flag_given(table, "opt") ? nn_optim_default_lr(c->opt.kind) : 3e-3f;
    if (!flag_given(table, "schedule")) c->sched.kind = NN_SCHED_CONST;
    if (!flag_given(table, "clip")) c->clip = 1.0f;
    if (!flag_given(table, "batch-size")) c->batch_size = 64;
    if (!flag_given(table, "epochs")) c->epochs = 10;
}

/* The folder --dataset NAME reads. */
static const char *dataset_path(const char *dataset) {
    static char buf[512];
    snprintf(buf, sizeof buf, "data/%s", dataset);
    return buf;
}

/* A folder of one .txt file per class (nn/text.h's rule, nn_text_layout_kind). */
static bool is_classes_folder(const char *path) {
    nn_text_kind kind;
    return nn_text_layout_kind(path, &kind) == 0 && kind == NN_TEXT_CLASSES;
}

/* What the flags mean together; returns -1 to go on, else the exit status
 * of a usage error. */
static int finish(train_opts *o, const flag *table) {
    const char *mlp_flag = NULL;
    for (size_t i = 0; i < sizeof mlp_flags / sizeof *mlp_flags; i++)
        if (flag_given(table, mlp_flags[i])) mlp_flag = mlp_flags[i];
    if (flag_given(table, "arch")) o->arch_from = "--arch";
    /* Resuming with MLP flags: the model they describe is compared with the file's. */
    else if (o->resume && mlp_flag) o->arch = NULL;
    if (o->arch && mlp_flag)
        return usage_error("train", "%s gives the whole model; drop --%s (or write it into a spec with --arch)",
                           o->arch_from, mlp_flag);
    if (o->model == MODEL_LINEAR) o->mlp.n_hidden = 0;
    o->mlp.layer_norm = o->norm == NORM_LAYER;
    if (o->cfg.precision != NN_PRECISION_FP32 && !nn_precision_supported(o->cfg.precision)) {
        fprintf(stderr, "nn train: this CPU has no AVX512_BF16 instructions: training in fp32\n");
        o->cfg.precision = NN_PRECISION_FP32;
    }
    if (flag_given(table, "aug-shift") || flag_given(table, "aug-rotate") || flag_given(table, "aug-scale"))
        o->augment = true;
    o->cfg.augment = o->augment && !o->no_augment ? o->aug : (nn_augment){0};
    if (o->resume && flag_given(table, "dataset") && !flag_given(table, "data")) o->data_dir = NULL;
    if (o->cfg.early_stop > 0 && o->val_split <= 0.0f)
        return usage_error("train", "--early-stop needs a validation set: add --val-split F");
    if (is_text_dataset(o->dataset) && !o->data_dir && access(dataset_path(o->dataset), F_OK) != 0) {
        /* Said first: what the folder holds decides which flags apply. */
        fprintf(stderr, "nn train: %s not found: fetch it with: make data DATASET=%s\n", dataset_path(o->dataset),
                o->dataset);
        return 1;
    }
    if (is_text_dataset(o->dataset) || (o->data_dir && is_text_path(o->data_dir))) {
        static const char *const image_only[] = {"model", "hidden", "act", "norm", "dropout", "input-dropout",
                                                 "epochs", "augment", "val-split", "train-limit", "early-stop",
                                                 "loss", "label-smoothing"};
        bool classifier = is_classes_folder(o->data_dir ? o->data_dir : dataset_path(o->dataset));
        for (size_t i = 0; i < sizeof image_only / sizeof *image_only; i++)
            if (flag_given(table, image_only[i]) &&
                !(classifier && (strcmp(image_only[i], "epochs") == 0 || strcmp(image_only[i], "label-smoothing") == 0)))
                return usage_error("train", "--%s is for images; a %s on text does not take it yet", image_only[i],
                                   classifier ? "classifier" : "language model");
        if (o->preset != PRESET_NONE && !PRESET_IS_TEXT(o->preset))
            return usage_error("train", "--preset %s is for images; on text: charlstm or gpt (a language model) or "
                                        "namegru (a classifier)", preset_names[o->preset]);
        if (o->preset != PRESET_NONE && (o->preset == PRESET_NAMEGRU) != classifier)
            return usage_error("train", "--preset %s is for %s; this data is %s", preset_names[o->preset],
                               classifier ? "a language model's text" : "a folder of one .txt file per class",
                               classifier ? "one file per class (try --preset namegru)"
                                          : "a language model's (try --preset charlstm or gpt)");
        if (o->text_body && flag_given(table, "arch")) o->text_body = NULL; /* --arch gives the whole model */
        bool preset_set = o->preset != PRESET_NONE || o->resumed.text; /* the rest is the preset's or the file's */
        if (classifier) {
            static const char *const lm_only[] = {"steps", "eval-every", "eval-windows", "targets"};
            for (size_t i = 0; i < sizeof lm_only / sizeof *lm_only; i++)
                if (flag_given(table, lm_only[i]))
                    return usage_error("train", "--%s is for a language model; a classifier of one file per class "
                                                "trains by --epochs", lm_only[i]);
            if (!preset_set) classifier_defaults(o, table);
        } else if (!preset_set) {
            text_defaults(o, table);
        }
        o->text = true;
    } else {
        if (PRESET_IS_TEXT(o->preset))
            return usage_error("train", "--preset %s is for text (--dataset tinyshakespeare, names-by-language, or "
                                        "--data FILE.txt)", preset_names[o->preset]);
        static const char *const text_only[] = {"steps", "context", "eval-every", "eval-windows", "targets"};
        for (size_t i = 0; i < sizeof text_only / sizeof *text_only; i++)
            if (flag_given(table, text_only[i]))
                return usage_error("train", "--%s is for text data (--dataset tinyshakespeare, --data FILE.txt)",
                                   text_only[i]);
    }
    if (o->resume) {
        o->cfg.resume_path = o->resume;
        if (!o->cfg.save_path) o->cfg.save_path = o->resume;
    }
    return -1;
}

/* The settings of the run, in one place: the defaults, then a resumed
 * checkpoint's settings, then a preset's, then a chosen optimiser's
 * defaults, then every flag on top. The first pass over the flags finds
 * --resume, --preset and --opt (and checks every flag); the second applies
 * them all to that base. Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, train_opts *o, flag *table) {
    defaults(o);
    int rc = flags_parse("train", table, argc, argv, usage_text, epilogue, NULL);
    if (rc >= 0) return rc;
    int preset = o->preset;
    const char *resume = o->resume;
    bool new_optimiser = flag_given(table, "opt");
    nn_optim_kind opt = o->cfg.opt.kind;
    defaults(o);
    if (resume && from_checkpoint(o, resume) != 0) return runtime_error();
    apply_preset(o, preset);
    if (new_optimiser) set_optimiser(&o->cfg, opt);
    if ((rc = flags_parse("train", table, argc, argv, usage_text, epilogue, NULL)) >= 0) return rc;
    return finish(o, table);
}

void raise_for_tests(long step) {
    /* A point in the run that no timer outside the process can hit reliably on a busy machine. */
    static long at = -1;
    static int sig;
    if (at < 0) {
        const char *s = getenv("NN_TEST_RAISE");
        if (!s || sscanf(s, "%ld:%d", &at, &sig) != 2 || at < 0) at = 0;
    }
    if (at && step == at) raise(sig);
}

static void show_progress(void *user, const nn_train_progress *p) {
    train_opts *o = user;
    progress_train(&o->bar, p);
    raise_for_tests(p->step);
}

static int show_epoch(void *user, const nn_history *h) {
    train_opts *o = user;
    progress_end(&o->bar);
    print_epoch_line(stdout, "epoch", o->cfg.epochs, h, NULL);
    return o->plot_path ? nn_plot_history(o->plot_path, h) : 0;
}

/* The run's first lines: what trains on what, and the model's summary. */
static void print_header(const train_opts *o, const char *spec, const char *dir, const nn_train_data *data,
                         const nn_model *plan) {
    const nn_train_config *c = &o->cfg;
    printf("training %s on %s: %d train", spec, dir, data->train.n);
    if (data->has_val) printf(", %d validation", data->val.n);
    printf(", %d test images; %s lr %g, %s schedule, batch %d, %d epochs, seed %llu%s", data->test.n,
           nn_optim_name(c->opt.kind), (double)c->sched.base_lr, nn_schedule_name(c->sched.kind), c->batch_size,
           c->epochs, (unsigned long long)c->seed, c->ema > 0 ? ", weight average" : "");
    if (c->precision == NN_PRECISION_BF16) printf(", bf16 products");
    if (!nn_augment_is_identity(&c->augment))
        printf(", augmentation (shift %g px, rotation %g deg, zoom %g%%)", c->augment.shift, c->augment.rotate,
               100.0 * c->augment.scale);
    printf("\n");
    nn_model_summary(plan, stdout);
    if (o->resume) printf("resuming from %s\n", o->resume);
    fflush(stdout);
}

/* The run's last lines: how it ended and where its files are. */
static void print_result(const train_opts *o, nn_train_status rc, const nn_train_data *data, const nn_history *h) {
    if (rc == NN_TRAIN_STOPPED_EARLY)
        printf("early stop: no validation improvement for %d epochs (best: epoch %d, %.2f%%)\n", o->cfg.early_stop,
               h->best_epoch, 100 * h->val_acc[h->best_epoch - 1]);
    if (h->n == 0) return;
    const nn_epoch_metrics *last = &h->epochs[h->n - 1];
    printf("final test accuracy: %.2f%% (epoch %d)\n", 100 * last->test_acc, last->epoch);
    /* With a validation set the model ends on its best epoch's weights. */
    if (data->has_val && h->best_epoch >= 1 && h->best_epoch != last->epoch) {
        int b = h->best_epoch - 1;
        printf("kept epoch %d, the best by validation accuracy (%.2f%%): test accuracy %.2f%%\n", h->best_epoch,
               100 * h->val_acc[b], 100 * h->epochs[b].test_acc);
    }
    if (o->cfg.save_path) printf("checkpoint: %s\n", o->cfg.save_path);
    if (o->plot_path) printf("plot: %s\n", o->plot_path);
    if (o->cfg.metrics_path) printf("metrics: %s\n", o->cfg.metrics_path);
}

int train_run_error(nn_train_status rc, const nn_train_config *cfg) {
    fflush(stdout);
    fprintf(stderr, "nn: error: %s", nn_last_error());
    if (rc == NN_TRAIN_DIVERGED) fprintf(stderr, " (try a smaller --lr)");
    if (rc == NN_TRAIN_INTERRUPTED && cfg->save_path) fprintf(stderr, "; resume with nn train --resume %s", cfg->save_path);
    if (rc == NN_TRAIN_INTERRUPTED && !cfg->save_path) fprintf(stderr, " (--save FILE makes a run resumable)");
    fprintf(stderr, "\n");
    return rc == NN_TRAIN_INTERRUPTED ? 130 : 1;
}

/* Trains the planned model with Ctrl-C caught and the callbacks set. */
static nn_train_status run(train_opts *o, const nn_train_data *data, nn_model *model, nn_history *hist) {
    struct sigaction old_sa;
    catch_sigint(&old_sa);
    o->cfg.stop = &stop_requested;
    o->cfg.on_progress = show_progress;
    o->cfg.on_epoch = show_epoch;
    o->cfg.user = o;
    o->cfg.spec = NULL; /* the model comes planned */
    nn_train_status rc = nn_train(&o->cfg, data, model, hist);
    release_sigint(&old_sa);
    progress_end(&o->bar);
    return rc;
}

/* Runs the training the options describe; returns the exit status. The
 * spec is planned once: the plan the summary prints is what nn_train builds. */
static int train_with(train_opts *o) {
    const char *dir = dataset_dir("train", o->dataset, o->data_dir);
    if (!dir) return EXIT_USAGE;
    set_threads(o->threads);
    if (o->text) return train_text(&o->cfg, o->arch, o->text_body, dir, o->plot_path);
    nn_train_data data;
    if (nn_train_data_load(&data, dir, o->train_limit, o->val_split) != 0) return data_error(o->dataset, o->data_dir);
    o->mlp.classes = data.classes;
    char *spec = o->arch ? nn_xstrdup(o->arch) : nn_mlp_spec(&o->mlp);
    nn_model model;
    int status = 0;
    if (nn_model_plan(&model, spec, (int[]){data.channels, data.train.rows, data.train.cols}, data.classes) != 0) {
        status = usage_error("train", "%s: %s", o->arch ? o->arch_from : "model", nn_last_error());
    } else {
        print_header(o, spec, dir, &data, &model);
        nn_history hist;
        nn_train_status rc = run(o, &data, &model, &hist);
        if (rc >= 0) print_result(o, rc, &data, &hist);
        else status = train_run_error(rc, &o->cfg);
        nn_history_free(&hist);
    }
    nn_model_free(&model);
    free(spec);
    nn_train_data_free(&data);
    return status;
}

int cmd_train(int argc, char **argv) {
    train_opts o = {0};
    flag *table = make_table(&o);
    int status = parse_args(argc, argv, &o, table);
    if (status < 0) status = train_with(&o);
    free(table);
    free(o.hidden);
    nn_train_settings_free(&o.resumed);
    return status;
}
