/* Multi-head self-attention over a sequence, as torch.nn.MultiheadAttention
 * (batch_first) attending from x to itself:
 *   attention(HEADS[,causal=1|0][,bias=1|0])    [T, D] -> [T, D]
 *   qkv = x W_in^T + b_in                 [T, 3D]   attnN.in_proj_weight [3D, D], attnN.in_proj_bias [3D]
 *   a   = attention(qkv)                  [T, D]    HEADS heads of D / HEADS (ops/attention.c)
 *   y   = a W_out^T + b_out               [T, D]    attnN.out_proj.weight [D, D], attnN.out_proj.bias [D]
 * causal=1 (the default, a language model's) lets position i see positions
 * 0..i only; causal=0 (an encoder's) lets it see every real position. Padding
 * (a batch's shorter sequences, run->lengths) is never seen. bias=0 leaves
 * out both biases (nanoGPT's bias=False). W_in stacks W_q, W_k, W_v as
 * PyTorch's in_proj_weight and GPT-2's c_attn (transposed there) do. */
#include "layers/layers.h"

static int attention_infer(nn_layer *l, const char *where) {
    if (l->in_ndim != 2) {
        char in[48];
        return nn_error("%s: attends over a sequence [T, D], but its input is %s (put embed(D) first)", where,
                        layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    if (l->in_shape[1] % l->heads != 0)
        return nn_error("%s: %d features do not split into %d heads (D must be a multiple of the heads)", where,
                        l->in_shape[1], l->heads);
    return 0;
}

/* Where each tensor is in l->tensors: the biases only when there are any. */
static int in_weight(const nn_layer *l) { return 0; }
static int out_weight(const nn_layer *l) { return l->bias ? 2 : 1; }

static int attention_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    int D = l->in_shape[1], n = 0;
    out[n++] = (layer_tensor){"in_proj_weight", 2, {3 * D, D}, .learned = true, .decay = true};
    if (l->bias) out[n++] = (layer_tensor){"in_proj_bias", 1, {3 * D}, .learned = true};
    out[n++] = (layer_tensor){"out_proj.weight", 2, {D, D}, .learned = true, .decay = true};
    if (l->bias) out[n++] = (layer_tensor){"out_proj.bias", 1, {D}, .learned = true};
    return n;
}

/* As MultiheadAttention starts: in_proj_weight Xavier-uniform over [3D, D],
 * out_proj.weight nn.Linear's U(-1/sqrt(D), 1/sqrt(D)), biases 0. */
static void attention_init(nn_layer *l, nn_rng *rng) {
    int D = l->in_shape[1];
    nn_init_xavier_uniform(l->tensors[in_weight(l)], D, 3 * D, rng);
    nn_init_uniform_fan_in(l->tensors[out_weight(l)], D, rng);
}

/* [B, T, D] through the projections as [B*T, D] rows (views, no copies).
 * With a carried state (generation) the T tokens continue the positions in
 * the layer's KV cache and attend to them (nn_attention_cached). */
static nn_tensor *attention_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    nn_ctx *ctx = run->ctx;
    int B = x->shape[0], T = x->shape[1], D = x->shape[2];
    nn_kv_cache *cache = run->caches ? &run->caches[l - run->layers] : NULL;
    NN_CHECK(!cache || l->causal, "%s: attention(causal=0) sees later tokens, so it cannot continue a sequence from "
             "a carried state (generation)", l->name);
    nn_tensor *b_in = l->bias ? l->tensors[in_weight(l) + 1] : NULL, *b_out = l->bias ? l->tensors[out_weight(l) + 1] : NULL;
    nn_tensor *rows = nn_reshape(ctx, x, 2, (int[]){B * T, D});
    nn_tensor *qkv = nn_reshape(ctx, nn_linear(ctx, rows, l->tensors[in_weight(l)], b_in), 3, (int[]){B, T, 3 * D});
    nn_tensor *a = cache ? nn_attention_cached(ctx, qkv, l->heads, cache->keys, cache->values, cache->capacity,
                                               run->past)
                         : nn_attention(ctx, qkv, l->heads, l->causal != 0, run->lengths);
    if (a->node >= 0) { /* on a tape: the graph (nn_graph_write_dot) shows the layer, its heads and mask */
        enum { LABEL = 96 };
        char *label = nn_arena_alloc(ctx, LABEL);
        snprintf(label, LABEL, "%s: %d head%s, %s", l->name, l->heads, l->heads > 1 ? "s" : "",
                 l->causal ? "causal mask" : "no causal mask");
        a->name = label;
    }
    nn_tensor *y = nn_linear(ctx, nn_reshape(ctx, a, 2, (int[]){B * T, D}), l->tensors[out_weight(l)], b_out);
    return nn_reshape(ctx, y, 3, (int[]){B, T, D});
}

const nn_layer_kind layer_attention = {
    .name = "attention",
    .prefix = "attn",
    .example = "attention(4)",
    .n_args = 3,
    .args = {{"heads", true, true, 0, 1, 1024, offsetof(nn_layer, heads)},
             {"causal", true, false, 1, 0, 1, offsetof(nn_layer, causal)},
             {"bias", true, false, 1, 0, 1, offsetof(nn_layer, bias)}},
    .caches_keys = true,
    .infer = attention_infer,
    .tensors = attention_tensors,
    .init = attention_init,
    .forward = attention_forward,
};
