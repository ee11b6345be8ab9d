/* Fuzz target: safetensors header and tensors, from memory (nn_st_parse).
 * On a file that parses, every accessor is driven with what the header
 * declared: each tensor is found by name and read as floats with its own
 * shape (and refused with a wrong one) when its dtype converts to float
 * (F32, F16, BF16, F64, the integers: a value that does not fit is an
 * error, never a crash); BOOL and F8 are always refused; each metadata key
 * finds its value. */
#include "fuzz_util.h"
#include "nn/safetensors.h"

#define NAME "fuzz.safetensors"

/* Bytes per element of a dtype nn_st_read_f32 converts; 0 for one it refuses. */
static size_t readable_size(const char *dtype) {
    static const struct {
        const char *name;
        size_t size;
    } dtypes[] = {{"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
                  {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1}};
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtype, dtypes[i].name) == 0) return dtypes[i].size;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nn_safetensors st;
    if (nn_st_parse(&st, data, size, NAME) != 0) {
        fuzz_check_error(NAME);
        return 0;
    }
    for (int i = 0; i < st.n_tensors; i++) {
        const nn_st_tensor *t = &st.tensors[i];
        if (nn_st_find(&st, t->name) != t) __builtin_trap(); /* names are unique */
        if (t->offset > st.data_len || t->nbytes > st.data_len - t->offset) __builtin_trap();
        size_t size = readable_size(t->dtype);
        if (size == 0) {
            if (nn_st_read_f32(&st, t->name, t->ndim, t->shape, NULL) != -1) __builtin_trap();
            fuzz_check_error(NAME);
            continue;
        }
        /* nbytes is bounded by the input's size, so this allocation is too. */
        size_t n = t->nbytes / size;
        float *dst = malloc((n ? n : 1) * sizeof *dst);
        int rc = nn_st_read_f32(&st, t->name, t->ndim, t->shape, dst);
        if (rc != 0) { /* a value float32 cannot hold exactly (integers) or at all (F64) */
            if (rc != -1 || strcmp(t->dtype, "F32") == 0) __builtin_trap();
            fuzz_check_error(NAME);
            free(dst);
            continue;
        }
        int64_t wrong[NN_ST_MAX_DIMS + 1];
        memcpy(wrong, t->shape, sizeof t->shape);
        wrong[t->ndim] = 1; /* one more dim of size 1: same bytes, other shape */
        if (nn_st_read_f32(&st, t->name, t->ndim + 1, wrong, dst) != -1) __builtin_trap();
        fuzz_check_error(NAME);
        free(dst);
    }
    for (int i = 0; i < st.n_meta; i++)
        if (nn_st_meta(&st, st.meta_keys[i]) != st.meta_values[i]) __builtin_trap(); /* keys are unique */
    nn_st_free(&st);
    return 0;
}
