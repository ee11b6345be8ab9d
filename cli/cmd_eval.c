/* nn eval: a checkpoint's test accuracy, per-class accuracy and confusion
 * matrix; on request, pictures of the confusion matrix, of its most confident
 * mistakes and of its first conv layer's kernels. A language model of lines
 * "PROMPT=ANSWER" gets the exact match of its greedy completions instead. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/seq2seq.h"
#include "nn/train.h"
#include "plot/plot.h"
#include "core/util.h"

static const char *const usage_text =
    "usage: nn eval --model FILE.safetensors [--dataset mnist|fashion-mnist] [--data DIR]\n"
    "               [--confusion FILE.png|.svg] [--errors FILE.png|.svg [--errors-count N]]\n"
    "               [--filters FILE.png|.svg] [--mistakes N]\n"
    "\n"
    "Loads a checkpoint written by 'nn train' and evaluates it on the test set\n"
    "(t10k files): overall accuracy and loss, per-class accuracy, confusion matrix.\n"
    "\n"
    "With a text classifier's checkpoint: the same on the validation split of the\n"
    "folder of one .txt file per class it was trained on (--data DIR; default\n"
    "data/names-by-language), rebuilt with the seed stored in the checkpoint.\n"
    "\n"
    "With a language model of lines 'PROMPT=ANSWER' (e.g. sums, make data\n"
    "DATASET=addition): the exact-match accuracy of its greedy completions of the\n"
    "held-out prompts, everything up to and including the first '=' (the lines of\n"
    "test.lines.txt; --data DIR, or --dataset addition|addition3; default\n"
    "data/addition), and its first --mistakes.\n"
    "\n";

static const char *const fashion_names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* The confusion matrix printed, and drawn into path when it is not NULL
 * (`what`, e.g. "model.safetensors on data/mnist", under the title). */
static int report_confusion(const nn_confusion *conf, const char *const *names, const char *path,
                            const char *model_path, const char *what) {
    nn_confusion_print(conf, stdout, names);
    if (!path) return 0;
    char name[1024];
    snprintf(name, sizeof name, "%s on %s", model_path, what);
    if (nn_plot_confusion(path, conf, names, name) != 0) return -1;
    printf("\nconfusion matrix drawn in %s\n", path);
    return 0;
}

/* The most confident mistakes: drawn into path and listed on stdout. */
static int report_mistakes(const char *path, int count, nn_model *model, nn_ctx *ctx, const nn_dataset *test,
                           const char *model_path, const char *dir, const char *const *names) {
    nn_mistake *top = nn_xmalloc((size_t)count * sizeof *top);
    int wrong = 0, n = nn_find_mistakes(model, ctx, test, top, count, &wrong);
    int rc = n < 0 ? -1 : 0;
    if (n == 0) rc = nn_error("%s makes no mistakes on %s: nothing to draw in %s", model_path, dir, path);
    if (rc == 0) {
        char name[512];
        snprintf(name, sizeof name, "%s on %s", model_path, dir);
        rc = nn_plot_mistakes(path, test, top, n, wrong, names, name);
    }
    if (rc == 0) {
        printf("\nthe %d most confident of %d mistakes (drawn in %s):\n", n, wrong, path);
        printf("  index  true  predicted  confidence\n");
        for (int i = 0; i < n; i++) {
            printf("  %5d  %4d  %9d  %9.2f%%", top[i].index, top[i].truth, top[i].pred, 100.0 * top[i].confidence);
            if (names) printf("  %s -> %s", names[top[i].truth], names[top[i].pred]);
            putchar('\n');
        }
    }
    free(top);
    return rc;
}

/* A text classifier on the validation split it was trained beside: the
 * split is rebuilt from the checkpoint's seed (nn.text_seed) and vocabulary. */
