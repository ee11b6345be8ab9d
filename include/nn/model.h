/* Models: an input shape and an ordered stack of layers, each owning its
 * parameters in the model's one nn_params store, run by one forward loop.
 *
 * A model is written as a spec: layers separated by spaces, each `name` or
 * `name(args)`, positional numbers first, then key=value:
 *
 *   flatten linear(1024) relu linear(1024) relu linear(10)        an MLP
 *   conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten dropout(0.5) linear(10)
 *
 * Layers (shapes per example; the batch dimension comes first at run time):
 *   linear(OUT)                       [F] -> [OUT]                  fcN.weight [OUT,F], fcN.bias
 *   conv(OUT,K[,stride=S][,padding=P]) [C,H,W] -> [OUT,H',W']       convN.weight [OUT,C,K,K], convN.bias
 *   maxpool(K[,stride=S]), avgpool(K[,stride=S])  [C,H,W] -> [C,H',W'] (stride defaults to K)
 *   batchnorm                         over features after a linear, over channels after a conv:
 *                                     bnN.weight, bnN.bias, bnN.running_mean, bnN.running_var,
 *                                     bnN.num_batches_tracked (PyTorch's BatchNorm1d/2d)
 *   linear(OUT,bias=0)                the same without fcN.bias
 *   layernorm                         [F] -> [F]                    lnN.weight, lnN.bias
 *   relu, leakyrelu[(SLOPE)], gelu, sigmoid, tanh, dropout(P), flatten
 * Text (token ids [T] in, a text model's first layer is embed):
 *   embed(D)                          [T] ids -> [T, D]             embedN.weight [V, D]
 *   posembed                          [T, D] -> [T, D] + P[:T]      posN.weight [context, D]
 *   rnn(H), lstm(H), gru(H)           [T, D] -> [T, H]              PyTorch's weight_ih_l0, ...
 *   attention(HEADS[,causal=0][,bias=0])  [T, D] -> [T, D]          attnN.in_proj_weight [3D, D],
 *                                     attnN.in_proj_bias [3D], attnN.out_proj.weight [D, D],
 *                                     attnN.out_proj.bias [D] (torch.nn.MultiheadAttention's)
 *   unembed                           [T, D] -> [T, V]: h E^T with E the embed's matrix (tied)
 *   last, mean                        [T, H] -> [H]: each sequence's last real step, or their mean
 * Blocks hold layers of their own, written inside their parentheses:
 *   residual(LAYERS)                  x + f(x), f the LAYERS in order, which must
 *                                     keep the shape ([C,H,W] or [T,F]): resN
 *   repeat(N, LAYERS)                 LAYERS N times in a row, each copy with its
 *                                     own weights (repeat(2, linear(64) relu) is
 *                                     linear(64) relu linear(64) relu)
 *   e.g. a ResNet block: residual(conv(16,3,padding=1) batchnorm relu conv(16,3,padding=1) batchnorm) relu
 * Names and layouts are PyTorch's, numbered from 1 along the network per kind
 * (a block's layers included), so a PyTorch user can rebuild the model from
 * the spec and load the weights by name (scripts/torch_model.py). A layer
 * inside a residual block is named under it: res1.conv2.weight. */
#ifndef NN_MODEL_H
#define NN_MODEL_H

#include "nn/core.h"
#include "nn/safetensors.h"
#include "nn/api.h"

NN_BEGIN_DECLS

/* A layer kind: its spec name and arguments, shape rule, tensors,
 * initialisation and forward, one entry of the table in src/layers/table.c
 * (each kind's code is in the file of its family under src/layers/). */
typedef struct nn_layer_kind nn_layer_kind;

