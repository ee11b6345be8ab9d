/* Batches of text for training and evaluation: random windows of a stream
 * (next-token prediction), a fixed set of validation windows, and padded
 * mini-batches of whole sequences (classification, sequence models). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "nn/core.h"
#include "nn/error.h"
#include "nn/text.h"
#include "core/util.h"

/* Independent of the streams the same seed drives elsewhere. */
#define SAMPLER_RNG_STREAM 0x77696e646f77ULL /* "window" */
#define BATCHER_RNG_STREAM 0x626174636865ULL /* "batche" */

/* Uniform in [0, n), n > 0, for counts beyond 32 bits too. */
static size_t below(nn_rng *r, size_t n) {
    if (n <= UINT32_MAX) return nn_rng_below(r, (uint32_t)n);
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased top */
    for (;;) {
        uint64_t v = (uint64_t)nn_rng_u32(r) << 32 | nn_rng_u32(r);
        if (v < limit) return (size_t)(v % n);
    }
}

static int check_windows(const nn_text_split *split, int block, const char *who) {
    if (block < 1) nn_fatal("%s: block size %d", who, block);
    if (split->n_ids < (size_t)block + 1)
        return nn_error("the text has %zu tokens, too few for a window of %d + 1", split->n_ids,
                        block);
    return 0;
}

/* x[0 .. block) = ids[start ..], y[0 .. block) = ids[start + 1 ..], with
 * NN_IGNORE_LABEL for a target that does not count: y[t] has the t + 1
 * tokens x[0 .. t] before it in the window. */
static void copy_window(const int *ids, const int *needs, size_t start, int block, int *x, int *y) {
    memcpy(x, ids + start, (size_t)block * sizeof *x);
    memcpy(y, ids + start + 1, (size_t)block * sizeof *y);
    if (needs)
        for (int t = 0; t < block; t++) {
            int k = needs[start + 1 + (size_t)t];
            if (k < 1 || k > t + 1) y[t] = NN_IGNORE_LABEL;
        }
}

void nn_text_join_lines(const nn_text_split *lines, const int *needs, nn_text_split *stream, int **stream_needs) {
    NN_CHECK(lines->lengths, "nn_text_join_lines: the split is not lines");
    *stream = (nn_text_split){.ids = nn_xmalloc((lines->n_ids + 1) * sizeof *stream->ids)};
    int *m = needs ? nn_xmalloc((lines->n_ids + 1) * sizeof *m) : NULL;
    for (int i = 0; i < lines->n_seqs; i++) {
        size_t first = lines->offsets[i];
        for (int k = i == 0 ? 0 : 1; k < lines->lengths[i]; k++) {
            if (m) m[stream->n_ids] = needs[first + (size_t)k];
            stream->ids[stream->n_ids++] = lines->ids[first + (size_t)k];
        }
    }
    if (stream_needs) *stream_needs = m;
    else free(m);
}

int nn_text_sampler_init(nn_text_sampler *s, const nn_text_split *split, int block,
                         uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (check_windows(split, block, "nn_text_sampler_init") != 0) return -1;
    s->ids = split->ids;
    s->n_ids = split->n_ids;
    s->block = block;
    nn_rng_seed(&s->rng, seed, SAMPLER_RNG_STREAM);
    return 0;
}

void nn_text_sampler_next(nn_text_sampler *s, int batch, int *x, int *y) {
    size_t starts = s->n_ids - (size_t)s->block; /* a window needs block + 1 tokens */
    for (int b = 0; b < batch; b++) {
        size_t start = below(&s->rng, starts);
        copy_window(s->ids, s->needs, start, s->block, x + (size_t)b * s->block, y + (size_t)b * s->block);
    }
}

void nn_text_sampler_free(nn_text_sampler *s) {
    memset(s, 0, sizeof *s);
}