static int eval_text(nn_model *model, const char *model_path, const char *dir, const char *confusion_path) {
    nn_safetensors st;
    if (nn_st_load(&st, model_path) != 0) return runtime_error();
    nn_vocab vocab = {0};
    const char *v = nn_st_meta(&st, "nn.vocab"), *seed_s = nn_st_meta(&st, "nn.text_seed");
    char **names = NULL, *end = NULL;
    int C = model->classes, rc = 0;
    unsigned long long seed = seed_s ? strtoull(seed_s, &end, 10) : 0;
    if (!v) rc = nn_error("%s: no vocabulary (metadata nn.vocab): not a text model's checkpoint", model_path);
    else if (!(names = nn_text_classes_split(nn_st_meta(&st, "nn.classes"), C, model_path))) rc = -1;
    else if (!seed_s || !*seed_s || *end)
        rc = nn_error("%s: no seed of the validation split (metadata nn.text_seed)", model_path);
    else if (nn_vocab_parse(&vocab, v, model_path) != 0) rc = -1;
    nn_st_free(&st);
    nn_text data = {0};
    if (rc == 0 && nn_text_load(&data, dir, NN_TEXT_CLASSES, seed, &vocab) != 0) rc = -1;
    if (rc == 0 && data.n_classes != C)
        rc = nn_error("%s has %d classes, %s was trained on %d", dir, data.n_classes, model_path, C);
    for (int k = 0; rc == 0 && k < C; k++)
        if (strcmp(data.class_names[k], names[k]) != 0)
            rc = nn_error("%s: class %d is '%s', %s was trained with '%s'", dir, k + 1, data.class_names[k], model_path,
                          names[k]);
    if (rc == 0) {
        nn_ctx *ctx = nn_ctx_new(0);
        nn_confusion conf;
        nn_confusion_init(&conf, C);
        double loss, acc = nn_evaluate_text(model, ctx, &data.val, 256, &loss, &conf);
        printf("%s on %s (validation split, seed %llu): validation accuracy %.2f%% (%ld of %d), cross-entropy loss "
               "%.4f\n\n",
               model_path, dir, seed, 100 * acc, (long)(acc * data.val.n_seqs + 0.5), data.val.n_seqs, loss);
        char what[768];
        snprintf(what, sizeof what, "%s (validation split, %d names)", dir, data.val.n_seqs);
        rc = report_confusion(&conf, (const char *const *)names, confusion_path, model_path, what);
        nn_confusion_free(&conf);
        nn_ctx_free(ctx);
    }
    nn_text_free(&data);
    nn_vocab_free(&vocab);
    nn_text_classes_free(names, C);
    return rc == 0 ? 0 : runtime_error();
}

/* The token ids ids[0 .. n) as text, into buf (cap bytes, NUL-terminated;
 * cut short if it does not fit). */
static const char *ids_text(const nn_vocab *v, const int *ids, int n, char *buf, size_t cap) {
    char *s = nn_vocab_decode(v, ids, (size_t)n);
    snprintf(buf, cap, "%s", s);
    free(s);
    return buf;
}

/* A language model of lines "PROMPT=ANSWER": the exact match of its greedy
 * completions of the held-out prompts (nn/seq2seq.h), and its first
 * mistakes. */
