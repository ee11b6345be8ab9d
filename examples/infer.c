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
    if (model.in_shape[0] != 1 || model.in_shape[1] != NN_MNIST_SIDE || model.in_shape[2] != NN_MNIST_SIDE) {
        fprintf(stderr, "infer: %s: the model does not take 28x28 images\n", argv[1]);
        nn_model_free(&model);
        return 1;
    }
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_grad_enabled(ctx, false); /* inference: record nothing */
    nn_set_training(ctx, false);     /* dropout off, BatchNorm on its running statistics */
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        nn_ctx_reset(ctx);
        nn_tensor *x = nn_input(ctx, "x", 4, (int[]){1, 1, NN_MNIST_SIDE, NN_MNIST_SIDE});
        if (nn_image_load_mnist(argv[i], x->data) != 0) {
            fprintf(stderr, "infer: %s\n", nn_last_error());
            rc = 1;
            continue;
        }
        /* The normalisation the model was trained with. */
        for (size_t k = 0; k < x->size; k++) x->data[k] = (x->data[k] - model.input_mean) / model.input_std;
        const float *p = nn_softmax(ctx, nn_model_forward(&model, ctx, x, NULL))->data;
        int best = 0;
        for (int k = 1; k < model.classes; k++)
            if (p[k] > p[best]) best = k;
        printf("%s: %d (%.1f%%)\n", argv[i], best, 100.0 * p[best]);
    }
    nn_ctx_free(ctx);
    nn_model_free(&model);
    return rc;
}
