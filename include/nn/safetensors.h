/* safetensors checkpoints (https://huggingface.co/docs/safetensors).
 *
 * File layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * (possibly padded with trailing spaces), then the data section holding the raw
 * little-endian tensor bytes. The JSON object maps each tensor name to
 * {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} (offsets
 * relative to the data section) plus an optional "__metadata__" object of
 * string values.
 *
 * Loading validates the whole file up front, so later accessors cannot read
 * outside the buffer. Like the reference implementation, the tensors must
 * cover the data section exactly: gaps, overlaps and trailing bytes are errors.
 * Every dtype of the format is parsed (sizes known); nn_st_read_f32 reads
 * F32, F16, BF16, F64 and the integer types into floats. */
#ifndef NN_SAFETENSORS_H
#define NN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/api.h"

NN_BEGIN_DECLS

#define NN_ST_MAX_DIMS 8

typedef struct nn_st_tensor {
    char *name;
    char dtype[8];                  /* "F32", "BF16", "F8_E4M3", ... */
    int ndim;                       /* 0 for a scalar */
    int64_t shape[NN_ST_MAX_DIMS];
    size_t offset, nbytes;          /* byte range within the data section */
} nn_st_tensor;

typedef struct nn_safetensors {
    unsigned char *buf;             /* the whole file */
    size_t len;
    const unsigned char *data;      /* data section, inside buf */
    size_t data_len;
    int n_tensors;
    nn_st_tensor *tensors;          /* in header order */
    int n_meta;
    char **meta_keys;
    char **meta_values;
    char *path;                     /* used to prefix error messages */
} nn_safetensors;

/* Reads and validates a whole file. Returns 0, or -1 with the error set
 * ("PATH: what is wrong") and *st zeroed. */
int nn_st_load(nn_safetensors *st, const char *path);

/* The same from memory: buf is copied; name_for_errors prefixes messages. */
int nn_st_parse(nn_safetensors *st, const unsigned char *buf, size_t len,
                const char *name_for_errors);

/* The tensor called `name`, or NULL. */
const nn_st_tensor *nn_st_find(const nn_safetensors *st, const char *name);

/* The metadata value for `key`, or NULL if absent. */
const char *nn_st_meta(const nn_safetensors *st, const char *key);

/* Copies the tensor `name` into dst as floats after checking that it exists
 * and has exactly the expected shape (ndim dims); a transposed weight is
 * refused even though its element count matches (the error names the tensor
 * and both shapes). The dtype may be
 *   F32, or F16 and BF16 (every value is a float: exact);
 *   F64, rounded to the nearest float (as PyTorch's .float()); a finite value
 *     beyond float32's range is refused;
 *   I8, I16, I32, I64, U8, U16, U32, U64: a count, such as PyTorch's int64
 *     BatchNorm num_batches_tracked; every value must be exact as a float
 *     (|v| <= 2^24), else the error names the tensor, the value and its index.
 * BOOL and the F8 types are refused. Returns 0 or -1 with the error set (dst
 * may then be partly written). */
int nn_st_read_f32(const nn_safetensors *st, const char *name, int ndim, const int64_t *shape,
                   float *dst);

/* Frees everything and zeroes *st; harmless on a zeroed struct. */
void nn_st_free(nn_safetensors *st);

typedef struct nn_st_entry {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;              /* product(shape) floats */
} nn_st_entry;

/* Writes F32 tensors (laid out in the order given, no gaps) and string
 * metadata, atomically: the file is built in memory and handed to
 * nn_write_file_atomic, so an existing file is replaced whole or not at all.
 * The header is padded with spaces so the data section is 8-byte aligned.
 * Returns 0 or -1 with the error set. */
int nn_st_save(const char *path, const nn_st_entry *tensors, int n_tensors,
               const char *const *meta_keys, const char *const *meta_values, int n_meta);

NN_END_DECLS

#endif
