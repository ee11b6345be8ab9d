/* Embeddings: token ids in, vectors out, and the way back.
 *   embed(D)   token ids -> vectors, as torch.nn.Embedding:
 *              [T] ids in [0, V) -> [T, D]    embedN.weight [V, D] ~ N(0, 1) as PyTorch starts it
 *   posembed   learned absolute positions (GPT's wpe), nn.Embedding(context, D) added:
 *              [T, D] -> [T, D] + P[0..T)      posN.weight [context, D] ~ N(0, 0.02)
 *              The context is the model's longest input (in_shape[0], from
 *              the training run's --context); a longer input is refused.
 *   unembed    scores over the vocabulary from the first embed's own matrix
 *              E [V, D] (tied, as GPT-2 and nanoGPT tie lm_head to wte):
 *              [T, D] -> [T, V], logits = h E^T
 *              One tensor, stored once (embedN.weight); its gradient sums the
 *              lookup's and the output's. */
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

/* ---- posembed ---- */

static int sequence_only(const nn_layer *l, const char *where, const char *does) {
    char in[48];
    return nn_error("%s: %s a sequence [T, D], but its input is %s", where, does,
                    layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
}

static int posembed_infer(nn_layer *l, const char *where) {
    if (l->in_ndim != 2) return sequence_only(l, where, "adds positions to");
    if (l->in_shape[0] < 1)
        return nn_error("%s: needs the model's context, the longest sequence it takes (a language model's "
                        "--context)", where);
    return 0;
}

static int posembed_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    out[WEIGHT] = (layer_tensor){"weight", 2, {l->in_shape[0], l->in_shape[1]}, .learned = true, .decay = true};
    return 1;
}

/* GPT-2's N(0, 0.02) rather than nn.Embedding's N(0, 1): positions that
 * start as large as the tokens' vectors would drown them. */
static void posembed_init(nn_layer *l, nn_rng *rng) { nn_init_normal(l->tensors[WEIGHT], 0.0f, 0.02f, rng); }

/* With a carried state the tokens continue a sequence: their positions
 * start at run->past. */
static nn_tensor *posembed_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    return nn_add_positions_at(run->ctx, x, l->tensors[WEIGHT], run->past);
}

const nn_layer_kind layer_posembed = {
    .name = "posembed",
    .prefix = "pos",
    .needs_context = true,
    .infer = posembed_infer,
    .tensors = posembed_tensors,
    .init = posembed_init,
    .forward = posembed_forward,
};

/* ---- unembed ---- */

static int unembed_infer(nn_layer *l, const char *where) {
    if (!l->tied) return nn_error("%s: uses the matrix of a text model's first layer, embed(D), which this model "
                                  "does not start with", where);
    if (l->in_ndim != 2) return sequence_only(l, where, "scores");
    if (l->in_shape[1] != l->tied->out)
        return nn_error("%s: its input has %d features, but the embedding's vectors have %d", where, l->in_shape[1],
                        l->tied->out);
    l->out_shape[1] = l->tied->vocab;
    return 0;
}

/* The matrix is both the input's table and the output layer: GPT-2 starts
 * it N(0, 0.02), so that the first scores are small (embed's N(0, 1) would
 * make them sqrt(D) wide after the final LayerNorm). */
static void unembed_init(nn_layer *l, nn_rng *rng) {
    nn_init_normal(l->tied->tensors[WEIGHT], 0.0f, 0.02f, rng);
}

/* logits = h E^T: a linear layer whose weight is E [V, D], without bias. */
static nn_tensor *unembed_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    int B = x->shape[0], T = x->shape[1];
    nn_tensor *E = l->tied->tensors[WEIGHT];
    nn_tensor *rows = nn_reshape(run->ctx, x, 2, (int[]){B * T, x->shape[2]});
    return nn_reshape(run->ctx, nn_linear(run->ctx, rows, E, NULL), 3, (int[]){B, T, E->shape[0]});
}

const nn_layer_kind layer_unembed = {
    .name = "unembed",
    .ties_embedding = true,
    .infer = unembed_infer,
    .init = unembed_init,
    .forward = unembed_forward,
};
