/* Makes every layer of a freshly initialised model matter in a comparison
 * with another runtime (PyTorch, ONNX Runtime): PyTorch's initialisation
 * shrinks the signal layer by layer, so weights are scaled up until the
 * logits are far above the comparison's absolute tolerance, and norms get
 * non-trivial scales, shifts and running statistics. */
#ifndef NN_TESTS_PERTURB_MODEL_H
#define NN_TESTS_PERTURB_MODEL_H

#include <string.h>

#include "nn.h"

static void perturb_model(nn_model *m, nn_rng *rng) {
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        const char *kind = nn_layer_kind_name(l->kind);
        nn_tensor *w = nn_layer_tensor(l, "weight"), *b = nn_layer_tensor(l, "bias");
        if (strcmp(kind, "linear") == 0 || strcmp(kind, "conv") == 0)
            for (size_t k = 0; k < w->size; k++) w->data[k] *= i == m->n_layers - 1 ? 6.0f : 3.0f;
        if (strcmp(kind, "batchnorm") != 0 && strcmp(kind, "layernorm") != 0) continue;
        for (size_t k = 0; k < w->size; k++) {
            w->data[k] = 0.5f + nn_rng_uniform(rng);
            b->data[k] = nn_rng_uniform(rng) - 0.5f;
        }
        nn_tensor *mean = nn_layer_tensor(l, "running_mean"), *var = nn_layer_tensor(l, "running_var");
        if (!mean) continue;
        for (size_t k = 0; k < mean->size; k++) {
            mean->data[k] = 0.4f * (nn_rng_uniform(rng) - 0.5f);
            var->data[k] = 0.2f + 2.0f * nn_rng_uniform(rng);
        }
        nn_layer_tensor(l, "num_batches_tracked")->data[0] = 17.0f;
    }
}

#endif
