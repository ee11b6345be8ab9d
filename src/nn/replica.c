/* Replicas of a model (replica.h): the layer stack copied with each learned
 * tensor swapped for a twin that shares its data and has its own gradient. */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "layers/layers.h"
#include "nn/replica.h"

bool replica_supported(const nn_model *m) { return m->state.n == 0; }

bool replica_pays(const nn_model *m) {
    if (!replica_supported(m)) return false;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind->state_vectors > 0) return false;
    return true;
}

/* The index of t among m's learned tensors. */
static int param_index(const nn_model *m, const nn_tensor *t) {
    for (int k = 0; k < m->params.n; k++)
        if (m->params.tensors[k] == t) return k;
    nn_fatal("replica: layer tensor '%s' is not one of the model's parameters", t->name ? t->name : "?");
}

void replica_init(nn_model *r, const nn_model *m, float *grad) {
    NN_CHECK(replica_supported(m), "replica: '%s' keeps running statistics", m->spec);
    const nn_params *p = &m->params;
    *r = *m;
    memset(&r->state, 0, sizeof r->state);
    r->params.grad = grad;
    r->params.tensors = nn_xmalloc((size_t)(p->n ? p->n : 1) * sizeof *r->params.tensors);
    for (int k = 0; k < p->n; k++) {
        nn_tensor *twin = nn_xmalloc(sizeof *twin);
        *twin = *p->tensors[k];
        twin->grad = grad + (p->tensors[k]->grad - p->grad);
        r->params.tensors[k] = twin;
    }
    r->params.cap = p->n;
    r->layers = nn_xmalloc((size_t)m->n_layers * sizeof *r->layers);
    for (int i = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        nn_layer *c = &r->layers[i];
        *c = *l;
        if (l->tied) c->tied = r->layers + (l->tied - m->layers);
        c->tensors = l->n_tensors ? nn_xmalloc((size_t)l->n_tensors * sizeof *c->tensors) : NULL;
        for (int k = 0; k < l->n_tensors; k++) c->tensors[k] = r->params.tensors[param_index(m, l->tensors[k])];
    }
}

void replica_free(nn_model *r) {
    for (int i = 0; i < r->n_layers; i++) free(r->layers[i].tensors);
    free(r->layers);
    for (int k = 0; k < r->params.n; k++) free(r->params.tensors[k]);
    free(r->params.tensors);
    memset(r, 0, sizeof *r);
}