typedef struct nn_layer {
    const nn_layer_kind *kind;
    /* The spec's arguments; each kind uses those it declares. */
    int out;                     /* linear: features; conv: channels */
    int kernel, stride, padding; /* conv and pooling */
    float p;                     /* dropout: probability; leakyrelu: negative slope */
    /* Shapes of one example, filled in when the model is planned. */
    int in_ndim, in_shape[3], out_ndim, out_shape[3];
    /* A block (residual, repeat) holds the n_inner layers that follow it in
     * the stack (its own blocks' layers included): `times` copies of the
     * layers its spec names (repeat: N; residual: 1). Any other layer: 0, 1. */
    int n_inner, times;
    int heads, causal;   /* attention: heads, and 1 when a position sees only those before it */
    int bias;            /* linear, attention: 1 with biases (the default), 0 without */
    int vocab;           /* token ids in [0, vocab) when the input is token ids (embed), else 0 */
    const struct nn_layer *tied; /* unembed: the embed layer whose matrix it shares (the model's first) */
    char *name;          /* "fc1", "conv2", "bn1", "ln1", "res1", "res1.conv2"; NULL for a layer whose
                          * kind names nothing (relu, flatten, repeat, ...) */
    int n_tensors;
    nn_tensor **tensors; /* the kind's tensors in its order (weight, bias, ...): learned
                          * ones live in the model's params, the others in its state */
} nn_layer;

typedef struct nn_model {
    int in_ndim;     /* 3: an image; 1: a sequence of token ids */
    int in_shape[3]; /* [C, H, W] of one image (MNIST is [1, 28, 28]), or [T]: at most T tokens (the
                      * context of a model with learned positions), 0: any length */
    int vocab;       /* a text model's token ids are in [0, vocab); 0 for images */
    int classes;     /* width of the output (per position for a language model) */
    int n_layers;
    nn_layer *layers; /* in spec order, a block followed by the layers it holds */
    char *spec;       /* canonical (nn_model_spec) */
    nn_params params; /* learned: what the optimiser updates */
    nn_params state;  /* saved but not learned: BatchNorm's running statistics */
    float input_mean, input_std; /* the normalisation the model was trained with */
} nn_model;

#define NN_LAYER_NORM_EPS 1e-5f
#define NN_BATCH_NORM_EPS 1e-5f
#define NN_BATCH_NORM_MOMENTUM 0.1f

/* Parses a spec into layers and checks it against the input shape [C,H,W]:
 * every layer's arguments, that each layer fits what reaches it (a kernel no
 * larger than its input, no conv after flatten, ...), and, when classes > 0,
 * that the model ends in [classes] features. Returns 0, or -1 with an error
 * naming the layer and what is wrong. Allocates nothing: *m holds the plan,
 * ready for nn_model_build. */
int nn_model_plan(nn_model *m, const char *spec, const int in_shape[3], int classes);
/* The same for a text model: its input is sequences of token ids in
 * [0, vocab) of any length, and its first layer embed(D). It ends in
 * [classes] (e.g. `... last linear(18)`: a class per sequence) or in
 * [T, classes] (a score per position: a language model, classes = vocab). */
int nn_model_plan_text(nn_model *m, const char *spec, int vocab, int classes);
/* The same with the longest sequence the model will be given (a language
 * model's training context): a model with learned positions (posembed) has
 * that many, and takes no longer input; its in_shape is [context]. Other
 * models take any length and keep [0]. context 0: not known (a model with
 * posembed is then refused). */
int nn_model_plan_text_context(nn_model *m, const char *spec, int vocab, int classes, int context);
#define NN_MAX_VOCAB (1 << 21) /* every Unicode code point, and room for specials */
#define NN_MAX_CONTEXT 65536
/* Registers the planned model's parameters and state and initialises them
 * as PyTorch does (Linear and Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
 * weight and bias; norms: weight 1, bias 0; running variance 1). */
void nn_model_build(nn_model *m, nn_rng *rng);
/* Checks a spec's syntax and every layer's arguments (not yet the shapes,
 * which need the input): 0, or -1 with an error naming the layer. */
int nn_spec_check(const char *spec);
/* One layer in canonical spec form, e.g. "conv(32,3,padding=1)", a block
 * with the layers it holds (which follow it in the stack); writes at most cap
 * bytes and returns buf. */
char *nn_layer_str(const nn_layer *l, char *buf, size_t cap);
/* The kind's spec name: "linear", "conv", ... */
const char *nn_layer_kind_name(const nn_layer_kind *kind);
/* The layer's tensor called suffix ("weight", "running_mean"), or NULL. */
nn_tensor *nn_layer_tensor(const nn_layer *l, const char *suffix);
/* nn_model_plan then nn_model_build. */
int nn_model_init(nn_model *m, const char *spec, const int in_shape[3], int classes, nn_rng *rng);
void nn_model_free(nn_model *m);

