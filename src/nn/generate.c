/* Generation: a text model run one token at a time with its recurrent
 * state carried from call to call (no recomputing the prefix), and the next
 * token drawn from its scores: greedy, or softmax with a temperature,
 * optionally over the k most probable tokens only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "layers/layers.h"
#include "nn/model.h"

void nn_model_state_init(nn_model_state *s, const nn_model *m, int B) {
    NN_CHECK(B >= 1, "nn_model_state_init: batch %d", B);
    s->B = B;
    s->n_layers = m->n_layers;
    s->layers = nn_xcalloc((size_t)m->n_layers, sizeof *s->layers);
    for (int i = 0; i < m->n_layers; i++) {
        int vectors = m->layers[i].kind->state_vectors;
        size_t n = (size_t)B * (size_t)m->layers[i].out;
        if (vectors >= 1) s->layers[i].h = nn_xcalloc(n, sizeof(float));
        if (vectors >= 2) s->layers[i].c = nn_xcalloc(n, sizeof(float));
    }
}

void nn_model_state_free(nn_model_state *s) {
    for (int i = 0; s->layers && i < s->n_layers; i++) {
        free(s->layers[i].h);
        free(s->layers[i].c);
    }
    free(s->layers);
    memset(s, 0, sizeof *s);
}

nn_tensor *nn_model_forward_state(nn_model *m, nn_ctx *ctx, nn_model_state *s, const int *ids, int T) {
    NN_CHECK(m->vocab > 0 && s->n_layers == m->n_layers, "nn_model_forward_state: not this text model's state");
    NN_CHECK(T >= 1, "nn_model_forward_state: %d tokens", T);
    NN_CHECK(!nn_training(ctx), "nn_model_forward_state: runs in evaluation mode (nn_set_training(ctx, false))");
    for (int i = 0; i < s->B * T; i++)
        NN_CHECK(ids[i] >= 0 && ids[i] < m->vocab, "nn_model_forward_state: token id %d not in [0, %d)", ids[i],
                 m->vocab);
    const layer_run run = {.ctx = ctx, .ids = ids, .B = s->B, .T = T, .layers = m->layers, .states = s->layers};
    return layers_forward(m->layers, m->n_layers, &run, NULL);
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
    /* The prompt in one call; then each drawn token continues the state. */
    const int *feed = prompt;
    int n_feed = n_prompt, next = 0, made = 0, stop = 0;
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
