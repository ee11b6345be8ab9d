/* Generation: a text model run one token at a time with its state carried
 * from call to call (recurrent layers' h and c, attention layers' KV caches:
 * no recomputing the prefix), and the next
 * token drawn from its scores: greedy, or softmax with a temperature,
 * optionally over the k most probable tokens only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "layers/layers.h"
#include "nn/model.h"
#include "ops/ops.h"

void nn_model_state_init(nn_model_state *s, const nn_model *m, int B) {
    NN_CHECK(B >= 1, "nn_model_state_init: batch %d", B);
    memset(s, 0, sizeof *s);
    s->B = B;
    s->n_layers = m->n_layers;
    s->context = m->vocab ? m->in_shape[0] : 0;
    s->layers = nn_xcalloc((size_t)m->n_layers, sizeof *s->layers);
    s->caches = nn_xcalloc((size_t)m->n_layers, sizeof *s->caches);
    for (int i = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        size_t n = (size_t)B * (size_t)l->out;
        if (l->kind->state_vectors >= 1) s->layers[i].h = nn_xcalloc(n, sizeof(float));
        if (l->kind->state_vectors >= 2) s->layers[i].c = nn_xcalloc(n, sizeof(float));
        if (l->kind->caches_keys) s->caches[i].dim = l->in_shape[1]; /* room made as positions come */
    }
    if (s->context) s->window = nn_xmalloc((size_t)B * (size_t)s->context * sizeof *s->window);
}

void nn_model_state_free(nn_model_state *s) {
    for (int i = 0; s->layers && i < s->n_layers; i++) {
        free(s->layers[i].h);
        free(s->layers[i].c);
        free(s->caches[i].keys);
        free(s->caches[i].values);
    }
    free(s->layers);
    free(s->caches);
    free(s->window);
    memset(s, 0, sizeof *s);
}

/* Room in every KV cache for `positions`: the context at once when the model
 * has one (it never holds more), else grown by doubling, the positions held
 * moved along (each sequence's rows are capacity apart). */
static void reserve_caches(nn_model_state *s, int positions) {
    for (int i = 0; i < s->n_layers; i++) {
        nn_kv_cache *c = &s->caches[i];
        if (!c->dim || c->capacity >= positions) continue;
        int cap = s->context ? s->context : positions > 2 * c->capacity ? positions : 2 * c->capacity;
        size_t row = (size_t)c->dim * sizeof(float);
        float *k = nn_xmalloc((size_t)s->B * (size_t)cap * row), *v = nn_xmalloc((size_t)s->B * (size_t)cap * row);
        for (int b = 0; s->steps && b < s->B; b++) {
            memcpy(k + (size_t)b * cap * c->dim, c->keys + (size_t)b * c->capacity * c->dim, (size_t)s->steps * row);
            memcpy(v + (size_t)b * cap * c->dim, c->values + (size_t)b * c->capacity * c->dim, (size_t)s->steps * row);
        }
        free(c->keys);
        free(c->values);
        c->keys = k;
        c->values = v;
        c->capacity = cap;
    }
}

/* The model on ids [B, T] at positions s->steps .. s->steps + T - 1 (all
 * within the context), continuing the state; the tokens join the window. */
static nn_tensor *forward_piece(nn_model *m, nn_ctx *ctx, nn_model_state *s, const int *ids, int T) {
    reserve_caches(s, s->steps + T);
    const layer_run run = {.ctx = ctx, .ids = ids, .B = s->B, .T = T, .layers = m->layers, .states = s->layers,
                           .caches = s->caches, .past = s->steps};
    nn_tensor *y = layers_forward(m->layers, m->n_layers, &run, NULL);
    for (int b = 0; s->window && b < s->B; b++)
        memcpy(s->window + (size_t)b * s->context + s->steps, ids + (size_t)b * T, (size_t)T * sizeof *ids);
    s->steps += T;
    return y;
}

/* A full window and one more token (next[b * stride] for sequence b): the
 * state restarts, empty, from the last context - 1 tokens and it (nanoGPT's
 * crop: positions from 0 again, so every cached key changes and the window
 * is run anew). -> the window's scores [B, context, classes]. */
static nn_tensor *forward_slid(nn_model *m, nn_ctx *ctx, nn_model_state *s, const int *next, int stride) {
    int W = s->context;
    int *ids = nn_arena_alloc(ctx, (size_t)s->B * (size_t)W * sizeof *ids);
    for (int b = 0; b < s->B; b++) {
        memcpy(ids + (size_t)b * W, s->window + (size_t)b * W + 1, (size_t)(W - 1) * sizeof *ids);
        ids[(size_t)b * W + W - 1] = next[(size_t)b * stride];
    }
    for (int i = 0; i < m->n_layers; i++) {
        size_t n = (size_t)s->B * (size_t)m->layers[i].out * sizeof(float);
        if (s->layers[i].h) memset(s->layers[i].h, 0, n);
        if (s->layers[i].c) memset(s->layers[i].c, 0, n);
    }
    s->steps = 0;
    return forward_piece(m, ctx, s, ids, W);
}

