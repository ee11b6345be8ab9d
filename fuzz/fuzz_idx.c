/* Fuzz target: IDX images + labels files, raw or gzipped (nn_dataset_load_files).
 *
 * Input layout: a 2-byte little-endian length k, then k bytes of the images
 * file, then the labels file (k is taken modulo what is left, so every input
 * splits somewhere). Both files are fuzzed together so the fuzzer can reach
 * the checks that compare them (count mismatch, label range). */
#include "fuzz_util.h"
#include "nn/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t k = ((size_t)data[0] | (size_t)data[1] << 8) % (size - 1);
    const uint8_t *images = data + 2, *labels = data + 2 + k;
    char images_path[128];
    snprintf(images_path, sizeof images_path, "%s", fuzz_file("images", images, k));
    const char *labels_path = fuzz_file("labels", labels, size - 2 - k);

    nn_dataset ds;
    if (nn_dataset_load_files(&ds, images_path, labels_path) != 0) {
        /* The message names the file at fault; the dataset is left empty. */
        const char *msg = nn_last_error();
        fuzz_check_error(strncmp(msg, images_path, strlen(images_path)) == 0 ? images_path : labels_path);
        if (ds.n || ds.images || ds.labels) __builtin_trap();
        return 0;
    }
    /* Touch every byte the dataset claims to have: ASan catches a short buffer. */
    float mean, std;
    nn_dataset_mean_std(&ds, &mean, &std);
    for (int i = 0; i < ds.n; i++)
        if (ds.labels[i] >= NN_DATA_CLASSES) __builtin_trap();
    nn_dataset_free(&ds);
    return 0;
}
