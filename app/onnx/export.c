/* nn_model -> ONNX ModelProto through the protobuf-c code generated from
 * onnx.proto (app/onnx/module.mk). Each layer becomes the ONNX operator with
 * nn's exact semantics (docs/onnx.md): the same padding, strides, floor-mode
 * pooling, epsilons and slopes; a text model's recurrent layers become
 * ONNX's RNN, LSTM and GRU with PyTorch's gates in ONNX's order; a
 * Transformer's attention becomes matrix products, the mask and Softmax
 * (opset 17 has no Attention operator). The graph
 * is built in memory with every allocation recorded in one list, packed
 * once and written atomically. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "nn/error.h"
#include "nn/version.h"
#include "onnx/onnx.pb-c.h"
#include "core/util.h"

/* Initializers point at the model's floats as raw_data, which ONNX defines
 * as little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "onnx export writes tensors' memory as ONNX raw_data, which is little-endian"
#endif

#define MAX_NODE_INPUTS 5
#define MAX_NODE_ATTRS 4

typedef struct graph {
    void **owned; /* every allocation below, freed together */
    size_t n_owned, cap_owned;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    const char *sqrt2, *one, *half; /* GELU's constants, added once */
    const char *axis1, *minus1;     /* int64 [1] and -1 for Squeeze and Gather, added once */
    const char *axis0, *i64_0, *i64_1; /* int64 [0], 0 and 1 for Slice and Range, added once */
    const char *minus_inf;          /* the causal mask's fill, added once */
    const nn_layer *layers;         /* the model's stack, for the layers' numbers in names */
} graph;

#define PUSH(arr, n, cap, item)                                                    \
    do {                                                                           \
        if ((n) == (cap)) {                                                        \
            (cap) = (cap) ? 2 * (cap) : 16;                                        \
            (arr) = nn_xrealloc((arr), (cap) * sizeof *(arr));                     \
        }                                                                          \
        (arr)[(n)++] = (item);                                                     \
    } while (0)

static void *alloc(graph *g, size_t size) {
    void *p = nn_xcalloc(1, size);
    PUSH(g->owned, g->n_owned, g->cap_owned, p);
    return p;
}

