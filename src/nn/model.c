/* The general model: a layer stack planned from a spec (shapes inferred,
 * tensors named), built into the parameter store, and run by one forward
 * loop. Everything a layer kind does comes from its entry in the kind table
 * (src/layers/); nothing here names a kind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "nn/spec.h"
#include "ops/ops.h"
#include "core/util.h"

/* Bounds that keep a few bytes of spec from asking for gigabytes. */
#define MAX_PARAMS_FLOATS (1L << 28)
#define MAX_ACTIVATION_FLOATS (1L << 22) /* per example, per layer */

static long shape_size(int ndim, const int *shape) {
    long n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* Infers the output shape of layer l (index in the stack) from its input
 * shape (a block's from its layers', planned before it); -1 with an error
 * naming the layer when it does not fit. */
static int infer(nn_layer *l, int index) {
    char text[96], where[128];
    snprintf(where, sizeof where, "layer %d, %s", index + 1, spec_layer_brief(l, text, sizeof text));
    l->out_ndim = l->in_ndim;
    memcpy(l->out_shape, l->in_shape, sizeof l->out_shape);
    if (l->kind->infer && l->kind->infer(l, where) != 0) return -1;
    if (shape_size(l->out_ndim, l->out_shape) > MAX_ACTIVATION_FLOATS)
        return nn_error("%s: its output of %ld values per image is too large", where,
                        shape_size(l->out_ndim, l->out_shape));
    return 0;
}

/* The tensors a planned layer stores (none when its kind has none). */
static int layer_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    return l->kind->tensors ? l->kind->tensors(l, out) : 0;
}

/* Learned and state floats of a layer, from its plan (the model need not be built). */
static void layer_counts(const nn_layer *l, size_t *learned, size_t *state) {
    layer_tensor t[LAYER_MAX_TENSORS];
    int n = layer_tensors(l, t);
    *learned = *state = 0;
    for (int k = 0; k < n; k++) *(t[k].learned ? learned : state) += (size_t)shape_size(t[k].ndim, t[k].shape);
}

/* Layer names: fc1, conv1, bn1, ln1, res1, ... numbered along the network
 * per kind, blocks' layers included; a layer inside a named block (a
 * residual) is named under it: res1.conv2. One pass (a repeat can make
 * many layers of a short spec). */
static void name_layers(nn_layer *layers, int n) {
    /* How many of each kind so far: kinds are few, a short list does. */
    const nn_layer_kind **kinds = nn_xmalloc((size_t)n * sizeof *kinds);
    int *counts = nn_xmalloc((size_t)n * sizeof *counts), n_kinds = 0;
    /* The blocks that hold layer i, outermost first. */
    int *open = nn_xmalloc((size_t)n * sizeof *open), depth = 0;
    for (int i = 0; i < n; i++) {
        while (depth > 0 && open[depth - 1] + layers[open[depth - 1]].n_inner < i) depth--;
        const char *prefix = layers[i].kind->prefix, *parent = NULL;
        for (int d = depth - 1; d >= 0 && !parent; d--) parent = layers[open[d]].name; /* a repeat has none */
        if (layers[i].n_inner) open[depth++] = i;
        if (!prefix) continue;
        int k = 0;
        while (k < n_kinds && kinds[k] != layers[i].kind) k++;
        if (k == n_kinds) kinds[n_kinds] = layers[i].kind, counts[n_kinds++] = 0;
        int number = ++counts[k];
        int len = snprintf(NULL, 0, "%s%s%s%d", parent ? parent : "", parent ? "." : "", prefix, number);
        layers[i].name = nn_xmalloc((size_t)len + 1);
        snprintf(layers[i].name, (size_t)len + 1, "%s%s%s%d", parent ? parent : "", parent ? "." : "", prefix, number);
    }
    free(kinds);
    free(counts);
    free(open);
}

/* Plans the n layers from index first on an input of ndim/shape (updated to
 * their output): each layer's shapes, a block's after those of the layers
 * it holds; *floats counts the parameters and state. */
