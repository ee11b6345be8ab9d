/* dropout(P): inverted dropout in training mode, the identity in evaluation. */
#include "layers/layers.h"

static nn_tensor *dropout_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_dropout(run->ctx, x, l->p, run->dropout_rng);
}

const nn_layer_kind layer_dropout = {
    .name = "dropout",
    .example = "dropout(0.5)",
    .n_args = 1,
    .args = {{"p", false, true, 0, 0.0, 0.95, offsetof(nn_layer, p)}},
    .forward = dropout_forward,
};
