/* nn eval: a checkpoint's test accuracy, per-class accuracy and confusion
 * matrix; on request, pictures of its most confident mistakes and of its first
 * conv layer's kernels. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/train.h"
#include "plot/plot.h"
#include "core/util.h"

static const char *const usage_text =
    "usage: nn eval --model FILE.safetensors [--dataset mnist|fashion-mnist] [--data DIR]\n"
    "               [--errors FILE.png|.svg [--errors-count N]] [--filters FILE.png|.svg]\n"
    "\n"
    "Loads a checkpoint written by 'nn train' and evaluates it on the test set\n"
    "(t10k files): overall accuracy and loss, per-class accuracy, confusion matrix.\n"
    "\n";

static const char *const fashion_names[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

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

int cmd_eval(int argc, char **argv) {
    const char *model_path = NULL, *dataset = "mnist", *data_dir = NULL, *errors_path = NULL, *filters_path = NULL;
    int threads = 0, errors_count = 36;
    flag table[] = {
        {"model", FLAG_STRING, &model_path, .metavar = "FILE", .def = "required", .help = "the checkpoint"},
        {"dataset", FLAG_STRING, &dataset, .metavar = "NAME", .help = "mnist or fashion-mnist, from data/<name>"},
        {"data", FLAG_STRING, &data_dir, .metavar = "DIR", .help = "folder with the IDX files instead"},
        {"errors", FLAG_CUSTOM, &errors_path, .parse = flag_picture, .metavar = "FILE", .def = "",
         .help = "draw the test images the model gets wrong with the most\n"
                 "confidence, captioned true -> predicted (probability),\n"
                 "and list them (.png or .svg)"},
        {"errors-count", FLAG_INT, &errors_count, 1, NN_GRID_MAX_IMAGES, .metavar = "N",
         .help = "how many of them, 1 to 1024"},
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
    const char *dir = dataset_dir("eval", dataset, data_dir);
    if (!dir) return EXIT_USAGE;
    set_threads(threads);

    nn_model model;
    if (nn_model_load(&model, model_path) != 0) return runtime_error();
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
        nn_confusion_print(&conf, stdout, names);
        nn_confusion_free(&conf);
        if (errors_path &&
            report_mistakes(errors_path, errors_count, &model, ctx, &test, model_path, dir, names) != 0)
            rc = runtime_error();
        if (rc == 0 && filters_path) printf("\nkernels of the first conv layer drawn in %s\n", filters_path);
        nn_ctx_free(ctx);
    }
    nn_dataset_free(&test);
    nn_model_free(&model);
    return rc;
}