static int plan_span(nn_model *m, int first, int n, int *ndim, int shape[3], size_t *floats) {
    for (int i = first; i < first + n; i += 1 + m->layers[i].n_inner) {
        nn_layer *l = &m->layers[i];
        char text[96];
        l->in_ndim = *ndim;
        memcpy(l->in_shape, shape, sizeof l->in_shape);
        l->vocab = i == 0 ? m->vocab : 0;
        if (l->kind->ties_embedding) l->tied = m->layers[0].kind->takes_tokens ? &m->layers[0] : NULL;
        if (i == 0 && m->vocab && !l->kind->takes_tokens)
            return nn_error("layer 1, %s: a text model starts with embed(D), which turns token ids into vectors",
                            spec_layer_brief(l, text, sizeof text));
        if (l->n_inner) {
            int inner_ndim = *ndim, inner_shape[3];
            memcpy(inner_shape, shape, sizeof inner_shape);
            if (plan_span(m, i + 1, l->n_inner, &inner_ndim, inner_shape, floats) != 0) return -1;
        }
        if (infer(l, i) != 0) return -1;
        *ndim = l->out_ndim;
        memcpy(shape, l->out_shape, sizeof l->out_shape);
        size_t learned, state;
        layer_counts(l, &learned, &state);
        if ((*floats += learned + state) > MAX_PARAMS_FLOATS)
            return nn_error("layer %d, %s: the model has more than %ld parameters", i + 1,
                            spec_layer_brief(l, text, sizeof text), MAX_PARAMS_FLOATS);
    }
    return 0;
}

static int plan_layers(nn_model *m, int classes) {
    int ndim = m->in_ndim, shape[3] = {m->in_shape[0], m->in_shape[1], m->in_shape[2]};
    size_t floats = 0;
    name_layers(m->layers, m->n_layers);
    if (plan_span(m, 0, m->n_layers, &ndim, shape, &floats) != 0) return -1;
    /* Class scores [classes], or for a text model scores at every position [T, classes]. */
    char out[48];
    layer_shape_str(ndim, shape, out, sizeof out);
    if (ndim != 1 && !(m->vocab && ndim == 2))
        return nn_error("the model ends in %s, not in class scores: end it with %s linear(%d)", out,
                        m->vocab ? "last and" : "flatten and", classes > 0 ? classes : 10);
    int width = shape[ndim - 1];
    if (classes > 0 && width != classes) {
        char last[96]; /* the last layer of the stack (the last a block at the end holds) */
        spec_layer_brief(&m->layers[m->n_layers - 1], last, sizeof last);
        return nn_error("layer %d, %s: the model ends in %d features but the data has %d classes", m->n_layers,
                        last, width, classes);
    }
    m->classes = width;
    return 0;
}

/* The layers of spec planned for the input m describes; a text model
 * whose layers need its context (posembed) takes at most `context` tokens. */
static int plan(nn_model *m, const char *spec, int classes, int context) {
    int n = spec_parse(spec, &m->layers);
    if (n < 0) return -1;
    m->n_layers = n;
    m->input_std = 1.0f;
    for (int i = 0; m->vocab && i < n; i++)
        if (m->layers[i].kind->needs_context) m->in_shape[0] = context;
    if (plan_layers(m, classes) != 0) {
        nn_model_free(m);
        return -1;
    }
    m->spec = spec_string(m->layers, m->n_layers);
    return 0;
}

int nn_model_plan(nn_model *m, const char *spec, const int in_shape[3], int classes) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < 3; i++)
        if (in_shape[i] < 1 || in_shape[i] > 4096)
            return nn_error("input shape [%d, %d, %d] is not an image shape", in_shape[0], in_shape[1], in_shape[2]);
    m->in_ndim = 3;
    memcpy(m->in_shape, in_shape, sizeof m->in_shape);
    return plan(m, spec, classes, 0);
}

int nn_model_plan_text_context(nn_model *m, const char *spec, int vocab, int classes, int context) {
    memset(m, 0, sizeof *m);
    if (vocab < 1 || vocab > NN_MAX_VOCAB) return nn_error("a vocabulary of %d tokens (1 to %d)", vocab, NN_MAX_VOCAB);
    if (context < 0 || context > NN_MAX_CONTEXT)
        return nn_error("a context of %d tokens (1 to %d)", context, NN_MAX_CONTEXT);
    m->in_ndim = 1; /* [T]: token ids, T 0 for any length until a layer needs the context */
    m->vocab = vocab;
    return plan(m, spec, classes, context);
}

int nn_model_plan_text(nn_model *m, const char *spec, int vocab, int classes) {
    return nn_model_plan_text_context(m, spec, vocab, classes, 0);
}