int nn_text_windows_init(nn_text_windows *w, const nn_text_split *split, int block,
                         int max_count) {
    memset(w, 0, sizeof *w);
    if (check_windows(split, block, "nn_text_windows_init") != 0) return -1;
    size_t fit = (split->n_ids - 1) / (size_t)block; /* side by side */
    bool spread = max_count > 0 && (size_t)max_count < fit;
    if (!spread && fit > INT_MAX)
        return nn_error("the text holds %zu windows of %d, more than %d: ask for fewer", fit,
                        block, INT_MAX);
    w->ids = split->ids;
    w->block = block;
    w->count = spread ? max_count : (int)fit;
    w->starts = nn_xmalloc((size_t)w->count * sizeof *w->starts);
    if (!spread) {
        for (int k = 0; k < w->count; k++) w->starts[k] = (size_t)k * (size_t)block;
        return 0;
    }
    /* start_k = floor(k * last / (count - 1)), first 0, last at the end;
     * written as q and r so that k * last cannot overflow. */
    size_t last = split->n_ids - (size_t)block - 1;
    size_t gaps = (size_t)w->count - 1, q = gaps ? last / gaps : 0, r = gaps ? last % gaps : 0;
    for (int k = 0; k < w->count; k++)
        w->starts[k] = (size_t)k * q + (gaps ? (size_t)k * r / gaps : 0);
    return 0;
}

int nn_text_windows_batch(const nn_text_windows *w, int first, int batch, int *x, int *y) {
    if (first < 0 || batch < 0) nn_fatal("nn_text_windows_batch: first %d, batch %d", first, batch);
    int n = first >= w->count ? 0 : w->count - first < batch ? w->count - first : batch;
    for (int b = 0; b < n; b++)
        copy_window(w->ids, w->needs, w->starts[first + b], w->block, x + (size_t)b * w->block,
                    y + (size_t)b * w->block);
    return n;
}

void nn_text_windows_free(nn_text_windows *w) {
    free(w->starts);
    memset(w, 0, sizeof *w);
}

int nn_text_batcher_init(nn_text_batcher *b, const nn_text_split *split, int batch_size,
                         bool shuffle, uint64_t seed) {
    memset(b, 0, sizeof *b);
    if (batch_size < 1) nn_fatal("nn_text_batcher_init: batch size %d", batch_size);
    if (split->n_seqs < 1)
        return nn_error("the data holds no sequences to batch (a text stream is batched in "
                        "windows)");
    b->split = split;
    b->batch_size = batch_size;
    b->shuffle = shuffle;
    nn_rng_seed(&b->rng, seed, BATCHER_RNG_STREAM);
    b->order = nn_xmalloc((size_t)split->n_seqs * sizeof *b->order);
    b->pos = split->n_seqs; /* no batches until the first start_epoch */
    return 0;
}

void nn_text_batcher_start_epoch(nn_text_batcher *b) {
    /* From 0..n-1 each time, so an epoch's order depends only on how many
     * shuffles came before it. */
    for (int i = 0; i < b->split->n_seqs; i++) b->order[i] = i;
    if (b->shuffle) nn_rng_shuffle(&b->rng, b->order, b->split->n_seqs);
    b->pos = 0;
}

int nn_text_batcher_next(nn_text_batcher *b, int *ids, int *lengths, int *labels, int *width) {
    const nn_text_split *s = b->split;
    if (labels && !s->labels)
        nn_fatal("nn_text_batcher_next: labels asked of a split without them (not CLASSES)");
    int n = s->n_seqs - b->pos < b->batch_size ? s->n_seqs - b->pos : b->batch_size;
    int w = 0;
    for (int i = 0; i < n; i++) {
        int len = s->lengths[b->order[b->pos + i]];
        if (len > w) w = len;
    }
    for (int i = 0; i < n; i++) {
        int seq = b->order[b->pos + i], len = s->lengths[seq];
        int *row = ids + (size_t)i * (size_t)w;
        memcpy(row, s->ids + s->offsets[seq], (size_t)len * sizeof *row);
        for (int t = len; t < w; t++) row[t] = NN_TEXT_PAD;
        lengths[i] = len;
        if (labels) labels[i] = s->labels[seq];
    }
    b->pos += n;
    *width = w;
    return n;
}

int nn_text_batcher_num_batches(const nn_text_batcher *b) {
    int n = b->split->n_seqs;
    return n / b->batch_size + (n % b->batch_size != 0);
}

void nn_text_batcher_free(nn_text_batcher *b) {
    free(b->order);
    memset(b, 0, sizeof *b);
}
