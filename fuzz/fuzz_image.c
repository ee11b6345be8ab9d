/* Fuzz target: PNG and PGM images (nn_image_load), then MNIST-style
 * preprocessing of whatever loaded (nn_image_to_mnist). */
#include <math.h>

#include "fuzz_util.h"
#include "nn/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("image", data, size);
    nn_image img;
    if (nn_image_load(&img, path) != 0) {
        fuzz_check_error(path);
        if (img.pixels || img.width || img.height) __builtin_trap();
        return 0;
    }
    size_t n = (size_t)img.width * (size_t)img.height;
    if (img.width < 1 || img.height < 1 || n > NN_IMAGE_MAX_PIXELS) __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if (!(img.pixels[i] >= 0.0f && img.pixels[i] <= 1.0f)) __builtin_trap();
    float out[NN_MNIST_PIXELS];
    if (nn_image_to_mnist(&img, out) == 0) {
        for (int i = 0; i < NN_MNIST_PIXELS; i++)
            if (!(out[i] >= 0.0f && out[i] <= 1.0f)) __builtin_trap();
    } else if (strcmp(nn_last_error(), "image is blank") != 0) {
        __builtin_trap();
    }
    nn_image_free(&img);
    return 0;
}
