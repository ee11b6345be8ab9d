/* Layer kinds: each kind of layer a spec can name, described once.
 *
 * A kind is one nn_layer_kind value in the file of its family (dense.c,
 * conv.c, pool.c, norm.c, activation.c, dropout.c, reshape.c, embed.c,
 * recurrent.c, attention.c, block.c), listed in the table of table.c. The spec parser, shape inference, the parameter
 * store, initialisation and the forward loop (src/nn/) learn everything
 * about a kind from its entry. Adding a kind is a value in its family's
 * file and a line in the table, plus its ONNX form (app/onnx/export.c) and
 * its PyTorch module (scripts/torch_model.py).
 *
 * A run of layers that has a fused op (conv batchnorm relu maxpool(2), ...)
 * is a line in the fusion table, also in table.c.
 *
 * A block (residual, repeat: block.c) holds layers: in the stack it is
 * followed by the n_inner layers it holds, and its forward runs them with
 * layers_forward. The stack stays one flat array, so everything that walks
 * every layer (the parameter store, naming, checkpoints, a recurrent
 * layer's carried state) sees the inner layers like any other. */
#ifndef NN_LAYERS_LAYERS_H
#define NN_LAYERS_LAYERS_H

#include <stddef.h>

#include "nn/model.h"

/* An argument of a kind in specs: "out" in linear(128), "stride" in
 * conv(32,3,stride=2). The value lives in the nn_layer field at `field`. */
typedef struct layer_arg {
    const char *name;
    bool is_int;   /* an int field, else a float one */
    bool required; /* positional and must be given */
    double def;    /* the value when not given; LAYER_ARG_FIRST: the first argument's */
    double lo, hi; /* accepted range */
    size_t field;  /* offsetof(nn_layer, ...) */
} layer_arg;

#define LAYER_ARG_FIRST (-1.0) /* a pool's stride defaults to its kernel */
#define LAYER_MAX_ARGS 4

/* A tensor a layer stores: "weight" of fc1 is fc1.weight. Learned tensors go
 * to the model's params (the optimiser's), the others to its state. */
typedef struct layer_tensor {
    const char *suffix;
    int ndim, shape[NN_MAX_DIMS];
    bool learned, decay; /* decay: weight decay applies */
} layer_tensor;

#define LAYER_MAX_TENSORS 8 /* per kind; a block's inner layers have their own */

/* What one forward pass gives every layer besides its input. */
typedef struct layer_run {
    nn_ctx *ctx;
    nn_rng *dropout_rng; /* dropout's draws in training mode (may be NULL in evaluation) */
    /* A text model's input: B sequences of T token ids, row by row (embed
     * reads them), and each one's real length (NULL: all T). */
    const int *ids;
    int B, T;
    const int *lengths;
    /* Recurrent layers' carried state and attention layers' KV caches, one
     * slot per layer of `layers` (the stack being run): NULL starts from
     * zeros and keeps nothing. With them the T tokens are at positions
     * past .. past + T - 1 of their sequences (posembed adds those rows). */
    nn_layer *layers;
    nn_rnn_state *states;
    nn_kv_cache *caches;
    int past;
} layer_run;

struct nn_layer_kind {
    const char *name;    /* in specs: "linear" */
    const char *prefix;  /* of its tensors' names ("fc": fc1.weight), NULL when it has none */
    const char *example; /* shown when a required argument is missing: "linear(128)" */
    int n_args;
    layer_arg args[LAYER_MAX_ARGS];
    bool spatial;      /* takes images [C, H, W] (a model with one is a "cnn") */
    bool takes_tokens; /* takes token ids [T] (l->vocab of them): a text model's first layer */
    int state_vectors; /* carries [B, out] vectors from step to step (h: 1; h and c: 2), else 0 */
    bool caches_keys;  /* with a carried state, keeps the positions' keys and values (nn_kv_cache) */
    /* Needs the longest sequence the model takes (posembed's table has a row
     * per position): the model's in_shape[0], which its layers see as their
     * in_shape[0] of [T, F]. */
    bool needs_context;
    /* Shares the matrix of the model's first layer, an embed (unembed): the
     * planner sets l->tied, and the layer stores no tensor of its own. */
    bool ties_embedding;
    /* A block: its spec is name(ARGS, LAYERS) (name(LAYERS) without
     * arguments), and the n_inner layers after it in the stack are its own,
     * planned before it, so its infer sees their shapes. */
    bool holds_layers;
    /* Sets l->out_ndim/out_shape from l->in_ndim/in_shape; -1 with an error
     * that starts with `where` when the input does not fit. NULL: the output
     * has the input's shape. */
    int (*infer)(nn_layer *l, const char *where);
    /* Writes the tensors the layer stores, in order (weight, bias, ...), and
     * returns how many. NULL: none. */
    int (*tensors)(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]);
    /* Initial values of l->tensors (zeros before), drawn from rng. NULL: zeros. */
    void (*init)(nn_layer *l, nn_rng *rng);
    /* The layer on a batch: x [B, in_shape...] -> [B, out_shape...]. */
    nn_tensor *(*forward)(nn_layer *l, const layer_run *run, nn_tensor *x);
};

