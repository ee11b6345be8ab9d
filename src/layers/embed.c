/* embed(D): token ids -> vectors, as torch.nn.Embedding.
 *   [T] ids in [0, V) -> [T, D]    embedN.weight [V, D] ~ N(0, 1) as PyTorch starts it */
#include "layers/layers.h"

enum { WEIGHT };

static int embed_infer(nn_layer *l, const char *where) {
    if (!l->vocab) return nn_error("%s: takes token ids, so it comes first in a text model", where);
    l->out_ndim = 2;
    l->out_shape[0] = l->in_shape[0];
    l->out_shape[1] = l->out;
    return 0;
}

static int embed_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    out[WEIGHT] = (layer_tensor){"weight", 2, {l->vocab, l->out}, .learned = true, .decay = true};
    return 1;
}

static void embed_init(nn_layer *l, nn_rng *rng) { nn_init_normal(l->tensors[WEIGHT], 0.0f, 1.0f, rng); }

static nn_tensor *embed_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_embedding(run->ctx, l->tensors[WEIGHT], run->ids, run->B, run->T);
}

const nn_layer_kind layer_embed = {
    .name = "embed",
    .prefix = "embed",
    .example = "embed(64)",
    .n_args = 1,
    .args = {{"dim", true, true, 0, 1, 65536, offsetof(nn_layer, out)}},
    .takes_tokens = true,
    .infer = embed_infer,
    .tensors = embed_tensors,
    .init = embed_init,
    .forward = embed_forward,
};
