/* The parameter store: one buffer for all parameters, one for their
 * gradients, tensor views into both. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "core/util.h"

void nn_params_init(nn_params *p) { memset(p, 0, sizeof *p); }

void nn_params_free(nn_params *p) {
    for (int i = 0; i < p->n; i++) {
        free((char *)p->tensors[i]->name);
        free(p->tensors[i]);
    }
    free(p->tensors);
    free(p->decay);
    free(p->data);
    free(p->grad);
    memset(p, 0, sizeof *p);
}

/* Points every view at its slice after the buffers moved. */
static void rebase(nn_params *p) {
    size_t offset = 0;
    for (int i = 0; i < p->n; i++) {
        p->tensors[i]->data = p->data + offset;
        p->tensors[i]->grad = p->grad + offset;
        offset += p->tensors[i]->size;
    }
}

nn_tensor *nn_params_add(nn_params *p, const char *name, int ndim, const int *shape, bool decay) {
    NN_CHECK(nn_params_find(p, name) == NULL, "params: duplicate name '%s'", name);
    NN_CHECK(ndim >= 0 && ndim <= NN_MAX_DIMS, "params: '%s' has %d dimensions", name, ndim);
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->tensors = nn_xrealloc(p->tensors, (size_t)p->cap * sizeof *p->tensors);
        p->decay = nn_xrealloc(p->decay, (size_t)p->cap * sizeof *p->decay);
    }
    nn_tensor *t = nn_xcalloc(1, sizeof *t);
    size_t size = 1;
    for (int i = 0; i < ndim; i++) {
        NN_CHECK(shape[i] > 0, "params: '%s' dimension %d is %d", name, i, shape[i]);
        t->shape[i] = shape[i];
        size *= (size_t)shape[i];
    }
    t->ndim = ndim;
    t->size = size;
    t->role = NN_PARAM;
    t->node = -1;
    t->name = nn_xstrdup(name);
    p->tensors[p->n] = t;
    p->decay[p->n] = decay;
    p->n++;
    p->data = nn_xrealloc(p->data, (p->count + size) * sizeof(float));
    p->grad = nn_xrealloc(p->grad, (p->count + size) * sizeof(float));
    memset(p->data + p->count, 0, size * sizeof(float));
    memset(p->grad + p->count, 0, size * sizeof(float));
    p->count += size;
    rebase(p);
    return t;
}

nn_tensor *nn_params_find(nn_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->tensors[i]->name, name) == 0) return p->tensors[i];
    return NULL;
}

void nn_params_zero_grad(nn_params *p) { nn_zero_floats(p->grad, p->count); }

/* ---- initialisers ---- */

static void init_uniform(nn_tensor *t, float bound, nn_rng *rng) {
    for (size_t i = 0; i < t->size; i++) t->data[i] = (2.0f * nn_rng_uniform(rng) - 1.0f) * bound;
}

void nn_init_uniform_fan_in(nn_tensor *t, int fan_in, nn_rng *rng) {
    init_uniform(t, 1.0f / sqrtf((float)fan_in), rng);
}

void nn_init_kaiming_uniform(nn_tensor *t, int fan_in, nn_rng *rng) {
    init_uniform(t, sqrtf(6.0f / (float)fan_in), rng);
}

void nn_init_xavier_uniform(nn_tensor *t, int fan_in, int fan_out, nn_rng *rng) {
    init_uniform(t, sqrtf(6.0f / (float)(fan_in + fan_out)), rng);
}

void nn_init_normal(nn_tensor *t, float mean, float std, nn_rng *rng) {
    for (size_t i = 0; i < t->size; i++) t->data[i] = mean + std * nn_rng_normal(rng);
}

void nn_init_const(nn_tensor *t, float value) {
    for (size_t i = 0; i < t->size; i++) t->data[i] = value;
}
