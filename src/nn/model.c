/* The general model: shape inference over a layer stack, parameter
 * registration, initialisation and the one forward loop. */
#include <stdio.h>
#include <string.h>

#include "nn/model.h"
#include "ops/ops.h"

/* Bounds that keep a few bytes of spec from asking for gigabytes. */
#define MAX_PARAMS_FLOATS (1L << 28)
#define MAX_ACTIVATION_FLOATS (1L << 22) /* per example, per layer */

static long shape_size(int ndim, const int *shape) {
    long n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

static void shape_str(int ndim, const int *shape, char *buf, size_t cap) {
    size_t pos = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && pos < cap; i++) pos += (size_t)snprintf(buf + pos, cap - pos, "%s%d", i ? ", " : "", shape[i]);
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
}

/* A pooling or conv window along one axis: the output length, or an error
 * naming the layer when the window does not fit. */
static int window(const char *layer, const char *axis, int in, int k, int stride, int pad, int *out) {
    if (in + 2 * pad < k)
        return nn_error("%s: kernel %d is larger than the input %s of %d%s", layer, k, axis, in,
                        pad ? " (with padding)" : "");
    *out = (in + 2 * pad - k) / stride + 1;
    return 0;
}

/* Infers the output shape of layer l from its input shape; -1 with an error
 * naming the layer when it does not fit. */
static int infer(nn_layer *l, int index) {
    char text[96], in[48];
    nn_layer_str(l, text, sizeof text);
    char where[128];
    snprintf(where, sizeof where, "layer %d, %s", index + 1, text);
    shape_str(l->in_ndim, l->in_shape, in, sizeof in);
    bool image = l->in_ndim == 3;
    l->out_ndim = l->in_ndim;
    memcpy(l->out_shape, l->in_shape, sizeof l->out_shape);
    switch (l->kind) {
    case NN_LAYER_LINEAR:
        if (image)
            return nn_error("%s: its input is %s; add flatten before a linear layer", where, in);
        l->out_shape[0] = l->out;
        break;
    case NN_LAYER_CONV:
    case NN_LAYER_MAXPOOL:
    case NN_LAYER_AVGPOOL: {
        if (!image)
            return nn_error("%s: needs an image [C, H, W] but gets %s (a %s cannot come after flatten or linear)",
                            where, in, l->kind == NN_LAYER_CONV ? "conv" : "pooling layer");
        int pad = l->kind == NN_LAYER_CONV ? l->padding : 0;
        if (window(where, "height", l->in_shape[1], l->kernel, l->stride, pad, &l->out_shape[1]) ||
            window(where, "width", l->in_shape[2], l->kernel, l->stride, pad, &l->out_shape[2]))
            return -1;
        if (l->kind == NN_LAYER_CONV) l->out_shape[0] = l->out;
        break;
    }
    case NN_LAYER_LAYERNORM:
        if (image) return nn_error("%s: normalises features, but its input is %s (use batchnorm after a conv)", where, in);
        break;
    case NN_LAYER_FLATTEN:
        l->out_ndim = 1;
        l->out_shape[0] = (int)shape_size(l->in_ndim, l->in_shape);
        l->out_shape[1] = l->out_shape[2] = 0;
        break;
    default: break; /* elementwise: same shape */
    }
    if (shape_size(l->out_ndim, l->out_shape) > MAX_ACTIVATION_FLOATS)
        return nn_error("%s: its output of %ld values per image is too large", where,
                        shape_size(l->out_ndim, l->out_shape));
    return 0;
}

/* Learned and state floats of a layer, from its plan (the model need not be built). */
static void layer_counts(const nn_layer *l, size_t *learned, size_t *state) {
    nn_layer_tensor t[5];
    int n = nn_layer_tensors(l, t);
    *learned = *state = 0;
    for (int k = 0; k < n; k++) {
        size_t size = 1;
        for (int d = 0; d < t[k].ndim; d++) size *= (size_t)t[k].shape[d];
        *(t[k].learned ? learned : state) += size;
    }
}

/* Parameter names: fc1, conv1, bn1, ln1, ... numbered along the network per kind. */
static const char *name_prefix(nn_layer_kind kind) {
    switch (kind) {
    case NN_LAYER_LINEAR: return "fc";
    case NN_LAYER_CONV: return "conv";
    case NN_LAYER_BATCHNORM: return "bn";
    case NN_LAYER_LAYERNORM: return "ln";
    default: return NULL;
    }
}

