/* Fuzz target: model checkpoints (nn_model_load), the model loader on top of the
 * safetensors parser: it reads the architecture from metadata strings, builds
 * the model, then checks and copies every tensor. */
#include "fuzz_util.h"
#include "nn/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file("model.safetensors", data, size);
    nn_model m;
    if (nn_model_load(&m, path) != 0) {
        fuzz_check_error(path);
        return 0;
    }
    nn_model_free(&m);
    return 0;
}