static int eval_completions(nn_model *model, const char *model_path, const char *dir, int n_mistakes) {
    nn_safetensors st;
    if (nn_st_load(&st, model_path) != 0) return runtime_error();
    const char *v = nn_st_meta(&st, "nn.vocab"), *kind = nn_st_meta(&st, "nn.text_kind"),
               *seed_s = nn_st_meta(&st, "nn.config.seed");
    nn_vocab vocab = {0};
    int rc = 0;
    /* A folder with a seeded split of its lines (names.txt) is rebuilt with the run's seed. */
    unsigned long long seed = seed_s ? strtoull(seed_s, NULL, 10) : 1;
    if (!v || model->vocab == 0 || model->classes != model->vocab)
        rc = nn_error("%s: not a language model (nn train on text writes one: it holds nn.vocab and scores every "
                      "token)",
                      model_path);
    else if (!kind || strcmp(kind, "lines") != 0)
        rc = nn_error("%s: a language model of %s; nn eval scores completions of lines 'PROMPT=ANSWER' (a model "
                      "trained on make data DATASET=addition)",
                      model_path, kind ? (strcmp(kind, "stream") == 0 ? "a text stream" : kind) : "unknown text");
    else if (nn_vocab_parse(&vocab, v, model_path) != 0)
        rc = -1;
    nn_st_free(&st);
    nn_text data = {0};
    if (rc == 0 && nn_text_load(&data, dir, NN_TEXT_LINES, seed, &vocab) != 0) rc = -1;
    int sep = rc == 0 ? nn_vocab_id(&vocab, NN_ANSWER_SEP) : -1;
    if (rc == 0 && sep < 0)
        rc = nn_error("%s: the vocabulary has no '=': nn eval on a language model completes the prompts of lines "
                      "'PROMPT=ANSWER'",
                      model_path);
    nn_exact_match r = {0};
    double t0 = nn_seconds();
    if (rc == 0 && nn_exact_match_eval(&data.val, sep, nn_greedy_completer, model, n_mistakes, &r) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", nn_last_error());
        rc = nn_error("%s (held-out lines): %s", dir, why);
    }
    if (rc == 0) {
        printf("%s on %s: exact match %.2f%% (%d of %d held-out lines), greedy completions of the prompts up to "
               "'=' (%.1f s)\n",
               model_path, dir, 100.0 * r.correct / r.total, r.correct, r.total, nn_seconds() - t0);
        if (r.n_mistakes > 0) printf("\nthe first %d mistakes:\n", r.n_mistakes);
        for (int i = 0; i < r.n_mistakes; i++) {
            const nn_completion_mistake *e = &r.mistakes[i];
            const int *seq = data.val.ids + data.val.offsets[e->index];
            int len = data.val.lengths[e->index], cut = 1;
            while (seq[cut] != sep) cut++;
            char prompt[256], want[256], got[256];
            ids_text(&vocab, seq + 1, cut, prompt, sizeof prompt);
            ids_text(&vocab, seq + cut + 1, len - cut - 2, want, sizeof want);
            ids_text(&vocab, e->ids, e->n, got, sizeof got);
            printf("  %-12s wrote %-8s expected %s\n", prompt, e->n ? got : "nothing", want);
        }
    }
    nn_exact_match_free(&r);
    nn_text_free(&data);
    nn_vocab_free(&vocab);
    return rc == 0 ? 0 : runtime_error();
}

/* Whether the checkpoint holds a language model (its text kind is not classes). */
static bool is_language_model(const nn_model *m, const char *model_path) {
    nn_safetensors st;
    if (m->vocab == 0 || m->classes != m->vocab || nn_st_load(&st, model_path) != 0) return false;
    const char *kind = nn_st_meta(&st, "nn.text_kind");
    bool lm = !kind || strcmp(kind, "classes") != 0;
    nn_st_free(&st);
    return lm;
}