static char *str(graph *g, const char *fmt, ...) NN_PRINTF(2, 3);
static char *str(graph *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = alloc(g, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void graph_free(graph *g) {
    for (size_t i = 0; i < g->n_owned; i++) free(g->owned[i]);
    free(g->owned);
    free(g->nodes);
    free(g->inits);
}

/* ---- initializers and nodes ---- */

/* A float32 initializer over n floats at data, which must outlive the graph
 * (the model's own tensors, or memory owned by g). Returns its name. */
static const char *initializer(graph *g, const char *name, int ndim, const int *shape, const float *data) {
    Onnx__TensorProto *t = alloc(g, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = str(g, "%s", name);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_dims = (size_t)ndim;
    t->dims = alloc(g, (ndim ? (size_t)ndim : 1) * sizeof *t->dims);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        t->dims[d] = shape[d];
        n *= (size_t)shape[d];
    }
    t->has_raw_data = 1;
    t->raw_data.len = n * sizeof(float);
    t->raw_data.data = (uint8_t *)data;
    PUSH(g->inits, g->n_inits, g->cap_inits, t);
    return t->name;
}

/* An int64 initializer of n values (shape [n], or a scalar when ndim is 0):
 * axes, indices. The values are copied into memory owned by g. */
static const char *int64_initializer(graph *g, const char *name, int ndim, int n, const int64_t *v) {
    Onnx__TensorProto *t = alloc(g, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = str(g, "%s", name);
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t->n_dims = (size_t)ndim;
    t->dims = alloc(g, sizeof *t->dims);
    if (ndim) t->dims[0] = n;
    int64_t *data = alloc(g, (size_t)n * sizeof *data);
    memcpy(data, v, (size_t)n * sizeof *data);
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * sizeof *data;
    t->raw_data.data = (uint8_t *)data;
    PUSH(g->inits, g->n_inits, g->cap_inits, t);
    return t->name;
}

/* A model tensor, added once: unembed reads the embedding's matrix, which
 * is already an initializer under the same name (one tensor, tied). */
static const char *tensor_initializer(graph *g, const nn_tensor *t) {
    for (size_t i = 0; i < g->n_inits; i++)
        if (strcmp(g->inits[i]->name, t->name) == 0) return g->inits[i]->name;
    return initializer(g, t->name, t->ndim, t->shape, t->data);
}

static const char *scalar(graph *g, const char *name, float v) {
    float *p = alloc(g, sizeof *p);
    *p = v;
    return initializer(g, name, 0, NULL, p);
}

/* A node computing out = op(in...); attributes are added to what it returns. */
static Onnx__NodeProto *node(graph *g, const char *op, const char *out, int n_in, const char *const *in) {
    Onnx__NodeProto *n = alloc(g, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = str(g, "%s", op);
    n->name = str(g, "%s", out);
    n->n_input = (size_t)n_in;
    n->input = alloc(g, MAX_NODE_INPUTS * sizeof *n->input);
    for (int i = 0; i < n_in; i++) n->input[i] = str(g, "%s", in[i]);
    n->n_output = 1;
    n->output = alloc(g, sizeof *n->output);
    n->output[0] = str(g, "%s", out);
    n->attribute = alloc(g, MAX_NODE_ATTRS * sizeof *n->attribute);
    PUSH(g->nodes, g->n_nodes, g->cap_nodes, n);
    return n;
}

static const char *unary(graph *g, const char *op, const char *out, const char *x) {
    return node(g, op, out, 1, (const char *[]){x})->output[0];
}

static const char *binary(graph *g, const char *op, const char *out, const char *a, const char *b) {
    return node(g, op, out, 2, (const char *[]){a, b})->output[0];
}

static Onnx__AttributeProto *attr(graph *g, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType type) {
    Onnx__AttributeProto *a = alloc(g, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = str(g, "%s", name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void attr_int(graph *g, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void attr_float(graph *g, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

/* An INTS attribute of count copies of v (kernel_shape [k, k], pads [p, p, p, p]). */
static void attr_ints(graph *g, Onnx__NodeProto *n, const char *name, int count, int64_t v) {
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)count;
    a->ints = alloc(g, (size_t)count * sizeof *a->ints);
    for (int i = 0; i < count; i++) a->ints[i] = v;
}

/* An INTS attribute of the given values (a Transpose's perm). */
static void attr_int_list(graph *g, Onnx__NodeProto *n, const char *name, int count, const int64_t *v) {
    Onnx__AttributeProto *a = attr(g, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)count;
    a->ints = alloc(g, (size_t)count * sizeof *a->ints);
    memcpy(a->ints, v, (size_t)count * sizeof *a->ints);
}

/* ---- layers ---- */

/* [A, B, F] -> [B, A, F]: batch-major to ONNX's sequence-major and back. */
static const char *swap01(graph *g, const char *x, const char *out) {
    attr_int_list(g, node(g, "Transpose", out, 1, (const char *[]){x}), "perm", 3, (const int64_t[]){1, 0, 2});
    return out;
}

/* GELU as nn computes it (the exact form, not the tanh approximation):
 *   y = x * 0.5 * (1 + erf(x / sqrt 2)) */
static const char *gelu(graph *g, const char *x, const char *out) {
    if (!g->sqrt2) {
        g->sqrt2 = scalar(g, "gelu.sqrt2", 1.41421356237309504880f);
        g->one = scalar(g, "gelu.one", 1.0f);
        g->half = scalar(g, "gelu.half", 0.5f);
    }
    const char *u = binary(g, "Div", str(g, "%s.scaled", out), x, g->sqrt2);
    const char *e = unary(g, "Erf", str(g, "%s.erf", out), u);
    const char *p = binary(g, "Add", str(g, "%s.cdf2", out), e, g->one);
    const char *xp = binary(g, "Mul", str(g, "%s.xcdf2", out), x, p);
    return binary(g, "Mul", out, xp, g->half);
}

/* Each layer kind's ONNX form: nodes computing out from x; returns the
 * value that holds the layer's output (x itself for dropout, which is the
 * identity at inference). */
typedef const char *(*emit_fn)(graph *g, const nn_layer *l, const char *x, const char *out);

static const char *param(graph *g, const nn_layer *l, const char *suffix) {
    return tensor_initializer(g, nn_layer_tensor(l, suffix));
}

/* [A, B] -> [B, A] */
static const char *swap01_2d(graph *g, const char *x, const char *out) {
    attr_int_list(g, node(g, "Transpose", out, 1, (const char *[]){x}), "perm", 2, (const int64_t[]){1, 0});
    return out;
}

/* x W^T (+ b when b is not NULL) on a sequence [N, T, IN] (Gemm takes
 * matrices only): MatMul by the transposed weight, then Add. */
static const char *sequence_linear(graph *g, const char *x, const char *w, const char *b, const char *out) {
    const char *wt = swap01_2d(g, w, str(g, "%s.weight_t", out));
    if (!b) return binary(g, "MatMul", out, x, wt);
    const char *xw = binary(g, "MatMul", str(g, "%s.matmul", out), x, wt);
    return binary(g, "Add", out, xw, b);
}

/* y = x W^T + b, W [out, in] as PyTorch stores it: Gemm, or on a sequence
 * sequence_linear. linear(OUT,bias=0) has no b: no Add, and Gemm without
 * its optional C. */
static const char *emit_linear(graph *g, const nn_layer *l, const char *x, const char *out) {
    bool bias = nn_layer_tensor(l, "bias") != NULL;
    if (l->in_ndim == 2) return sequence_linear(g, x, param(g, l, "weight"), bias ? param(g, l, "bias") : NULL, out);
    Onnx__NodeProto *n = node(g, "Gemm", out, bias ? 3 : 2,
                              (const char *[]){x, param(g, l, "weight"), bias ? param(g, l, "bias") : NULL});
    attr_int(g, n, "transB", 1);
    return out;
}

static const char *emit_conv(graph *g, const nn_layer *l, const char *x, const char *out) {
    Onnx__NodeProto *n = node(g, "Conv", out, 3, (const char *[]){x, param(g, l, "weight"), param(g, l, "bias")});
    attr_ints(g, n, "kernel_shape", 2, l->kernel);
    attr_ints(g, n, "strides", 2, l->stride);
    attr_ints(g, n, "pads", 4, l->padding); /* [top, left, bottom, right] */
    return out;
}

static const char *window_node(graph *g, const char *op, const char *out, const char *x, const nn_layer *l) {
    Onnx__NodeProto *n = node(g, op, out, 1, (const char *[]){x});
    attr_ints(g, n, "kernel_shape", 2, l->kernel);
    attr_ints(g, n, "strides", 2, l->stride);
    return out;
}

static const char *emit_maxpool(graph *g, const nn_layer *l, const char *x, const char *out) {
    return window_node(g, "MaxPool", out, x, l);
}

static const char *emit_avgpool(graph *g, const nn_layer *l, const char *x, const char *out) {
    return window_node(g, "AveragePool", out, x, l);
}

/* [N, C] after a linear, [N, C, H, W] after a conv: both are ONNX's layout */
static const char *emit_batchnorm(graph *g, const nn_layer *l, const char *x, const char *out) {
    Onnx__NodeProto *n = node(g, "BatchNormalization", out, 5,
                              (const char *[]){x, param(g, l, "weight"), param(g, l, "bias"),
                                               param(g, l, "running_mean"), param(g, l, "running_var")});
    attr_float(g, n, "epsilon", NN_BATCH_NORM_EPS);
    return out;
}

static const char *emit_layernorm(graph *g, const nn_layer *l, const char *x, const char *out) {
    Onnx__NodeProto *n =
        node(g, "LayerNormalization", out, 3, (const char *[]){x, param(g, l, "weight"), param(g, l, "bias")});
    attr_int(g, n, "axis", -1);
    attr_float(g, n, "epsilon", NN_LAYER_NORM_EPS);
    return out;
}

static const char *emit_relu(graph *g, const nn_layer *l, const char *x, const char *out) {
    return unary(g, "Relu", out, x);
}

static const char *emit_leakyrelu(graph *g, const nn_layer *l, const char *x, const char *out) {
    attr_float(g, node(g, "LeakyRelu", out, 1, (const char *[]){x}), "alpha", l->p);
    return out;
}

static const char *emit_gelu(graph *g, const nn_layer *l, const char *x, const char *out) { return gelu(g, x, out); }

static const char *emit_sigmoid(graph *g, const nn_layer *l, const char *x, const char *out) {
    return unary(g, "Sigmoid", out, x);
}

static const char *emit_tanh(graph *g, const nn_layer *l, const char *x, const char *out) {
    return unary(g, "Tanh", out, x);
}

static const char *emit_dropout(graph *g, const nn_layer *l, const char *x, const char *out) { return x; }

/* [N, ...] -> [N, prod(...)], as nn_flatten keeps the batch */
static const char *emit_flatten(graph *g, const nn_layer *l, const char *x, const char *out) {
    attr_int(g, node(g, "Flatten", out, 1, (const char *[]){x}), "axis", 1);
    return out;
}

/* embed(D): the rows of embedN.weight [V, D] the ids pick, [N, T] -> [N, T, D] */
static const char *emit_embed(graph *g, const nn_layer *l, const char *x, const char *out) {
    return binary(g, "Gather", out, param(g, l, "weight"), x); /* axis 0 */
}

/* Copies G blocks of rows blocks of PyTorch's tensor t [G*H, cols] into
 * ONNX's gate order: block k of the result is block from[k] of t. */
static float *reorder_gates(graph *g, const nn_tensor *t, int G, const int *from) {
    size_t block = t->size / (size_t)G;
    float *p = alloc(g, t->size * sizeof *p);
    for (int k = 0; k < G; k++) memcpy(p + k * block, t->data + from[k] * block, block * sizeof *p);
    return p;
}

/* rnn(H), lstm(H), gru(H) on [N, T, D]: ONNX's RNN, LSTM and GRU run
 * sequence-major ([T, N, D] in, Y [T, 1, N, H] out), so a Transpose on
 * each side (opset 14's layout=1 is not in every runtime) and a Squeeze of
 * the direction axis. Gates go from PyTorch's order to ONNX's: LSTM i,f,g,o
 * -> i,o,f,c; GRU r,z,n -> z,r,h with linear_before_reset=1, PyTorch's
 * n = tanh(W_in x + b_in + r * (W_hn h + b_hn)). W [1, G*H, D], R [1, G*H, H],
 * B [1, 2*G*H] = concat(b_ih, b_hh), all reordered. */
static const char *emit_recurrent(graph *g, const nn_layer *l, const char *x, const char *out, const char *op,
                                  int G, const int *from) {
    const nn_tensor *w_ih = nn_layer_tensor(l, "weight_ih_l0"), *w_hh = nn_layer_tensor(l, "weight_hh_l0");
    const nn_tensor *b_ih = nn_layer_tensor(l, "bias_ih_l0"), *b_hh = nn_layer_tensor(l, "bias_hh_l0");
    int H = l->out, D = l->in_shape[1];
    float *bias = alloc(g, 2 * (size_t)G * H * sizeof *bias);
    float *b_i = reorder_gates(g, b_ih, G, from), *b_h = reorder_gates(g, b_hh, G, from);
    memcpy(bias, b_i, (size_t)G * H * sizeof *bias);
    memcpy(bias + (size_t)G * H, b_h, (size_t)G * H * sizeof *bias);
    const char *w = initializer(g, str(g, "%s.W", l->name), 3, (int[]){1, G * H, D}, reorder_gates(g, w_ih, G, from));
    const char *r = initializer(g, str(g, "%s.R", l->name), 3, (int[]){1, G * H, H}, reorder_gates(g, w_hh, G, from));
    const char *b = initializer(g, str(g, "%s.B", l->name), 2, (int[]){1, 2 * G * H}, bias);
    const char *xt = swap01(g, x, str(g, "%s.seq_major", out));
    Onnx__NodeProto *n = node(g, op, str(g, "%s.Y", out), 4, (const char *[]){xt, w, r, b});
    attr_int(g, n, "hidden_size", H);
    if (G == 3) attr_int(g, n, "linear_before_reset", 1);
    if (!g->axis1) g->axis1 = int64_initializer(g, "axes_1", 1, 1, (const int64_t[]){1});
    const char *y = binary(g, "Squeeze", str(g, "%s.squeezed", out), n->output[0], g->axis1);
    return swap01(g, y, out);
}

static const char *emit_rnn(graph *g, const nn_layer *l, const char *x, const char *out) {
    return emit_recurrent(g, l, x, out, "RNN", 1, (const int[]){0});
}

static const char *emit_lstm(graph *g, const nn_layer *l, const char *x, const char *out) {
    return emit_recurrent(g, l, x, out, "LSTM", 4, (const int[]){0, 3, 1, 2});
}

static const char *emit_gru(graph *g, const nn_layer *l, const char *x, const char *out) {
    return emit_recurrent(g, l, x, out, "GRU", 3, (const int[]){1, 0, 2});
}

/* last: step T-1 of [N, T, H] -> [N, H]; every sequence of the batch is
 * taken as full length (docs/onnx.md) */
static const char *emit_last(graph *g, const nn_layer *l, const char *x, const char *out) {
    if (!g->minus1) g->minus1 = int64_initializer(g, "index_last", 0, 1, (const int64_t[]){-1});
    attr_int(g, node(g, "Gather", out, 2, (const char *[]){x, g->minus1}), "axis", 1);
    return out;
}

/* mean: the average of [N, T, H] over its T steps -> [N, H]; every
 * sequence of the batch is taken as full length, as for last */
static const char *emit_mean(graph *g, const nn_layer *l, const char *x, const char *out) {
    Onnx__NodeProto *n = node(g, "ReduceMean", out, 1, (const char *[]){x});
    attr_int_list(g, n, "axes", 1, (const int64_t[]){1}); /* an attribute up to opset 17, an input from 18 */
    attr_int(g, n, "keepdims", 0);
    return out;
}

/* The int64 constants of Slice and Range, added once. */
static void int64_constants(graph *g) {
    if (g->axis0) return;
    g->axis0 = int64_initializer(g, "axes_0", 1, 1, (const int64_t[]){0});
    g->i64_0 = int64_initializer(g, "int64_0", 0, 1, (const int64_t[]){0});
    g->i64_1 = int64_initializer(g, "int64_1", 0, 1, (const int64_t[]){1});
}

/* T of a sequence x [N, T, F] as int64 [1], read from its shape when the
 * graph runs: T is symbolic. */
static const char *steps(graph *g, const char *x, const char *out) {
    Onnx__NodeProto *n = node(g, "Shape", out, 1, (const char *[]){x});
    attr_int(g, n, "start", 1);
    attr_int(g, n, "end", 2);
    return out;
}

/* posembed: x [N, T, D] + P[0..T), the first T rows of posN.weight [context,
 * D] (a Slice, T from x's shape: any T up to the context runs; past it the
 * Slice stops at the context and the Add's shapes do not broadcast) */
static const char *emit_posembed(graph *g, const nn_layer *l, const char *x, const char *out) {
    int64_constants(g);
    const char *T = steps(g, x, str(g, "%s.steps", out));
    /* rows [0, T) of the table: starts and axes are both [0] */
    const char *p = node(g, "Slice", str(g, "%s.positions", out), 4,
                         (const char *[]){param(g, l, "weight"), g->axis0, T, g->axis0})->output[0];
    return binary(g, "Add", out, x, p);
}

/* unembed: logits = h E^T [N, T, V], E the first embed's weight [V, D],
 * the same initializer the Gather reads (tied) */
static const char *emit_unembed(graph *g, const nn_layer *l, const char *x, const char *out) {
    return sequence_linear(g, x, tensor_initializer(g, nn_layer_tensor(l->tied, "weight")), NULL, out);
}

/* attention(H[,causal][,bias]) on x [N, T, D] as src/ops/attention.c
 * computes it, hd = D / H, s = 1 / sqrt(hd):
 *   qkv = x W_in^T + b_in                  [N, T, 3D]       attnN.in_proj_weight, .in_proj_bias
 *   Reshape [N, T, 3, H, hd], Transpose    [3, N, H, T, hd]  q | k | v, head h in columns h*hd.. of each
 *   q, k, v = Gather 0, 1, 2 on axis 0     [N, H, T, hd]
 *   S = (s q) k^T                          [N, H, T, T]     q scaled first, as nn and PyTorch do
 *   S[i, j] = -inf where j > i (causal)    Where(Range(T) > Range(T) as a column)
 *   a = Softmax(S) v                       [N, H, T, hd]
 *   Transpose [N, T, H, hd], Reshape       [N, T, D]        the heads side by side
 *   y = a W_out^T + b_out                  [N, T, D]        attnN.out_proj.weight, .bias
 * Every key is a real step (full-length sequences, docs/onnx.md): no key
 * padding mask. */
static const char *emit_attention(graph *g, const nn_layer *l, const char *x, const char *out) {
    int D = l->in_shape[1], H = l->heads, hd = D / H;
    const char *qkv = sequence_linear(g, x, param(g, l, "in_proj_weight"),
                                      l->bias ? param(g, l, "in_proj_bias") : NULL, str(g, "%s.qkv", out));
    const char *split_shape = int64_initializer(g, str(g, "%s.qkv_shape", out), 1, 5,
                                                (const int64_t[]){0, 0, 3, H, hd}); /* 0: N and T as they are */
    const char *split = binary(g, "Reshape", str(g, "%s.qkv_heads", out), qkv, split_shape);
    const char *heads = str(g, "%s.qkv_by_head", out);
    attr_int_list(g, node(g, "Transpose", heads, 1, (const char *[]){split}), "perm", 5,
                  (const int64_t[]){2, 0, 3, 1, 4});
    const char *qkv_of[3];
    for (int i = 0; i < 3; i++) {
        const char *index = int64_initializer(g, str(g, "%s.%c_index", out, "qkv"[i]), 0, 1, (const int64_t[]){i});
        qkv_of[i] = binary(g, "Gather", str(g, "%s.%c", out, "qkv"[i]), heads, index); /* axis 0 */
    }
    const char *scale = scalar(g, str(g, "%s.scale", out), 1.0f / sqrtf((float)hd));
    const char *q = binary(g, "Mul", str(g, "%s.q_scaled", out), qkv_of[0], scale);
    const char *kt = str(g, "%s.k_t", out);
    attr_int_list(g, node(g, "Transpose", kt, 1, (const char *[]){qkv_of[1]}), "perm", 4,
                  (const int64_t[]){0, 1, 3, 2});
    const char *scores = binary(g, "MatMul", str(g, "%s.scores", out), q, kt);
    if (l->causal) {
        int64_constants(g);
        if (!g->minus_inf) g->minus_inf = scalar(g, "attention.minus_inf", -INFINITY);
        const char *T = binary(g, "Gather", str(g, "%s.T", out), steps(g, x, str(g, "%s.steps", out)), g->i64_0);
        const char *pos =
            node(g, "Range", str(g, "%s.positions", out), 3, (const char *[]){g->i64_0, T, g->i64_1})->output[0];
        if (!g->axis1) g->axis1 = int64_initializer(g, "axes_1", 1, 1, (const int64_t[]){1});
        const char *col = binary(g, "Unsqueeze", str(g, "%s.positions_col", out), pos, g->axis1);
        const char *later = binary(g, "Greater", str(g, "%s.later", out), pos, col); /* [i, j]: j > i */
        scores =
            node(g, "Where", str(g, "%s.masked", out), 3, (const char *[]){later, g->minus_inf, scores})->output[0];
    }
    const char *p = str(g, "%s.weights", out);
    attr_int(g, node(g, "Softmax", p, 1, (const char *[]){scores}), "axis", -1);
    const char *a = binary(g, "MatMul", str(g, "%s.heads", out), p, qkv_of[2]);
    const char *at = str(g, "%s.heads_t", out);
    attr_int_list(g, node(g, "Transpose", at, 1, (const char *[]){a}), "perm", 4, (const int64_t[]){0, 2, 1, 3});
    const char *merge_shape = int64_initializer(g, str(g, "%s.merge_shape", out), 1, 3, (const int64_t[]){0, 0, D});
    const char *merged = binary(g, "Reshape", str(g, "%s.merged", out), at, merge_shape);
    return sequence_linear(g, merged, param(g, l, "out_proj.weight"), l->bias ? param(g, l, "out_proj.bias") : NULL,
                           out);
}

/* One line per layer kind of nn (src/layers/table.c). */
static const struct {
    const char *kind;
    emit_fn emit;
} emitters[] = {
    {"linear", emit_linear},   {"conv", emit_conv},           {"maxpool", emit_maxpool}, {"avgpool", emit_avgpool},
    {"batchnorm", emit_batchnorm}, {"layernorm", emit_layernorm}, {"relu", emit_relu},   {"leakyrelu", emit_leakyrelu},
    {"gelu", emit_gelu},       {"sigmoid", emit_sigmoid},     {"tanh", emit_tanh},       {"dropout", emit_dropout},
    {"flatten", emit_flatten}, {"embed", emit_embed},     {"rnn", emit_rnn},         {"lstm", emit_lstm},
    {"gru", emit_gru},         {"last", emit_last},       {"mean", emit_mean},       {"posembed", emit_posembed},
    {"unembed", emit_unembed}, {"attention", emit_attention},
};

static int emit_layer(graph *g, const nn_layer *l, const char *x, const char **y);

/* Adds the nodes of the n layers from l on (a block counts with the layers
 * it holds) reading x; *y is the value they give. */
static int emit_span(graph *g, const nn_layer *l, int n, const char *x, const char **y) {
    for (int i = 0; i < n; i += 1 + l[i].n_inner)
        if (emit_layer(g, &l[i], x, &x) != 0) return -1;
    *y = x;
    return 0;
}

/* Blocks: the nodes of the layers they hold (which follow them in the
 * stack; a repeat's copies one after the other), and for residual(LAYERS)
 * an Add of its input and theirs, x + f(x). */
static const char *const blocks[] = {"residual", "repeat"};

/* Adds the nodes of layer l (index l - g->layers in the stack) reading x;
 * *y is the value it gives. */
static int emit_layer(graph *g, const nn_layer *l, const char *x, const char **y) {
    const char *kind = nn_layer_kind_name(l->kind);
    int index = (int)(l - g->layers) + 1;
    for (size_t k = 0; k < sizeof emitters / sizeof emitters[0]; k++)
        if (strcmp(emitters[k].kind, kind) == 0) {
            *y = emitters[k].emit(g, l, x, str(g, "layer%d_%s", index, kind));
            return 0;
        }
    for (size_t k = 0; k < sizeof blocks / sizeof blocks[0]; k++)
        if (strcmp(blocks[k], kind) == 0) {
            const char *fx;
            if (emit_span(g, l + 1, l->n_inner, x, &fx) != 0) return -1;
            *y = strcmp(kind, "residual") == 0 ? binary(g, "Add", str(g, "layer%d_%s", index, kind), x, fx) : fx;
            return 0;
        }
    char text[96];
    return nn_error("layer %d, %s: has no ONNX form in nn export", index, nn_layer_str(l, text, sizeof text));
}

/* A tensor value of shape [N, dims...] of the given element type: N
 * symbolic, and so is a dimension of 0 (a sequence's length, T). */
static Onnx__ValueInfoProto *value_info(graph *g, const char *name, int elem_type, int ndim, const int *dims) {
    Onnx__TensorShapeProto *shape = alloc(g, sizeof *shape);
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = (size_t)ndim + 1;
    shape->dim = alloc(g, shape->n_dim * sizeof *shape->dim);
    for (size_t d = 0; d < shape->n_dim; d++) {
        Onnx__TensorShapeProto__Dimension *dim = alloc(g, sizeof *dim);
        onnx__tensor_shape_proto__dimension__init(dim);
        if (d == 0 || dims[d - 1] == 0) {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim->dim_param = str(g, "%s", d == 0 ? "N" : "T");
        } else {
            dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim->dim_value = dims[d - 1];
        }
        shape->dim[d] = dim;
    }
    Onnx__TypeProto__Tensor *tensor = alloc(g, sizeof *tensor);
    onnx__type_proto__tensor__init(tensor);
    tensor->has_elem_type = 1;
    tensor->elem_type = elem_type;
    tensor->shape = shape;
    Onnx__TypeProto *type = alloc(g, sizeof *type);
    onnx__type_proto__init(type);
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tensor;
    Onnx__ValueInfoProto *v = alloc(g, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = str(g, "%s", name);
    v->type = type;
    return v;
}

int onnx_export(const nn_model *m, const char *path, onnx_export_info *info) {
    graph g = {0};
    int rc = -1;
    uint8_t *buf = NULL;

    const char *x = "tokens"; /* a text model's token ids [N, T], as they are */
    if (!m->vocab) {
        /* Raw pixels in [0, 1] in, normalised as nn_model_predict does. */
        x = binary(&g, "Sub", "image_centred", "image", scalar(&g, "input_mean", m->input_mean));
        x = binary(&g, "Div", "image_normalised", x, scalar(&g, "input_std", m->input_std));
    }
    g.layers = m->layers;
    if (emit_span(&g, m->layers, m->n_layers, x, &x) != 0) goto done;
    /* The last node gives the current value (dropout adds none): it becomes the output. */
    Onnx__NodeProto *last = g.nodes[g.n_nodes - 1];
    if (strcmp(last->output[0], x) != 0) {
        nn_error("onnx export: the graph's last node does not give its output %s", x);
        goto done;
    }
    last->output[0] = str(&g, "logits");

    const char *spec = nn_model_spec(m);
    Onnx__GraphProto graph_proto = ONNX__GRAPH_PROTO__INIT;
    graph_proto.name = str(&g, "nn");
    if (m->vocab)
        graph_proto.doc_string = str(&g, "nn model %s; tokens: int64 ids in [0, %d), [N, T], every sequence "
                                         "of a batch T long%s", spec, m->vocab,
                                     m->in_shape[0] ? str(&g, ", T at most %d (its positions)", m->in_shape[0]) : "");
    else
        graph_proto.doc_string = str(&g, "nn model %s; image: raw pixels in [0, 1], normalised in the graph "
                                         "((x - %.9g) / %.9g)", spec, m->input_mean, m->input_std);
    graph_proto.n_node = g.n_nodes;
    graph_proto.node = g.nodes;
    graph_proto.n_initializer = g.n_inits;
    graph_proto.initializer = g.inits;
    const nn_layer *top = &m->layers[m->n_layers - 1]; /* or the last a block holds: the same shape */
    Onnx__ValueInfoProto *input =
        m->vocab ? value_info(&g, "tokens", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, (const int[]){0})
                 : value_info(&g, "image", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 3, m->in_shape);
    /* [N, classes], or [N, T, classes] for a model that scores every position: T symbolic as the
     * input's (a model with learned positions has its context there, the longest T it takes) */
    int out_dims[3] = {top->out_shape[0], top->out_shape[1], top->out_shape[2]};
    if (m->vocab && top->out_ndim == 2) out_dims[0] = 0;
    Onnx__ValueInfoProto *output = value_info(&g, "logits", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, top->out_ndim,
                                              out_dims);
    graph_proto.n_input = graph_proto.n_output = 1;
    graph_proto.input = &input;
    graph_proto.output = &output;

    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__OperatorSetIdProto *opsets[] = {&opset};
    opset.domain = str(&g, "%s", ""); /* the default domain, ai.onnx */
    opset.has_version = 1;
    opset.version = ONNX_EXPORT_OPSET;
    Onnx__StringStringEntryProto meta = ONNX__STRING_STRING_ENTRY_PROTO__INIT;
    Onnx__StringStringEntryProto *metas[] = {&meta};
    meta.key = str(&g, "nn.spec");
    meta.value = str(&g, "%s", spec);

    Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
    model.has_ir_version = 1;
    model.ir_version = ONNX__VERSION__IR_VERSION; /* the IR of the onnx.proto this was built from */
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.producer_name = str(&g, "nn");
    model.producer_version = str(&g, "%s", nn_version());
    model.graph = &graph_proto;
    model.n_metadata_props = 1;
    model.metadata_props = metas;

    size_t size = onnx__model_proto__get_packed_size(&model);
    /* Protobuf readers refuse messages of 2 GiB and more. */
    if (size > INT32_MAX) {
        nn_error("%s: the model's %zu bytes exceed the 2 GiB an ONNX file can hold", path, size);
        goto done;
    }
    buf = nn_xmalloc(size ? size : 1);
    if (onnx__model_proto__pack(&model, buf) != size) {
        nn_error("%s: protobuf-c packed a different size than it measured", path);
        goto done;
    }
    if (nn_write_file_atomic(path, buf, size) != 0) goto done;
    if (info)
        *info = (onnx_export_info){.nodes = (int)g.n_nodes, .initializers = (int)g.n_inits,
                                   .ir_version = ONNX__VERSION__IR_VERSION, .opset = ONNX_EXPORT_OPSET, .bytes = size};
    rc = 0;
done:
    free(buf);
    graph_free(&g);
    return rc;
}
