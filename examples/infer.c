/* Classifies image files with a checkpoint through nn's public API: load the
 * model, turn each PNG or PGM into a 28x28 MNIST-style input, run the model
 * in evaluation mode, print the digit and its probability.
 *
 *   cc infer.c $(pkg-config --cflags --libs nn) -o infer
 *   ./infer cnn.safetensors digit.png [more.png ...]
 */
#include <stdio.h>

#include <nn.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.safetensors IMAGE...\n", argv[0]);
        return 2;
    }
    nn_model model;
    if (nn_model_load(&model, argv[1]) != 0) {
        fprintf(stderr, "infer: %s\n", nn_last_error());
        return 1;
    }
    if (model.in_shape[0] != 1 || model.in_shape[1] != NN_MNIST_SIDE || model.in_shape[2] != NN_MNIST_SIDE ||
        model.classes > NN_DATA_CLASSES) {
        fprintf(stderr, "infer: %s: not a model of 28x28 images into at most %d classes\n", argv[1], NN_DATA_CLASSES);
        nn_model_free(&model);
        return 1;
    }
    nn_ctx *ctx = nn_ctx_new(0); /* the arena the forward pass runs in */
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        float pixels[NN_MNIST_PIXELS], probs[NN_DATA_CLASSES];
        if (nn_image_load_mnist(pixels, argv[i]) != 0) {
            fprintf(stderr, "infer: %s\n", nn_last_error());
            rc = 1;
            continue;
        }
        /* Normalised as in training, evaluation mode (dropout off, BatchNorm
         * on its running statistics), softmax. */
        int digit = nn_model_predict(&model, ctx, pixels, probs);
        printf("%s: %d (%.1f%%)\n", argv[i], digit, 100.0 * probs[digit]);
    }
    nn_ctx_free(ctx);
    nn_model_free(&model);
    return rc;
}