void nn_model_build(nn_model *m, nn_rng *rng) {
    nn_params_init(&m->params);
    nn_params_init(&m->state);
    /* Register everything first: the stores' buffers move while they grow;
     * the views stay where they are. */
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        layer_tensor t[LAYER_MAX_TENSORS];
        l->n_tensors = layer_tensors(l, t);
        l->tensors = l->n_tensors ? nn_xcalloc((size_t)l->n_tensors, sizeof *l->tensors) : NULL;
        for (int k = 0; k < l->n_tensors; k++) {
            char *name = layer_tensor_name(l, t[k].suffix);
            l->tensors[k] = nn_params_add(t[k].learned ? &m->params : &m->state, name, t[k].ndim, t[k].shape,
                                          t[k].decay);
            free(name);
        }
    }
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind->init) m->layers[i].kind->init(&m->layers[i], rng);
}

int nn_model_init(nn_model *m, const char *spec, const int in_shape[3], int classes, nn_rng *rng) {
    if (nn_model_plan(m, spec, in_shape, classes) != 0) return -1;
    nn_model_build(m, rng);
    return 0;
}

void nn_model_free(nn_model *m) {
    for (int i = 0; i < m->n_layers; i++) {
        free(m->layers[i].name);
        free(m->layers[i].tensors);
    }
    free(m->layers);
    free(m->spec);
    nn_params_free(&m->params);
    nn_params_free(&m->state);
    memset(m, 0, sizeof *m);
}

nn_tensor *nn_layer_tensor(const nn_layer *l, const char *suffix) {
    layer_tensor t[LAYER_MAX_TENSORS];
    int n = layer_tensors(l, t);
    for (int k = 0; k < n && k < l->n_tensors; k++)
        if (strcmp(t[k].suffix, suffix) == 0) return l->tensors[k];
    return NULL;
}

/* Evaluation touches no gradients and every image is independent: a large
 * batch runs FORWARD_CHUNK images at a time, each chunk's activations
 * released after its logits are copied out, so memory does not grow with
 * the batch. */
#define FORWARD_CHUNK 128

nn_tensor *nn_model_forward(nn_model *m, nn_ctx *ctx, nn_tensor *x, nn_rng *dropout_rng) {
    const layer_run run = {.ctx = ctx, .dropout_rng = dropout_rng};
    nn_tensor *h = x;
    if (h->ndim == 2) /* [B, C*H*W] rows, as a flat loader gives them */
        h = nn_reshape(ctx, h, 4, (int[]){h->shape[0], m->in_shape[0], m->in_shape[1], m->in_shape[2]});
    int B = h->shape[0];
    if (nn_grad_enabled(ctx) || nn_training(ctx) || B <= FORWARD_CHUNK)
        return layers_forward(m->layers, m->n_layers, &run, h);
    nn_tensor *out = nn_op_output(ctx, 2, (int[]){B, m->classes}, NULL, 0);
    size_t per_image = h->size / (size_t)B;
    for (int i = 0; i < B; i += FORWARD_CHUNK) {
        nn_arena_mark mark = nn_arena_get_mark(ctx);
        nn_tensor *chunk = nn_arena_alloc(ctx, sizeof *chunk);
        *chunk = *h;
        chunk->shape[0] = B - i < FORWARD_CHUNK ? B - i : FORWARD_CHUNK;
        chunk->data = h->data + (size_t)i * per_image;
        chunk->size = (size_t)chunk->shape[0] * per_image;
        nn_tensor *y = layers_forward(m->layers, m->n_layers, &run, chunk);
        memcpy(out->data + (size_t)i * m->classes, y->data, y->size * sizeof(float));
        nn_arena_release(ctx, mark);
    }
    return out;
}

nn_tensor *nn_model_forward_tokens(nn_model *m, nn_ctx *ctx, const int *ids, int B, int T, const int *lengths,
                                   nn_rng *dropout_rng) {
    NN_CHECK(m->vocab > 0, "nn_model_forward_tokens: '%s' is not a text model", m->spec);
    NN_CHECK(B >= 1 && T >= 1, "nn_model_forward_tokens: %d sequences of %d tokens", B, T);
    for (int i = 0; i < B * T; i++)
        NN_CHECK(ids[i] >= 0 && ids[i] < m->vocab, "nn_model_forward_tokens: token id %d not in [0, %d)", ids[i],
                 m->vocab);
    for (int b = 0; lengths && b < B; b++)
        NN_CHECK(lengths[b] >= 1 && lengths[b] <= T, "nn_model_forward_tokens: length %d not in [1, %d]", lengths[b],
                 T);
    NN_CHECK(!m->in_shape[0] || T <= m->in_shape[0],
             "nn_model_forward_tokens: %d tokens, but '%s' has learned positions for at most %d (its context)", T,
             m->spec, m->in_shape[0]);
    const layer_run run = {.ctx = ctx, .dropout_rng = dropout_rng, .ids = ids, .B = B, .T = T, .lengths = lengths};
    return layers_forward(m->layers, m->n_layers, &run, NULL);
}