int nn_model_plan(nn_model *m, const char *spec, const int in_shape[3], int classes) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < 3; i++)
        if (in_shape[i] < 1 || in_shape[i] > 4096)
            return nn_error("input shape [%d, %d, %d] is not an image shape", in_shape[0], in_shape[1], in_shape[2]);
    int n = nn_spec_parse(spec, m->layers, NN_MODEL_MAX_LAYERS);
    if (n < 0) return -1;
    memcpy(m->in_shape, in_shape, sizeof m->in_shape);
    m->n_layers = n;
    m->input_std = 1.0f;
    int ndim = 3, shape[3] = {in_shape[0], in_shape[1], in_shape[2]};
    int count[NN_LAYER_FLATTEN + 1] = {0}; /* layers with parameters so far, per kind */
    size_t floats = 0;
    for (int i = 0; i < n; i++) {
        nn_layer *l = &m->layers[i];
        l->in_ndim = ndim;
        memcpy(l->in_shape, shape, sizeof shape);
        if (infer(l, i) != 0) return -1;
        ndim = l->out_ndim;
        memcpy(shape, l->out_shape, sizeof shape);
        const char *prefix = name_prefix(l->kind);
        if (prefix) snprintf(l->name, sizeof l->name, "%s%d", prefix, ++count[l->kind]);
        size_t learned, state;
        layer_counts(l, &learned, &state);
        if ((floats += learned + state) > MAX_PARAMS_FLOATS) {
            char text[96];
            return nn_error("layer %d, %s: the model has more than %ld parameters", i + 1,
                            nn_layer_str(l, text, sizeof text), MAX_PARAMS_FLOATS);
        }
    }
    char out[48];
    shape_str(ndim, shape, out, sizeof out);
    if (ndim != 1) return nn_error("the model ends in %s, not in class scores: end it with flatten and linear(%d)", out, classes > 0 ? classes : 10);
    if (classes > 0 && shape[0] != classes) {
        char last[96];
        nn_layer_str(&m->layers[n - 1], last, sizeof last);
        return nn_error("layer %d, %s: the model ends in %d features but the data has %d classes", n, last, shape[0],
                        classes);
    }
    m->classes = shape[0];
    return 0;
}

int nn_layer_tensors(const nn_layer *l, nn_layer_tensor out[5]) {
    int in_c = l->in_shape[0], n = 0;
#define T(suffix, learned_, decay_, ndim_, ...)                                                           \
    do {                                                                                                  \
        out[n] = (nn_layer_tensor){.ndim = ndim_, .shape = {__VA_ARGS__}, .learned = learned_, .decay = decay_}; \
        snprintf(out[n].name, sizeof out[n].name, "%s.%s", l->name, suffix);                                \
        n++;                                                                                              \
    } while (0)
    switch (l->kind) {
    case NN_LAYER_LINEAR:
        T("weight", true, true, 2, l->out, in_c);
        T("bias", true, false, 1, l->out);
        break;
    case NN_LAYER_CONV:
        T("weight", true, true, 4, l->out, in_c, l->kernel, l->kernel);
        T("bias", true, false, 1, l->out);
        break;
    case NN_LAYER_BATCHNORM:
    case NN_LAYER_LAYERNORM:
        T("weight", true, false, 1, in_c);
        T("bias", true, false, 1, in_c);
        if (l->kind == NN_LAYER_LAYERNORM) break;
        T("running_mean", false, false, 1, in_c);
        T("running_var", false, false, 1, in_c);
        T("num_batches_tracked", false, false, 0, 0);
        break;
    default: break;
    }
#undef T
    return n;
}

void nn_model_build(nn_model *m, nn_rng *rng) {
    nn_params_init(&m->params);
    nn_params_init(&m->state);
    /* Register everything first: the stores' buffers move while they grow;
     * the views stay where they are. */
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        nn_layer_tensor t[5];
        int n = nn_layer_tensors(l, t);
        nn_tensor *views[5];
        for (int k = 0; k < n; k++)
            views[k] = nn_params_add(t[k].learned ? &m->params : &m->state, t[k].name, t[k].ndim, t[k].shape, t[k].decay);
        if (n >= 2) l->weight = views[0], l->bias = views[1];
        if (n == 5) l->running_mean = views[2], l->running_var = views[3], l->num_batches_tracked = views[4];
    }
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        if (l->kind == NN_LAYER_LINEAR || l->kind == NN_LAYER_CONV) {
            int fan_in = (int)(l->weight->size / (size_t)l->out);
            nn_init_uniform_fan_in(l->weight, fan_in, rng);
            nn_init_uniform_fan_in(l->bias, fan_in, rng);
        } else if (l->weight) {
            nn_init_const(l->weight, 1.0f);
        }
        if (l->running_var) nn_init_const(l->running_var, 1.0f);
    }
}

