/* Weight averaging: an exponential moving average of the parameters. The
 * average moves less from step to step than the weights the optimiser
 * updates, so it sits nearer the middle of the region they wander in, which
 * tends to generalise a little better than any single point of it. */
#include <stdlib.h>
#include <string.h>

#include "nn/optim.h"
#include "core/util.h"

#define EMA_PARALLEL_MIN 65536

void nn_ema_init(nn_ema *e, const nn_params *p, float decay) {
    NN_CHECK(decay >= 0.0f && decay < 1.0f, "ema: decay %g not in [0, 1)", decay);
    e->decay = decay;
    e->count = p->count;
    e->updates = 0;
    e->avg = nn_xmalloc(p->count * sizeof(float));
    memcpy(e->avg, p->data, p->count * sizeof(float));
}

void nn_ema_free(nn_ema *e) {
    free(e->avg);
    e->avg = NULL;
}

void nn_ema_update(nn_ema *e, const nn_params *p) {
    NN_CHECK(p->count == e->count, "ema: %zu parameters, average of %zu", p->count, e->count);
    float ramp = (1.0f + (float)e->updates) / (10.0f + (float)e->updates);
    float d = e->decay < ramp ? e->decay : ramp, w = 1.0f - d;
    float *restrict avg = e->avg;
    const float *restrict x = p->data;
    size_t n = e->count;
#pragma omp parallel for simd if (parallel : n > EMA_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) avg[i] = d * avg[i] + w * x[i];
    e->updates++;
}

void nn_ema_swap(nn_ema *e, nn_params *p) {
    NN_CHECK(p->count == e->count, "ema: %zu parameters, average of %zu", p->count, e->count);
    float *restrict a = e->avg, *restrict x = p->data;
    size_t n = e->count;
    for (size_t i = 0; i < n; i++) {
        float t = a[i];
        a[i] = x[i];
        x[i] = t;
    }
}
