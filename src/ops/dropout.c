/* Inverted dropout (Srivastava et al. 2014, scaled at training time so that
 * evaluation needs no change):
 *   y = x * m / (1 - p), m_i ~ Bernoulli(1 - p)
 *   dx += dy * m / (1 - p)
 * The mask is drawn from the caller's seeded generator, so a run repeats. */
#include <stdint.h>

#include "ops/ops.h"

nn_tensor *nn_dropout(nn_ctx *ctx, nn_tensor *a, float p, nn_rng *rng) {
    nn_check_live(ctx, a, "dropout");
    NN_CHECK(p >= 0.0f && p < 1.0f, "dropout: probability %g not in [0, 1)", p);
    if (!ctx->training || p == 0.0f) return a;
    NN_CHECK(rng != NULL, "dropout: training mode needs a random generator");
    nn_tensor *y = nn_op_output(ctx, a->ndim, a->shape, &a, 1);
    uint8_t *mask = nn_arena_alloc(ctx, a->size);
    float keep_scale = 1.0f / (1.0f - p);
    /* Compare 24-bit integers: the same draw as nn_rng_uniform(rng) < p. */
    uint32_t threshold = (uint32_t)(p * 16777216.0f);
    for (size_t i = 0; i < a->size; i++) {
        mask[i] = (nn_rng_u32(rng) >> 8) >= threshold;
        y->data[i] = mask[i] ? a->data[i] * keep_scale : 0.0f;
    }
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
    for (size_t i = 0; i < n->out->size; i++) dx[i] += mask[i] ? dy[i] * n->attr : 0.0f;
}