int nn_model_predict(nn_model *m, nn_ctx *ctx, const float *pixels, float *probs) {
    bool grad = nn_set_grad_enabled(ctx, false), training = nn_set_training(ctx, false);
    nn_ctx_reset(ctx);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){1, m->in_shape[0], m->in_shape[1], m->in_shape[2]});
    for (size_t k = 0; k < x->size; k++) x->data[k] = (pixels[k] - m->input_mean) / m->input_std;
    const float *p = nn_softmax(ctx, nn_model_forward(m, ctx, x, NULL))->data;
    int best = 0;
    for (int k = 0; k < m->classes; k++) {
        probs[k] = p[k];
        if (p[k] > p[best]) best = k;
    }
    nn_ctx_reset(ctx);
    nn_set_grad_enabled(ctx, grad);
    nn_set_training(ctx, training);
    return best;
}

const char *nn_model_spec(const nn_model *m) { return m->spec; }

size_t nn_model_param_count(const nn_model *m) { return m->params.count; }


/* A block's row says what it is and its output; the rows of the layers it
 * holds follow it, indented, with their parameters. */
void nn_model_summary(const nn_model *m, FILE *f) {
    char shape[48], text[96], row[128];
    fprintf(f, "%-4s %-28s %-16s %12s\n", "", "layer", "output shape", "parameters");
    layer_shape_str(m->in_ndim, m->in_shape, shape, sizeof shape);
    char input[48];
    snprintf(input, sizeof input, m->vocab ? "token ids < %d" : "input", m->vocab);
    fprintf(f, "%-4s %-28s %-16s %12s\n", "", input, shape, "");
    size_t total = 0, total_state = 0;
    int *block_end = nn_xmalloc((size_t)m->n_layers * sizeof *block_end), depth = 0; /* of the blocks open */
    for (int i = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        while (depth > 0 && block_end[depth - 1] < i) depth--;
        layer_shape_str(l->out_ndim, l->out_shape, shape, sizeof shape);
        size_t learned, state;
        layer_counts(l, &learned, &state);
        total += learned;
        total_state += state;
        char params[24] = "";
        if (learned) snprintf(params, sizeof params, "%zu", learned);
        snprintf(row, sizeof row, "%*s%s", 2 * depth, "", spec_layer_brief(l, text, sizeof text));
        fprintf(f, "%-4d %-28s %-16s %12s\n", i + 1, row, shape, params);
        if (l->n_inner) block_end[depth++] = i + l->n_inner;
    }
    free(block_end);
    fprintf(f, "total: %zu parameters (%.1f MB as float32)", total, total * 4.0 / 1e6);
    if (total_state) fprintf(f, ", %zu running statistics", total_state);
    fputc('\n', f);
}

/* ---- the course's MLP as a spec ---- */

static const char *const act_names[] = {"relu", "gelu", "sigmoid", "tanh"};

int nn_act_parse(const char *name, nn_act *act) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, act_names[i]) == 0) {
            *act = (nn_act)i;
            return 0;
        }
    return nn_error("unknown activation '%s' (relu, gelu, sigmoid, tanh)", name);
}

const char *nn_act_name(nn_act act) { return act_names[act]; }

char *nn_mlp_spec(const nn_mlp_config *c) {
    /* Each layer in canonical form, so the spec reads back to the same model. */
    nn_layer input_dropout = {.kind = &layer_dropout, .p = c->input_dropout};
    nn_layer dropout = {.kind = &layer_dropout, .p = c->dropout};
    char in_text[32], text[32];
    nn_layer_str(&input_dropout, in_text, sizeof in_text);
    nn_layer_str(&dropout, text, sizeof text);
    size_t cap = 64 + (size_t)c->n_hidden * 64, pos = 0;
    char *buf = nn_xmalloc(cap);
    pos += (size_t)snprintf(buf, cap, "flatten");
#define ADD(...) pos += (size_t)snprintf(buf + pos, cap - pos, __VA_ARGS__)
    if (c->input_dropout > 0.0f) ADD(" %s", in_text);
    for (int i = 0; i < c->n_hidden; i++) {
        ADD(" linear(%d)", c->hidden[i]);
        if (c->layer_norm) ADD(" layernorm");
        ADD(" %s", act_names[c->act]);
        if (c->dropout > 0.0f) ADD(" %s", text);
    }
    ADD(" linear(%d)", c->classes);
#undef ADD
    return buf;
}
