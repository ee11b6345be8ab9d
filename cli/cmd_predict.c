/* nn predict: classify image files with a checkpoint. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "nn/image.h"
#include "nn/model.h"

static const char *const predict_help =
    "usage: nn predict --model FILE.safetensors [--top K] IMAGE...\n"
    "\n"
    "Classifies PNG or PGM images of digits of any size, dark-on-light or\n"
    "light-on-dark, grayscale or colour. Each image is prepared as MNIST was:\n"
    "the digit is fitted into 20x20 keeping its aspect, then centred by its\n"
    "centre of mass in 28x28. Prints one line per file: the file, the digit,\n"
    "and the top probabilities.\n"
    "\n"
    "  --model FILE            the checkpoint (required)\n"
    "  --top K                 how many probabilities to show (3)\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit status 1 if any image could not be read (the others are still classified).\n";

int cmd_predict(int argc, char **argv) {
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'}, {"top", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
    };
    const char *model_path = NULL;
    long top = 3;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(predict_help, stdout); return 0;
        case 'm': model_path = optarg; break;
        case 'k':
            if (parse_int_flag("predict", "--top", optarg, 1, 10, &top)) return EXIT_USAGE;
            break;
        case ':': return usage_error("predict", "%s needs a value", argv[optind - 1]);
        default: return usage_error("predict", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!model_path) return usage_error("predict", "--model FILE is required");
    if (optind >= argc) return usage_error("predict", "no image files given");

    nn_model model;
    if (nn_model_load(&model, model_path) != 0) return runtime_error();
    int classes = model.classes;
    if (model.in_shape[0] != 1 || model.in_shape[1] * model.in_shape[2] != NN_MNIST_PIXELS || classes > 64) {
        nn_error("%s: model takes [%d, %d, %d] inputs, predict needs a 28x28 model", model_path, model.in_shape[0],
                 model.in_shape[1], model.in_shape[2]);
        nn_model_free(&model);
        return runtime_error();
    }
    if (top > classes) top = classes;
    nn_ctx *ctx = nn_ctx_new(0);
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        float pixels[NN_MNIST_PIXELS], p[64];
        if (nn_image_load_mnist(argv[i], pixels) != 0) {
            rc = runtime_error();
            continue;
        }
        int best = nn_model_predict(&model, ctx, pixels, p);
        bool used[64] = {false};
        printf("%s: %d  (", argv[i], best);
        for (int t = 0; t < top; t++) {
            int arg = -1;
            for (int k = 0; k < classes; k++)
                if (!used[k] && (arg < 0 || p[k] > p[arg])) arg = k;
            used[arg] = true;
            printf("%s%d: %.3f", t ? ", " : "", arg, p[arg]);
        }
        printf(")\n");
    }
    fflush(stdout);
    nn_ctx_free(ctx);
    nn_model_free(&model);
    return rc;
}
