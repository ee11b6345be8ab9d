/* nn predict: classify image files with a checkpoint. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/image.h"
#include "nn/model.h"

static const char *const usage_text =
    "usage: nn predict --model FILE.safetensors [--top K] IMAGE...\n"
    "\n"
    "Classifies PNG or PGM images of digits of any size, dark-on-light or\n"
    "light-on-dark, grayscale or colour. Each image is prepared as MNIST was:\n"
    "the digit is fitted into 20x20 keeping its aspect, then centred by its\n"
    "centre of mass in 28x28. Prints one line per file: the file, the digit,\n"
    "and the top probabilities.\n"
    "\n";
static const char *const epilogue =
    "\nExit status 1 if any image could not be read (the others are still classified).\n";

int cmd_predict(int argc, char **argv) {
    const char *model_path = NULL;
    int top = 3, n_images = 0;
    flag table[] = {
        {"model", FLAG_STRING, &model_path, .metavar = "FILE", .def = "required", .help = "the checkpoint"},
        {"top", FLAG_INT, &top, 1, 10, .metavar = "K", .help = "how many probabilities to show"},
        FLAG_END,
    };
    int status = flags_parse("predict", table, argc, argv, usage_text, epilogue, &n_images);
    if (status >= 0) return status;
    if (!model_path) return usage_error("predict", "--model FILE is required");
    if (n_images == 0) return usage_error("predict", "no image files given");

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
    for (int i = 1; i <= n_images; i++) {
        float pixels[NN_MNIST_PIXELS], p[64];
        if (nn_image_load_mnist(pixels, argv[i]) != 0) {
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
