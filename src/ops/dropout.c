/* Inverted dropout (Srivastava et al. 2014, scaled at training time so that
 * evaluation needs no change):
 *   y = x * m / (1 - p), m_i ~ Bernoulli(1 - p)
 *   dx += dy * m / (1 - p)
 * The mask is drawn from the caller's seeded generator, so a run repeats:
 * element i gets the generator's i-th draw. Chunks of the mask are drawn in
 * parallel, each from a copy of the generator advanced to its first element,
 * which gives the same bits as one thread drawing them in order. */
#include <stdint.h>

#include "ops/ops.h"

#define DROPOUT_CHUNK 16384

/* The mask, and with x, out = x * mask * keep_scale in the same pass. */
static void draw(uint8_t *mask, size_t n, float p, nn_rng *rng, const float *x, float keep_scale, float *out) {
    /* Compare 24-bit integers: the same draw as nn_rng_uniform(rng) < p. */
    uint32_t threshold = (uint32_t)(p * 16777216.0f);
    size_t chunks = (n + DROPOUT_CHUNK - 1) / DROPOUT_CHUNK;
    const nn_rng start = *rng;
#pragma omp parallel for if (n > NN_PARALLEL_MIN)
    for (size_t c = 0; c < chunks; c++) {
        nn_rng r = start;
        nn_rng_advance(&r, c * DROPOUT_CHUNK);
        size_t end = (c + 1) * DROPOUT_CHUNK < n ? (c + 1) * DROPOUT_CHUNK : n;
        if (x)
            for (size_t i = c * DROPOUT_CHUNK; i < end; i++) {
                mask[i] = (nn_rng_u32(&r) >> 8) >= threshold;
                out[i] = mask[i] ? x[i] * keep_scale : 0.0f;
            }
        else
            for (size_t i = c * DROPOUT_CHUNK; i < end; i++) mask[i] = (nn_rng_u32(&r) >> 8) >= threshold;
    }
    nn_rng_advance(rng, n);
}

void nn_dropout_mask(uint8_t *mask, size_t n, float p, nn_rng *rng) { draw(mask, n, p, rng, NULL, 0.0f, NULL); }

nn_tensor *nn_dropout(nn_ctx *ctx, nn_tensor *a, float p, nn_rng *rng) {
    nn_check_live(ctx, a, "dropout");
    NN_CHECK(p >= 0.0f && p < 1.0f, "dropout: probability %g not in [0, 1)", p);
    if (!ctx->training || p == 0.0f) return a;
    NN_CHECK(rng != NULL, "dropout: training mode needs a random generator");
    nn_tensor *y = nn_op_output(ctx, a->ndim, a->shape, &a, 1);
    uint8_t *mask = nn_arena_alloc(ctx, a->size);
    float keep_scale = 1.0f / (1.0f - p);
    draw(mask, a->size, p, rng, a->data, keep_scale, y->data);
    nn_node *node = nn_record(ctx, NN_OP_DROPOUT, y, &a, 1);
    if (node) {
        node->saved = mask;
        node->attr = keep_scale;
    }
    return y;
}

void nn_dropout_backward(nn_node *n) {
    const uint8_t *mask = n->saved;
    float *dx = n->in[0]->grad;
    const float *dy = n->out->grad;
    if (!dx) return;
    size_t len = n->out->size;
    float scale = n->attr;
    if (nn_node_fresh(n, 0)) {
#pragma omp parallel for simd if (parallel : len > NN_PARALLEL_MIN)
        for (size_t i = 0; i < len; i++) dx[i] = mask[i] ? dy[i] * scale : 0.0f;
    } else {
#pragma omp parallel for simd if (parallel : len > NN_PARALLEL_MIN)
        for (size_t i = 0; i < len; i++) dx[i] += mask[i] ? dy[i] * scale : 0.0f;
    }
}
