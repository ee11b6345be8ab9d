/* Datasets of MNIST-style images: loading the IDX files, and serving them as
 * normalised mini-batches.
 *
 * A dataset is the pair of IDX files of one split ("train" or "t10k"), raw or
 * gzipped: <split>-images-idx3-ubyte (magic 2051: count x rows x cols bytes)
 * and <split>-labels-idx1-ubyte (magic 2049: count bytes, each a class in
 * 0..NN_DATA_CLASSES-1). Every header field, the file sizes and every label
 * are checked before the data is used; a bad file gives -1 and a one-line
 * error naming the file (see nn/error.h). */
#ifndef NN_DATA_H
#define NN_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "nn/rng.h"
#include "nn/api.h"

NN_BEGIN_DECLS

#define NN_DATA_CLASSES 10         /* labels must be in 0..9 */
#define NN_DATA_MAX_COUNT 10000000 /* examples per file */
#define NN_DATA_MAX_SIDE 1024      /* rows and cols */

typedef struct nn_dataset {
    int n, rows, cols;
    uint8_t *images; /* n * rows * cols pixels, example after example, row-major */
    uint8_t *labels; /* n classes */
} nn_dataset;

/* Loads an images file and a labels file (each raw or gzipped, told apart by
 * content) and checks that they hold the same number of examples. On failure
 * *out is left empty. Returns 0 or -1. */
int nn_dataset_load_files(nn_dataset *out, const char *images_path, const char *labels_path);

/* Loads split `split` ("train" or "t10k") from folder `dir`: for each file the
 * raw name is tried first, then the name with ".gz". Returns 0 or -1; when a
 * file exists under neither name the error is "<dir>/<name>: not found (nor
 * <name>.gz)". */
int nn_dataset_load(nn_dataset *out, const char *dir, const char *split);

/* Writes the dataset as raw IDX files <dir>/<split>-images-idx3-ubyte and
 * <dir>/<split>-labels-idx1-ubyte, each atomically. For tests and tools that
 * need a small dataset on disk. Returns 0 or -1. */
int nn_dataset_save(const nn_dataset *d, const char *dir, const char *split);

/* Frees the arrays and leaves an empty dataset; safe on an empty one. */
void nn_dataset_free(nn_dataset *d);

/* Keeps the first n examples (n >= 0; n >= d->n changes nothing). */
void nn_dataset_limit(nn_dataset *d, int n);

/* Moves the last n_val examples of d into a new dataset *val, e.g. to hold out
 * a validation set. Fails (-1, nothing changed) unless 1 <= n_val < d->n. */
int nn_dataset_split(nn_dataset *d, int n_val, nn_dataset *val);

/* Mean and (population) standard deviation of all pixels scaled to [0, 1],
 * computed in double. An empty dataset gives 0 and 0. */
void nn_dataset_mean_std(const nn_dataset *d, float *mean, float *std);

/* Serves a dataset in mini-batches: each pixel p becomes (p/255 - mean)/std.
 * Usage:
 *     nn_loader_init(&l, &ds, 64, true, seed, mean, std);
 *     for each epoch: nn_loader_start_epoch(&l);
 *                     while ((n = nn_loader_next(&l, x, y)) > 0) ...
 *     nn_loader_free(&l);
 * The loader only reads the dataset, which must outlive it. */
typedef struct nn_loader {
    const nn_dataset *ds;
    int batch_size;
    bool shuffle;
    nn_rng rng;      /* drives the shuffles, one per epoch */
    int *order;      /* the epoch's example indices, ds->n of them */
    int pos;         /* next position in order */
    float mean, std; /* the normalisation in use */
    float lut[256];  /* byte -> normalised value */
} nn_loader;

/* std <= 0 (a constant dataset) is treated as 1 so values stay finite. */
void nn_loader_init(nn_loader *l, const nn_dataset *ds, int batch_size, bool shuffle,
                    uint64_t seed, float mean, float std);
/* Starts an epoch; call it before each one, the first included. With shuffle
 * on, every epoch gets a fresh permutation; the sequence of permutations
 * depends only on the seed. Without shuffle the order is 0..n-1. */
void nn_loader_start_epoch(nn_loader *l);
/* Fills x [batch_size, rows*cols] and y [batch_size] with the next examples.
 * Returns how many it wrote: batch_size, fewer for the epoch's last batch, 0
 * once the epoch is over. */
int nn_loader_next(nn_loader *l, float *x, int *y);
/* Number of batches in one epoch (the last may be partial). */
int nn_loader_num_batches(const nn_loader *l);
void nn_loader_free(nn_loader *l);

NN_END_DECLS

#endif
