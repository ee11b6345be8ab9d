/* Fuzz target: safetensors header and tensors, from memory (nn_st_parse).
 * On a file that parses, every accessor is driven with what the header
 * declared: each tensor is found by name and, if F32, read with its own shape
 * (and refused with a wrong one); each metadata key finds its value. */
#include "fuzz_util.h"
#include "nn/safetensors.h"

#define NAME "fuzz.safetensors"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nn_safetensors st;
    if (nn_st_parse(data, size, NAME, &st) != 0) {
        fuzz_check_error(NAME);
        return 0;
    }
    for (int i = 0; i < st.n_tensors; i++) {
        const nn_st_tensor *t = &st.tensors[i];
        if (nn_st_find(&st, t->name) != t) __builtin_trap(); /* names are unique */
        if (t->offset > st.data_len || t->nbytes > st.data_len - t->offset) __builtin_trap();
        if (strcmp(t->dtype, "F32") != 0) {
            if (nn_st_read_f32(&st, t->name, NULL, t->ndim, t->shape) != -1) __builtin_trap();
            continue;
        }
        /* nbytes is bounded by the input's size, so this allocation is too. */
        float *dst = malloc(t->nbytes ? t->nbytes : 1);
        if (nn_st_read_f32(&st, t->name, dst, t->ndim, t->shape) != 0) __builtin_trap();
        int64_t wrong[NN_ST_MAX_DIMS + 1];
        memcpy(wrong, t->shape, sizeof t->shape);
        wrong[t->ndim] = 1; /* one more dim of size 1: same bytes, other shape */
        if (nn_st_read_f32(&st, t->name, dst, t->ndim + 1, wrong) != -1) __builtin_trap();
        fuzz_check_error(NAME);
        free(dst);
    }
    for (int i = 0; i < st.n_meta; i++)
        if (nn_st_meta(&st, st.meta_keys[i]) != st.meta_values[i]) __builtin_trap(); /* keys are unique */
    nn_st_free(&st);
    return 0;
}