int cmd_eval(int argc, char **argv) {
    const char *model_path = NULL, *dataset = "mnist", *data_dir = NULL, *errors_path = NULL, *filters_path = NULL,
               *confusion_path = NULL;
    int threads = 0, errors_count = 36, mistakes = 10;
    flag table[] = {
        {"model", FLAG_STRING, &model_path, .metavar = "FILE", .def = "required", .help = "the checkpoint"},
        {"dataset", FLAG_STRING, &dataset, .metavar = "NAME",
         .help = "mnist or fashion-mnist (names-by-language for a text\nclassifier, addition or addition3 for a language model\nof sums), from data/<name>"},
        {"data", FLAG_STRING, &data_dir, .metavar = "DIR",
         .help = "folder with the IDX files instead (a text classifier's:\nits folder of one .txt file per class; a language\nmodel's: its folder of lines)"},
        {"confusion", FLAG_CUSTOM, &confusion_path, .parse = flag_picture, .metavar = "FILE", .def = "",
         .help = "draw the confusion matrix: rows the true class, columns\n"
                 "the prediction, each cell shaded by its share of its row,\n"
                 "with its count and share written in it (.png or .svg)"},
        {"errors", FLAG_CUSTOM, &errors_path, .parse = flag_picture, .metavar = "FILE", .def = "",
         .help = "draw the test images the model gets wrong with the most\n"
                 "confidence, captioned true -> predicted (probability),\n"
                 "and list them (.png or .svg)"},
        {"errors-count", FLAG_INT, &errors_count, 1, NN_GRID_MAX_IMAGES, .metavar = "N",
         .help = "how many of them, 1 to 1024"},
        {"mistakes", FLAG_INT, &mistakes, 0, 100000, .metavar = "N",
         .help = "a language model's wrong completions to list"},
        {"filters", FLAG_CUSTOM, &filters_path, .parse = flag_picture, .metavar = "FILE", .def = "",
         .help = "draw the kernels of the first conv layer (.png or .svg)"},
        {"threads", FLAG_INT, &threads, 1, 256, .metavar = "N", .def = "all cores", .help = "OpenMP and OpenBLAS threads"},
        FLAG_END,
    };
    int status = flags_parse("eval", table, argc, argv, usage_text, NULL, NULL);
    if (status >= 0) return status;
    bool count_given = flag_given(table, "errors-count");
    if (!model_path) return usage_error("eval", "--model FILE is required");
    if (count_given && !errors_path) return usage_error("eval", "--errors-count needs --errors FILE");
    bool dataset_given = flag_given(table, "dataset");
    set_threads(threads);

    nn_model model;
    if (nn_model_load(&model, model_path) != 0) return runtime_error();
    if (model.in_ndim == 1 && is_language_model(&model, model_path)) {
        int rc;
        if (errors_path || filters_path || confusion_path) {
            rc = usage_error("eval", "--%s is for classifiers; %s is a language model",
                             errors_path ? "errors" : filters_path ? "filters" : "confusion", model_path);
        } else {
            char dir[512];
            snprintf(dir, sizeof dir, "data/%s", dataset_given ? dataset : "addition");
            rc = eval_completions(&model, model_path, data_dir ? data_dir : dir, mistakes);
        }
        nn_model_free(&model);
        return rc;
    }
    if (flag_given(table, "mistakes")) {
        nn_model_free(&model);
        return usage_error("eval", "--mistakes is for a language model; %s is a classifier", model_path);
    }
    if (model.in_ndim == 1) {
        int rc;
        if (errors_path || filters_path) {
            rc = usage_error("eval", "--%s is for image classifiers; %s is a text model",
                             errors_path ? "errors" : "filters", model_path);
        } else {
            const char *dir = dataset_dir("eval", dataset_given ? dataset : "names-by-language", data_dir);
            rc = dir ? eval_text(&model, model_path, dir, confusion_path) : EXIT_USAGE;
        }
        nn_model_free(&model);
        return rc;
    }
    const char *dir = dataset_dir("eval", dataset, data_dir);
    if (!dir) {
        nn_model_free(&model);
        return EXIT_USAGE;
    }
    /* The kernels need no data: a model without a conv layer fails here, at once. */
    if (filters_path && nn_plot_conv_filters(filters_path, &model, model_path) != 0) {
        nn_model_free(&model);
        return runtime_error();
    }
    nn_dataset test;
    if (nn_dataset_load(&test, dir, "t10k") != 0) {
        nn_model_free(&model);
        return data_error(dataset, data_dir);
    }
    int rc = 0;
    if (model.in_shape[0] != 1 || test.rows != model.in_shape[1] || test.cols != model.in_shape[2]) {
        nn_error("%s: model expects [%d, %d, %d] images, %s has %dx%d images", model_path, model.in_shape[0],
                 model.in_shape[1], model.in_shape[2], dir, test.rows, test.cols);
        rc = runtime_error();
    } else {
        nn_ctx *ctx = nn_ctx_new(0);
        nn_confusion conf;
        nn_confusion_init(&conf, model.classes);
        double loss, acc = nn_evaluate(&model, ctx, &test, NN_LOSS_CE, &loss, &conf);
        printf("%s on %s: test accuracy %.2f%% (%ld of %d), cross-entropy loss %.4f\n\n", model_path, dir,
               100 * acc, (long)(acc * test.n + 0.5), test.n, loss);
        bool is_fashion = strcmp(dataset, "fashion-mnist") == 0 && conf.n_classes == 10;
        const char *const *names = is_fashion ? fashion_names : NULL;
        char what[600];
        snprintf(what, sizeof what, "%s (%d test images)", dir, test.n);
        if (report_confusion(&conf, names, confusion_path, model_path, what) != 0) rc = runtime_error();
        nn_confusion_free(&conf);
        if (rc == 0 && errors_path &&
            report_mistakes(errors_path, errors_count, &model, ctx, &test, model_path, dir, names) != 0)
            rc = runtime_error();
        if (rc == 0 && filters_path) printf("\nkernels of the first conv layer drawn in %s\n", filters_path);
        nn_ctx_free(ctx);
    }
    nn_dataset_free(&test);
    nn_model_free(&model);
    return rc;
}
