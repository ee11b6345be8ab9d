/* Mini-batches of normalised pixels, and the statistics to normalise with. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/data.h"
#include "nn/error.h"
#include "core/util.h"

/* The shuffling stream: independent of streams the same seed drives elsewhere
 * (weight initialisation, dropout). */
#define LOADER_RNG_STREAM 0x6c6f61646572ULL /* "loader" */

void nn_dataset_mean_std(const nn_dataset *d, float *mean, float *std) {
    /* A histogram of byte values gives exact sums in one cheap pass. */
    uint64_t hist[256] = {0};
    size_t total = (size_t)d->n * (size_t)d->rows * (size_t)d->cols;
    for (size_t i = 0; i < total; i++) hist[d->images[i]]++;
    if (total == 0) {
        *mean = *std = 0.0f;
        return;
    }
    double sum = 0.0;
    for (int v = 0; v < 256; v++) sum += (double)hist[v] * (v / 255.0);
    double m = sum / (double)total, var = 0.0;
    for (int v = 0; v < 256; v++) {
        double dev = v / 255.0 - m;
        var += (double)hist[v] * dev * dev;
    }
    *mean = (float)m;
    *std = (float)sqrt(var / (double)total);
}

void nn_loader_init(nn_loader *l, const nn_dataset *ds, int batch_size, bool shuffle,
                    uint64_t seed, float mean, float std) {
    if (batch_size < 1) nn_fatal("nn_loader_init: batch size %d", batch_size);
    l->ds = ds;
    l->batch_size = batch_size;
    l->shuffle = shuffle;
    nn_rng_seed(&l->rng, seed, LOADER_RNG_STREAM);
    l->order = nn_xmalloc((size_t)ds->n * sizeof *l->order);
    l->pos = ds->n; /* no batches until the first nn_loader_start_epoch */
    l->mean = mean;
    l->std = std > 0.0f ? std : 1.0f;
    /* Computed in double, so each entry is the correctly rounded value. */
    for (int v = 0; v < 256; v++) l->lut[v] = (float)((v / 255.0 - l->mean) / l->std);
}

void nn_loader_start_epoch(nn_loader *l) {
    /* Start from 0..n-1 each time, so an epoch's order depends only on how
     * many shuffles came before it. */
    for (int i = 0; i < l->ds->n; i++) l->order[i] = i;
    if (l->shuffle) nn_rng_shuffle(&l->rng, l->order, l->ds->n);
    l->pos = 0;
}

int nn_loader_next(nn_loader *l, float *x, int *y) {
    const nn_dataset *ds = l->ds;
    int count = ds->n - l->pos < l->batch_size ? ds->n - l->pos : l->batch_size;
    size_t pixels = (size_t)ds->rows * (size_t)ds->cols;
    const float *lut = l->lut;
    /* On all threads: the step's other thread would only wait for this one. */
#pragma omp parallel for if ((size_t)count * pixels > 65536)
    for (int i = 0; i < count; i++) {
        int idx = l->order[l->pos + i];
        const uint8_t *restrict src = ds->images + (size_t)idx * pixels;
        float *restrict dst = x + (size_t)i * pixels;
        for (size_t p = 0; p < pixels; p++) dst[p] = lut[src[p]];
        y[i] = ds->labels[idx];
    }
    l->pos += count;
    return count;
}

int nn_loader_num_batches(const nn_loader *l) {
    return l->ds->n / l->batch_size + (l->ds->n % l->batch_size != 0);
}

void nn_loader_free(nn_loader *l) {
    free(l->order);
    memset(l, 0, sizeof *l);
}
