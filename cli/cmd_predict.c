/* nn predict: classify image files, or texts with a text classifier's
 * checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/image.h"
#include "nn/model.h"
#include "nn/train.h"
#include "core/util.h"

static const char *const usage_text =
    "usage: nn predict --model FILE.safetensors [--top K] IMAGE...\n"
    "       nn predict --model TEXT-CLASSIFIER.safetensors [--top K] TEXT...\n"
    "\n"
    "Classifies PNG or PGM images of digits of any size, dark-on-light or\n"
    "light-on-dark, grayscale or colour. Each image is prepared as MNIST was:\n"
    "the digit is fitted into 20x20 keeping its aspect, then centred by its\n"
    "centre of mass in 28x28. Prints one line per file: the file, the digit,\n"
    "and the top probabilities.\n"
    "\n"
    "With a text classifier's checkpoint (nn train --dataset names-by-language)\n"
    "each argument is a text, e.g. a name: one line per text with its most\n"
    "probable classes and their probabilities. A character the model never saw\n"
    "is an error naming it.\n"
    "\n";
static const char *const epilogue =
    "\nExit status 1 if any image could not be read or text encoded (the others are\nstill classified).\n";

/* Each text's most probable classes, with the checkpoint's class names. */
static int predict_texts(nn_model *model, const char *model_path, char **texts, int n_texts, int top) {
    nn_safetensors st;
    if (nn_st_load(&st, model_path) != 0) return runtime_error();
    nn_vocab vocab = {0};
    const char *v = nn_st_meta(&st, "nn.vocab");
    char **names = NULL;
    int C = model->classes, rc = 0;
    if (!v) rc = nn_error("%s: no vocabulary (metadata nn.vocab): not a text model's checkpoint", model_path);
    else if (nn_vocab_parse(&vocab, v, model_path) != 0) rc = -1;
    else if (!(names = nn_text_classes_split(nn_st_meta(&st, "nn.classes"), C, model_path))) rc = -1;
    nn_st_free(&st);
    if (rc != 0) {
        nn_vocab_free(&vocab);
        return runtime_error();
    }
    if (top > C) top = C;
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_grad_enabled(ctx, false);
    nn_set_training(ctx, false);
    double *p = nn_xmalloc((size_t)C * sizeof *p);
    bool *used = nn_xmalloc((size_t)C * sizeof *used);
    for (int i = 0; i < n_texts; i++) {
        size_t n;
        int *ids = nn_vocab_encode(&vocab, texts[i], strlen(texts[i]), &n);
        if (ids && n == 0) nn_error("an empty text has no class");
        if (ids && model->in_shape[0] && n > (size_t)model->in_shape[0]) { /* learned positions end there */
            nn_error("%zu characters, but the model takes at most %d (its context)", n, model->in_shape[0]);
            free(ids);
            ids = NULL;
        }
        if (!ids || n == 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", nn_last_error());
            nn_error("'%s': %s (%s)", texts[i], msg, model_path);
            rc = runtime_error();
            free(ids);
            continue;
        }
        nn_ctx_reset(ctx);
        const nn_tensor *logits = nn_model_forward_tokens(model, ctx, ids, 1, (int)n, NULL, NULL);
        double max = logits->data[0], sum = 0.0;
        for (int k = 1; k < C; k++)
            if (logits->data[k] > max) max = logits->data[k];
        for (int k = 0; k < C; k++) sum += p[k] = exp(logits->data[k] - max);
        for (int k = 0; k < C; k++) {
            p[k] /= sum;
            used[k] = false;
        }
        for (int t = 0; t < top; t++) {
            int arg = -1;
            for (int k = 0; k < C; k++)
                if (!used[k] && (arg < 0 || p[k] > p[arg])) arg = k;
            used[arg] = true;
            if (t == 0) printf("%s: %s  (", texts[i], names[arg]);
            printf("%s%s %.3f", t ? ", " : "", names[arg], p[arg]);
        }
        printf(")\n");
        free(ids);
    }
    fflush(stdout);
    free(p);
    free(used);
    nn_ctx_free(ctx);
    nn_text_classes_free(names, C);
    nn_vocab_free(&vocab);
    return rc;
}

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
    if (model.in_ndim == 1) {
        int rc = predict_texts(&model, model_path, argv + 1, n_images, top);
        nn_model_free(&model);
        return rc;
    }
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
        if (access(argv[i], F_OK) != 0) {
            nn_error("%s: no such image file (%s classifies images; texts need a text classifier's checkpoint)",
                     argv[i], model_path);
            rc = runtime_error();
            continue;
        }
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