/* x [B, C, H, W] (or [B, C*H*W]), already normalised -> logits [B, classes].
 * In training mode dropout draws from dropout_rng and BatchNorm uses and
 * updates batch statistics; dropout_rng may be NULL in evaluation mode. */
nn_tensor *nn_model_forward(nn_model *m, nn_ctx *ctx, nn_tensor *x, nn_rng *dropout_rng);

/* A text model on B sequences of T token ids (ids row by row, each in
 * [0, vocab)); lengths gives each sequence's real length (the rest is
 * padding; NULL: all T). -> [B, classes], or [B, T, classes] for a model
 * that scores every position. */
nn_tensor *nn_model_forward_tokens(nn_model *m, nn_ctx *ctx, const int *ids, int B, int T, const int *lengths,
                                   nn_rng *dropout_rng);

/* ---- generation ---- */

/* An attention layer's KV cache: the keys and values of the positions run
 * so far, which a later position attends to without recomputing them. */
typedef struct nn_kv_cache {
    float *keys, *values; /* [B, capacity, D] each: row t of sequence b is position t's, every head's side by side */
    int capacity, dim;    /* positions it has room for (the context, or grown as needed); D */
} nn_kv_cache;

/* What a text model carries from one call to the next for B sequences: the
 * recurrent layers' hidden (and LSTM cell) state and the attention layers'
 * KV caches, and the position the next token is at (learned positions add
 * its row). Empty (zeros, nothing cached) after init. */
typedef struct nn_model_state {
    int B, n_layers;
    nn_rnn_state *layers; /* one per layer of the model; h, c NULL for a layer with none */
    nn_kv_cache *caches;  /* one per layer of the model; keys, values NULL for a layer that is not attention */
    int steps;            /* positions held, the same for each sequence: the next token's position */
    int context;          /* the model's window (its in_shape[0], learned positions); 0: unbounded */
    int *window;          /* [B, context] the tokens at positions 0..steps-1, to recompute from when it slides */
} nn_model_state;
void nn_model_state_init(nn_model_state *s, const nn_model *m, int B);
void nn_model_state_free(nn_model_state *s);
/* The model on T more tokens of each of s->B sequences (ids [B, T]),
 * continuing from s and leaving it after the last of them, in evaluation
 * mode without gradients: the same scores as running the whole sequence so
 * far at once. -> [B, T, classes] (or [B, classes]).
 * A model with a context (learned positions) slides its window as nanoGPT's
 * generate crops the sequence: a token past the context is scored as the
 * last of the window of the `context` tokens that end with it. The state
 * then restarts from that window (positions 0.., recurrent states from
 * zeros, the KV caches recomputed over it), so each token past the context
 * costs a forward over the whole window, and the scores stay exactly those
 * of recomputing the cropped sequence. Attention must be causal (a later
 * token would change what an encoder's earlier positions see). */
nn_tensor *nn_model_forward_state(nn_model *m, nn_ctx *ctx, nn_model_state *s, const int *ids, int T);
/* Runs a language model on the prompt (n_prompt >= 1 token ids; of a longer
 * one than the model's context, the last `context`), then draws up to
 * `length` tokens one at a time (nn_sample_token), each fed back in with the
 * state carried (nn_model_forward_state: recurrent states, KV caches).
 * on_token (may be NULL) gets each token as it is made;
 * non-zero from it stops. Returns how many tokens were made. */
int nn_generate(nn_model *m, const int *prompt, int n_prompt, int length, float temperature, int top_k,
                nn_rng *rng, int (*on_token)(void *user, int id), void *user);

/* The next token drawn from logits [V]: temperature 0 (or top_k 1) gives
 * the most probable (the first of equals); otherwise softmax(logits /
 * temperature) over the top_k most probable tokens (0: all; ties with the
 * k-th stay in), drawn from rng (one number per call). */
int nn_sample_token(const float *logits, int V, float temperature, int top_k, nn_rng *rng);

/* ---- attention weights ---- */