nn_tensor *nn_model_forward_state(nn_model *m, nn_ctx *ctx, nn_model_state *s, const int *ids, int T) {
    NN_CHECK(m->vocab > 0 && s->n_layers == m->n_layers, "nn_model_forward_state: not this text model's state");
    NN_CHECK(T >= 1, "nn_model_forward_state: %d tokens", T);
    NN_CHECK(!nn_training(ctx), "nn_model_forward_state: runs in evaluation mode (nn_set_training(ctx, false))");
    for (int i = 0; i < s->B * T; i++)
        NN_CHECK(ids[i] >= 0 && ids[i] < m->vocab, "nn_model_forward_state: token id %d not in [0, %d)", ids[i],
                 m->vocab);
    bool grad = nn_set_grad_enabled(ctx, false); /* the KV caches record nothing */
    int B = s->B, fit = s->context ? s->context - s->steps : T;
    if (fit >= T) {
        nn_tensor *y = forward_piece(m, ctx, s, ids, T);
        nn_set_grad_enabled(ctx, grad);
        return y;
    }
    /* Past the context: the tokens that fit continue the state, then each
     * one after them slides the window; their scores gathered into out. */
    bool per_position = layers_span_last(m->layers, m->n_layers)->out_ndim == 2;
    int C = m->classes;
    nn_tensor *out = per_position ? nn_op_output(ctx, 3, (int[]){B, T, C}, NULL, 0)
                                  : nn_op_output(ctx, 2, (int[]){B, C}, NULL, 0);
    for (int t = 0; t < T;) {
        int n = fit > 0 ? fit : 1;
        nn_arena_mark mark = nn_arena_get_mark(ctx); /* a piece's activations go once its scores are out */
        nn_tensor *y;
        if (fit > 0) {
            int *piece = nn_arena_alloc(ctx, (size_t)B * (size_t)n * sizeof *piece);
            for (int b = 0; b < B; b++)
                memcpy(piece + (size_t)b * n, ids + (size_t)b * T + t, (size_t)n * sizeof *piece);
            y = forward_piece(m, ctx, s, piece, n);
            fit = 0;
        } else {
            y = forward_slid(m, ctx, s, ids + t, T);
        }
        if (per_position) {
            int Ty = y->shape[1]; /* the piece's last n rows are tokens t .. t + n - 1 */
            for (int b = 0; b < B; b++)
                memcpy(out->data + ((size_t)b * T + t) * C, y->data + ((size_t)b * Ty + Ty - n) * C,
                       (size_t)n * C * sizeof(float));
        } else {
            memcpy(out->data, y->data, out->size * sizeof(float));
        }
        nn_arena_release(ctx, mark);
        t += n;
    }
    nn_set_grad_enabled(ctx, grad);
    return out;
}

int nn_generate(nn_model *m, const int *prompt, int n_prompt, int length, float temperature, int top_k,
                nn_rng *rng, int (*on_token)(void *user, int id), void *user) {
    NN_CHECK(m->vocab > 0 && m->classes == m->vocab, "nn_generate: '%s' is not a language model", m->spec);
    NN_CHECK(n_prompt >= 1 && length >= 0, "nn_generate: a prompt of %d tokens, %d to make", n_prompt, length);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_grad_enabled(ctx, false);
    nn_set_training(ctx, false);
    nn_model_state s;
    nn_model_state_init(&s, m, 1);
    /* The prompt in one call (only its last scores count, so of a prompt
     * longer than the context only the last window, as nanoGPT crops it);
     * then each drawn token continues the state. */
    int skip = s.context && n_prompt > s.context ? n_prompt - s.context : 0;
    const int *feed = prompt + skip;
    int n_feed = n_prompt - skip, next = 0, made = 0, stop = 0;
    while (made < length && !stop) {
        nn_ctx_reset(ctx);
        nn_tensor *logits = nn_model_forward_state(m, ctx, &s, feed, n_feed); /* [1, n_feed, V] */
        next = nn_sample_token(logits->data + (size_t)(n_feed - 1) * m->vocab, m->vocab, temperature, top_k, rng);
        made++;
        stop = on_token ? on_token(user, next) : 0;
        feed = &next;
        n_feed = 1;
    }
    nn_model_state_free(&s);
    nn_ctx_free(ctx);
    return made;
}

int nn_sample_token(const float *logits, int V, float temperature, int top_k, nn_rng *rng) {
    NN_CHECK(V >= 1 && temperature >= 0.0f && top_k >= 0, "nn_sample_token: V %d, temperature %g, top-k %d", V,
             temperature, top_k);
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (temperature == 0.0f || top_k == 1) return best;
    /* The k-th largest score is the threshold: ties with it stay in. */
    float threshold = -INFINITY;
    if (top_k > 0 && top_k < V) {
        float *sorted = nn_xmalloc((size_t)V * sizeof *sorted);
        memcpy(sorted, logits, (size_t)V * sizeof *sorted);
        for (int k = 0; k < top_k; k++) { /* partial selection: k passes, k is small */
            int m = k;
            for (int v = k + 1; v < V; v++)
                if (sorted[v] > sorted[m]) m = v;
            float t = sorted[k];
            sorted[k] = sorted[m];
            sorted[m] = t;
        }
        threshold = sorted[top_k - 1];
        free(sorted);
    }
    /* p_v = exp((z_v - z_max) / T) / sum, over the tokens kept; each
     * exponential taken once (they were most of a small model's draw) */
    double small[256], *e = V <= 256 ? small : nn_xmalloc((size_t)V * sizeof *e);
    double total = 0.0;
    for (int v = 0; v < V; v++) {
        e[v] = logits[v] >= threshold ? exp((double)(logits[v] - logits[best]) / temperature) : 0.0;
        total += e[v];
    }
    double u = nn_rng_uniform(rng) * total, acc = 0.0;
    int last = best, drawn = -1;
    for (int v = 0; v < V && drawn < 0; v++) {
        if (logits[v] < threshold) continue;
        acc += e[v];
        last = v;
        if (u < acc) drawn = v;
    }
    if (e != small) free(e);
    return drawn >= 0 ? drawn : last; /* last: u rounded up to the total */
}
