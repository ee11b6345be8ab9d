/* What a text model's attention layers attend to over one sequence, for a
 * learner to look at (nn generate --attention draws it): per layer and head
 * the weights P = softmax(Q K^T / sqrt(hd)) with the layer's mask, [T, T].
 *
 * The fused op (ops/attention.c) never stores P: it keeps each row's
 * log-sum-exp and the backward recomputes P, so that no T x T block goes out
 * to memory during training. Rather than give that hot path a second output
 * for a picture, P is recomputed here, in double, from the layer's own input
 * x (in a GPT the layernormed residual stream): Q and K are the first two
 * thirds of its QKV projection x W_in^T + b_in. To reach x, the model's
 * forward runs on a shallow copy of its layer stack in which each attention
 * layer's kind is a wrapper that computes P and then runs the real attention
 * forward: the forward loop (blocks, fused runs) is the model's own, and the
 * model itself is not touched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "layers/layers.h"
#include "nn/model.h"

/* An attention layer's kind, with where its weights go. */
typedef struct tap {
    nn_layer_kind kind; /* first member: the copied layer's kind points at the tap */
    nn_attention_map *map;
} tap;

/* P of every head from the layer's input x [1, T, D] into map->weights. */
static void attention_weights(const nn_layer *l, const nn_tensor *x, nn_attention_map *map) {
    int T = x->shape[1], D = x->shape[2], H = l->heads, hd = D / H;
    const float *w = nn_layer_tensor(l, "in_proj_weight")->data; /* [3D, D]: W_q, W_k, W_v stacked */
    const nn_tensor *bias = l->bias ? nn_layer_tensor(l, "in_proj_bias") : NULL;
    double *qk = nn_xmalloc((size_t)T * 2 * D * sizeof *qk); /* row t: q_t | k_t */
    for (int t = 0; t < T; t++) {
        const float *xt = x->data + (size_t)t * D;
        for (int c = 0; c < 2 * D; c++) {
            double sum = bias ? bias->data[c] : 0.0;
            for (int d = 0; d < D; d++) sum += (double)xt[d] * w[(size_t)c * D + d];
            qk[(size_t)t * 2 * D + c] = sum;
        }
    }
    double scale = 1.0 / sqrt((double)hd), *s = nn_xmalloc((size_t)T * sizeof *s);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
            const double *q = qk + (size_t)i * 2 * D + h * hd;
            int seen = l->causal ? i + 1 : T; /* keys j < seen; the others are masked: weight 0 */
            double max = -INFINITY, total = 0.0;
            for (int j = 0; j < seen; j++) {
                const double *k = qk + (size_t)j * 2 * D + D + h * hd;
                double dot = 0.0;
                for (int e = 0; e < hd; e++) dot += q[e] * k[e];
                s[j] = scale * dot;
                if (s[j] > max) max = s[j];
            }
            for (int j = 0; j < seen; j++) total += s[j] = exp(s[j] - max);
            float *row = map->weights + ((size_t)h * T + i) * T;
            for (int j = 0; j < T; j++) row[j] = j < seen ? (float)(s[j] / total) : 0.0f;
        }
    free(s);
    free(qk);
}

static nn_tensor *tap_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    const tap *t = (const tap *)l->kind;
    attention_weights(l, x, t->map);
    return layer_attention.forward(l, run, x);
}

int nn_model_attention_maps(const nn_model *m, const int *ids, int T, nn_attention_map **maps) {
    *maps = NULL;
    if (m->vocab == 0) return nn_error("'%s' is not a text model: attention weights are over token ids", m->spec);
    if (T < 1) return nn_error("attention weights of %d tokens: the sequence is empty", T);
    if (m->in_shape[0] && T > m->in_shape[0])
        return nn_error("%d tokens, but '%s' has learned positions for at most %d (its context)", T, m->spec,
                        m->in_shape[0]);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= m->vocab)
            return nn_error("token id %d (position %d) is not in [0, %d)", ids[t], t, m->vocab);
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) n += m->layers[i].kind == &layer_attention;
    if (n == 0) return 0;

    nn_attention_map *out = nn_xcalloc((size_t)n, sizeof *out);
    tap *taps = nn_xcalloc((size_t)n, sizeof *taps);
    nn_layer *copy = nn_xmalloc((size_t)m->n_layers * sizeof *copy);
    memcpy(copy, m->layers, (size_t)m->n_layers * sizeof *copy);
    for (int i = 0, k = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        if (l->kind != &layer_attention) continue;
        out[k] = (nn_attention_map){.layer = i, .name = l->name, .heads = l->heads, .T = T, .causal = l->causal != 0,
                                    .weights = nn_xmalloc((size_t)l->heads * T * T * sizeof(float))};
        taps[k].kind = layer_attention;
        taps[k].kind.forward = tap_forward;
        taps[k].map = &out[k];
        copy[i].kind = &taps[k].kind;
        k++;
    }
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    const layer_run run = {.ctx = ctx, .ids = ids, .B = 1, .T = T};
    layers_forward(copy, m->n_layers, &run, NULL);
    nn_ctx_free(ctx);
    free(copy);
    free(taps);
    *maps = out;
    return n;
}

void nn_attention_maps_free(nn_attention_map *maps, int n) {
    for (int k = 0; maps && k < n; k++) free(maps[k].weights);
    free(maps);
}