/* What one attention layer attends to over a sequence of T tokens. */
typedef struct nn_attention_map {
    int layer;        /* its index in the model's layers */
    const char *name; /* its name ("res1.attn1"), owned by the model */
    int heads, T;
    bool causal;      /* a query sees the keys at and before it only */
    float *weights;   /* [heads, T, T]: row i of head h is softmax(q_i K^T / sqrt(hd)) over the keys,
                       * query position i's weights on key positions 0..T-1; each row sums to 1,
                       * and a masked key (causal: j > i) has exactly 0 */
} nn_attention_map;

/* Runs the text model on one sequence of T token ids (at most its context)
 * in evaluation mode and gives each attention layer's weights, in the order
 * of the layers, in *maps (one per attention layer: heads x T x T floats
 * each; nn_attention_maps_free frees them). The weights are recomputed from
 * each layer's input, in double, as the forward passes it (the attention op
 * itself never stores them). Returns how many maps there are (0, *maps
 * NULL: the model has no attention layer), or -1 with the error for a model
 * that does not take tokens, T < 1, T past the context or an id out of
 * range. */
int nn_model_attention_maps(const nn_model *m, const int *ids, int T, nn_attention_map **maps);
void nn_attention_maps_free(nn_attention_map *maps, int n);

/* Classifies one image: pixels are the C*H*W values of one example in [0, 1]
 * (as nn_image_load_mnist gives them); they are normalised with the model's
 * input_mean/input_std and run in evaluation mode without gradients (the
 * context's settings are restored). Writes the classes' probabilities into
 * probs and returns the most probable class. */
int nn_model_predict(nn_model *m, nn_ctx *ctx, const float *pixels, float *probs);

/* The model's spec in canonical form (defaults left out), owned by the model. */
const char *nn_model_spec(const nn_model *m);
/* Writes the model as a table, one row per layer: name, output shape and
 * parameter count, with the totals (like Keras' summary()). */
void nn_model_summary(const nn_model *m, FILE *f);
/* Total learned parameters. */
size_t nn_model_param_count(const nn_model *m);

/* The MLP of the course as a spec: `flatten [dropout(input_dropout)]`, then
 * per hidden width `linear(W) [layernorm] act [dropout(p)]`, then
 * `linear(classes)`. No hidden widths gives softmax regression. */
typedef enum nn_act { NN_ACT_RELU, NN_ACT_GELU, NN_ACT_SIGMOID, NN_ACT_TANH } nn_act;
typedef struct nn_mlp_config {
    int n_hidden;
    const int *hidden; /* n_hidden widths */
    int classes;
    nn_act act;
    bool layer_norm;
    float dropout;       /* after each hidden activation; 0 = none */
    float input_dropout; /* on the input pixels, before the first linear; 0 = none */
} nn_mlp_config;
/* The activation called name; -1 with the error set for an unknown one. */
int nn_act_parse(const char *name, nn_act *act);
const char *nn_act_name(nn_act act);
/* The spec of an MLP, for the caller to free(). */
char *nn_mlp_spec(const nn_mlp_config *c);

/* Checkpoints in safetensors: every parameter and state tensor under its
 * name, and in the metadata nn.arch ("linear", "mlp", "cnn" or "text"),
 * nn.spec, nn.input_shape ("1,28,28" for images, "tokens(V)" for token ids
 * in [0, V)), nn.input_mean and nn.input_std, plus any extra pairs and
 * tensors given (their names must not clash with the model's). */
int nn_model_save(const nn_model *m, const char *path);
/* The same with extra metadata pairs and tensors (a training run's state). */
int nn_model_save_with(const nn_model *m, const char *path, const nn_st_entry *extra_tensors, int n_extra_tensors,
                       const char *const *extra_keys, const char *const *extra_values, int n_extra);
/* Loads a checkpoint written by nn_model_save, by an earlier release (MLPs
 * described by nn.layers, nn.act, nn.norm, nn.dropout), or by PyTorch with
 * the same names and metadata. The spec and every tensor's shape are checked
 * before anything is allocated, and every value must be finite. Tensors
 * named "train.*" (training state) are ignored. */
int nn_model_load(nn_model *m, const char *path);
/* The same from an already parsed file; path is only for messages. */
int nn_model_load_st(nn_model *m, const nn_safetensors *st, const char *path);

NN_END_DECLS

#endif