/* A run of layers the forward loop does as one fused op: `kinds` in a row,
 * and `applies` (NULL: always) true of them. forward runs l[0..n-1]. */
typedef struct layer_fusion {
    int n;
    const nn_layer_kind *kinds[4];
    bool (*applies)(const nn_layer *l);
    nn_tensor *(*forward)(nn_layer *l, const layer_run *run, nn_tensor *x);
} layer_fusion;

/* The kinds, by family. */
extern const nn_layer_kind layer_linear;
extern const nn_layer_kind layer_conv;
extern const nn_layer_kind layer_maxpool, layer_avgpool, layer_last, layer_mean;
extern const nn_layer_kind layer_batchnorm, layer_layernorm;
extern const nn_layer_kind layer_relu, layer_leakyrelu, layer_gelu, layer_sigmoid, layer_tanh;
extern const nn_layer_kind layer_dropout;
extern const nn_layer_kind layer_flatten;
extern const nn_layer_kind layer_embed, layer_posembed, layer_unembed;
extern const nn_layer_kind layer_attention;
extern const nn_layer_kind layer_rnn, layer_lstm, layer_gru;
extern const nn_layer_kind layer_residual, layer_repeat;

/* The fused forwards, by family. */
nn_tensor *conv_relu_forward(nn_layer *l, const layer_run *run, nn_tensor *x);
nn_tensor *conv_relu_maxpool_forward(nn_layer *l, const layer_run *run, nn_tensor *x);
nn_tensor *conv_batchnorm_relu_forward(nn_layer *l, const layer_run *run, nn_tensor *x);
nn_tensor *conv_batchnorm_relu_maxpool_forward(nn_layer *l, const layer_run *run, nn_tensor *x);
nn_tensor *batchnorm_relu_forward(nn_layer *l, const layer_run *run, nn_tensor *x);
nn_tensor *batchnorm_relu_maxpool_forward(nn_layer *l, const layer_run *run, nn_tensor *x);
nn_tensor *layernorm_gelu_forward(nn_layer *l, const layer_run *run, nn_tensor *x);
nn_tensor *layernorm_gelu_dropout_forward(nn_layer *l, const layer_run *run, nn_tensor *x);
/* A max pooling the fused ops can do: 2x2, stride 2. */
bool layer_is_maxpool_2x2(const nn_layer *l);

/* The tables (table.c). */
const nn_layer_kind *layer_kind_find(const char *name, size_t len);
/* "linear, conv, maxpool, ..." for messages. */
const char *layer_kind_names(void);
/* The fused op that starts at l[0] of the n layers left, or NULL. */
const layer_fusion *layer_fusion_at(const nn_layer *l, int n);

/* The layer loop over one batch: the n layers from l on (a block counts
 * with the layers it holds, which its forward runs), each run of them that
 * has a fused op (the fusion table) as that op, every other layer by its
 * kind's forward. The model runs its stack through it; a block runs the
 * layers it holds through it too, so a fused run never crosses a block's
 * edge. */
nn_tensor *layers_forward(nn_layer *l, int n, const layer_run *run, nn_tensor *x);
/* The last of the layers at the top level of the span of n from l (a
 * block's inner layers skipped): the one whose output leaves the span. */
const nn_layer *layers_span_last(const nn_layer *l, int n);

/* ---- what the families share ---- */

/* Output length of a window of k with stride and padding along one axis of
 * length in; -1 with an error naming the layer when it does not fit. */
int layer_window(const char *where, const char *axis, int in, int k, int stride, int pad, int *out);
/* "fc1" and "weight" -> "fc1.weight", for the caller to free. */
char *layer_tensor_name(const nn_layer *l, const char *suffix);
/* A shape as "[C, H, W]" into buf ("T" for a sequence's length, 0 in a plan); returns buf. */
const char *layer_shape_str(int ndim, const int *shape, char *buf, size_t cap);

#endif
