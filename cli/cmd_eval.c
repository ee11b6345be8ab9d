/* nn eval: a checkpoint's test accuracy, per-class accuracy and confusion matrix. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "nn/train.h"

static const char *const eval_help =
    "usage: nn eval --model FILE.safetensors [--dataset mnist|fashion-mnist] [--data DIR]\n"
    "\n"
    "Loads a checkpoint written by 'nn train' and evaluates it on the test set\n"
    "(t10k files): overall accuracy and loss, per-class accuracy, confusion matrix.\n"
    "\n"
    "  --model FILE            the checkpoint (required)\n"
    "  --dataset NAME          mnist or fashion-mnist, from data/<name> (mnist)\n"
    "  --data DIR              folder with the IDX files instead\n"
    "  --threads N             OpenMP and OpenBLAS threads (all cores)\n"
    "  -h, --help              this help\n";

int cmd_eval(int argc, char **argv) {
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"dataset", required_argument, 0, 'd'},
        {"data", required_argument, 0, 'D'},  {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
    };
    const char *model_path = NULL, *dataset = "mnist", *data_dir = NULL;
    long threads = 0;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(eval_help, stdout); return 0;
        case 'm': model_path = optarg; break;
        case 'd': dataset = optarg; break;
        case 'D': data_dir = optarg; break;
        case 't':
            if (parse_int_flag("eval", "--threads", optarg, 1, 256, &threads)) return EXIT_USAGE;
            break;
        case ':': return usage_error("eval", "%s needs a value", argv[optind - 1]);
        default: return usage_error("eval", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!model_path) return usage_error("eval", "--model FILE is required");
    const char *dir = dataset_dir("eval", dataset, data_dir);
    if (!dir) return EXIT_USAGE;
    set_threads((int)threads);

    nn_model model;
    if (nn_model_load(&model, model_path) != 0) return runtime_error();
    nn_dataset test;
    if (nn_dataset_load(dir, "t10k", &test) != 0) {
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
        static const char *const fashion[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
        bool is_fashion = strcmp(dataset, "fashion-mnist") == 0 && conf.n_classes == 10;
        nn_confusion_print(stdout, &conf, is_fashion ? fashion : NULL);
        nn_confusion_free(&conf);
        nn_ctx_free(ctx);
    }
    nn_dataset_free(&test);
    nn_model_free(&model);
    return rc;
}