int nn_model_init(nn_model *m, const char *spec, const int in_shape[3], int classes, nn_rng *rng) {
    if (nn_model_plan(m, spec, in_shape, classes) != 0) return -1;
    nn_model_build(m, rng);
    return 0;
}

void nn_model_free(nn_model *m) {
    nn_params_free(&m->params);
    nn_params_free(&m->state);
}

/* How many of the layers after layer i (a conv or a batch norm) run fused
 * with it: 1 for a ReLU, 2 for a ReLU and a 2x2 max pooling of stride 2
 * (ops/conv.c, ops/batchnorm.c), else 0. A conv followed by a batch norm
 * and a ReLU runs with both. */
static int relu_fusion(const nn_model *m, int i) {
    const nn_layer *l = m->layers;
    if (i + 1 >= m->n_layers || l[i + 1].kind != NN_LAYER_RELU) return 0;
    if (i + 2 < m->n_layers && l[i + 2].kind == NN_LAYER_MAXPOOL && l[i + 2].kernel == 2 && l[i + 2].stride == 2)
        return 2;
    return 1;
}

/* The layer loop over one batch. */
static nn_tensor *forward_layers(nn_model *m, nn_ctx *ctx, nn_tensor *h, nn_rng *dropout_rng) {
    bool training = nn_training(ctx);
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        switch (l->kind) {
        case NN_LAYER_LINEAR: h = nn_linear(ctx, h, l->weight, l->bias); break;
        case NN_LAYER_CONV: {
            nn_layer *bn = i + 1 < m->n_layers && m->layers[i + 1].kind == NN_LAYER_BATCHNORM ? l + 1 : NULL;
            int fused = bn ? relu_fusion(m, i + 1) : relu_fusion(m, i);
            if (bn && fused) { /* conv batchnorm relu [maxpool(2)] */
                h = nn_conv2d_bn_relu(ctx, h, l->weight, l->bias, l->stride, l->padding, bn->weight, bn->bias,
                                      bn->running_mean->data, bn->running_var->data, NN_BATCH_NORM_MOMENTUM,
                                      NN_BATCH_NORM_EPS, fused == 2);
                if (training) bn->num_batches_tracked->data[0] += 1.0f;
                i += 1 + fused;
            } else if (!bn && fused) {
                h = nn_conv2d_relu(ctx, h, l->weight, l->bias, l->stride, l->padding, fused == 2);
                i += fused;
            } else {
                h = nn_conv2d(ctx, h, l->weight, l->bias, l->stride, l->padding);
            }
            break;
        }
        case NN_LAYER_MAXPOOL: h = nn_max_pool2d(ctx, h, l->kernel, l->stride); break;
        case NN_LAYER_AVGPOOL: h = nn_avg_pool2d(ctx, h, l->kernel, l->stride); break;
        case NN_LAYER_BATCHNORM: {
            int fused = relu_fusion(m, i);
            if (fused && h->ndim == 2) fused = 1; /* pooling needs an image */
            if (fused)
                h = nn_batch_norm_relu(ctx, h, l->weight, l->bias, l->running_mean->data, l->running_var->data,
                                       NN_BATCH_NORM_MOMENTUM, NN_BATCH_NORM_EPS, fused == 2);
            else
                h = nn_batch_norm(ctx, h, l->weight, l->bias, l->running_mean->data, l->running_var->data,
                                  NN_BATCH_NORM_MOMENTUM, NN_BATCH_NORM_EPS);
            if (training) l->num_batches_tracked->data[0] += 1.0f;
            i += fused;
            break;
        }
        case NN_LAYER_LAYERNORM:
            if (i + 1 < m->n_layers && l[1].kind == NN_LAYER_GELU) { /* layernorm gelu [dropout(p)] */
                bool dropout = i + 2 < m->n_layers && l[2].kind == NN_LAYER_DROPOUT;
                h = nn_layer_norm_gelu(ctx, h, l->weight, l->bias, NN_LAYER_NORM_EPS, dropout ? l[2].p : 0.0f,
                                       dropout_rng);
                i += 1 + dropout;
            } else {
                h = nn_layer_norm(ctx, h, l->weight, l->bias, NN_LAYER_NORM_EPS);
            }
            break;
        case NN_LAYER_RELU: h = nn_relu(ctx, h); break;
        case NN_LAYER_LEAKYRELU: h = nn_leaky_relu(ctx, h, l->p); break;
        case NN_LAYER_GELU: h = nn_gelu(ctx, h, false); break;
        case NN_LAYER_SIGMOID: h = nn_sigmoid(ctx, h); break;
        case NN_LAYER_TANH: h = nn_tanh(ctx, h); break;
        case NN_LAYER_DROPOUT: h = nn_dropout(ctx, h, l->p, dropout_rng); break;
        case NN_LAYER_FLATTEN: h = nn_flatten(ctx, h); break;
        }
    }
    return h;
}

/* Evaluation touches no gradients and every image is independent: a large
 * batch runs FORWARD_CHUNK images at a time, each chunk's activations
 * released after its logits are copied out, so memory does not grow with
 * the batch. */
#define FORWARD_CHUNK 128

nn_tensor *nn_model_forward(nn_model *m, nn_ctx *ctx, nn_tensor *x, nn_rng *dropout_rng) {
    nn_tensor *h = x;
    if (h->ndim == 2) /* [B, C*H*W] rows, as a flat loader gives them */
        h = nn_reshape(ctx, h, 4, (int[]){h->shape[0], m->in_shape[0], m->in_shape[1], m->in_shape[2]});
    int B = h->shape[0];
    if (nn_grad_enabled(ctx) || nn_training(ctx) || B <= FORWARD_CHUNK) return forward_layers(m, ctx, h, dropout_rng);
    nn_tensor *out = nn_op_output(ctx, 2, (int[]){B, m->classes}, NULL, 0);
    size_t per_image = h->size / (size_t)B;
    for (int i = 0; i < B; i += FORWARD_CHUNK) {
        nn_arena_mark mark = nn_arena_get_mark(ctx);
        nn_tensor *chunk = nn_arena_alloc(ctx, sizeof *chunk);
        *chunk = *h;
        chunk->shape[0] = B - i < FORWARD_CHUNK ? B - i : FORWARD_CHUNK;
        chunk->data = h->data + (size_t)i * per_image;
        chunk->size = (size_t)chunk->shape[0] * per_image;
        nn_tensor *y = forward_layers(m, ctx, chunk, dropout_rng);
        memcpy(out->data + (size_t)i * m->classes, y->data, y->size * sizeof(float));
        nn_arena_release(ctx, mark);
    }
    return out;
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

char *nn_model_spec(const nn_model *m, char *buf, size_t cap) {
    size_t pos = 0;
    buf[0] = 0;
    for (int i = 0; i < m->n_layers && pos < cap; i++) {
        char layer[96];
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s", i ? " " : "", nn_layer_str(&m->layers[i], layer, sizeof layer));
    }
    return buf;
}

size_t nn_model_param_count(const nn_model *m) { return m->params.count; }


void nn_model_summary(const nn_model *m, FILE *f) {
    char shape[48], text[96];
    fprintf(f, "%-4s %-28s %-16s %12s\n", "", "layer", "output shape", "parameters");
    shape_str(3, m->in_shape, shape, sizeof shape);
    fprintf(f, "%-4s %-28s %-16s %12s\n", "", "input", shape, "");
    size_t total = 0, total_state = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        shape_str(l->out_ndim, l->out_shape, shape, sizeof shape);
        size_t learned, state;
        layer_counts(l, &learned, &state);
        total += learned;
        total_state += state;
        char params[24] = "";
        if (learned) snprintf(params, sizeof params, "%zu", learned);
        fprintf(f, "%-4d %-28s %-16s %12s\n", i + 1, nn_layer_str(l, text, sizeof text), shape, params);
    }
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
    return -1;
}

const char *nn_act_name(nn_act act) { return act_names[act]; }

char *nn_mlp_spec(const nn_mlp_config *c, char *buf, size_t cap) {
    /* Each layer in canonical form, so the spec reads back to the same model. */
    nn_layer input_dropout = {.kind = NN_LAYER_DROPOUT, .p = c->input_dropout};
    nn_layer dropout = {.kind = NN_LAYER_DROPOUT, .p = c->dropout};
    char in_text[32], text[32];
    nn_layer_str(&input_dropout, in_text, sizeof in_text);
    nn_layer_str(&dropout, text, sizeof text);
    size_t pos = (size_t)snprintf(buf, cap, "flatten");
#define ADD(...) pos += (pos < cap ? (size_t)snprintf(buf + pos, cap - pos, __VA_ARGS__) : 0)
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
