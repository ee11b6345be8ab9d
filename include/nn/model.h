/* Models built from the ops: softmax regression and the multi-layer
 * perceptron, with their parameters registered in one nn_params store and
 * checkpoints in safetensors with PyTorch's names and layout.
 *
 * A hidden block is Linear -> [LayerNorm] -> activation -> [Dropout]; the last
 * Linear gives the logits. Optional dropout on the input comes first. Parameter names: fc1.weight, fc1.bias, ln1.weight,
 * ln1.bias, ..., numbered from 1 along the network, as a PyTorch user would
 * name them. Softmax regression ("linear") is the MLP with no hidden layer. */
#ifndef NN_MODEL_H
#define NN_MODEL_H

#include "nn/core.h"
#include "nn/safetensors.h"

#define NN_MLP_MAX_LAYERS 8 /* Linear layers, hidden ones plus the output */

typedef enum nn_act { NN_ACT_RELU, NN_ACT_GELU, NN_ACT_SIGMOID, NN_ACT_TANH } nn_act;

typedef struct nn_mlp_config {
    int n_linear;                       /* Linear layers (1 = softmax regression) */
    int sizes[NN_MLP_MAX_LAYERS + 1];   /* widths: input, hidden..., classes */
    nn_act act;
    bool layer_norm;
    float dropout;       /* after each hidden activation; 0 = none */
    float input_dropout; /* on the input pixels, before the first linear; 0 = none */
} nn_mlp_config;

typedef struct nn_mlp {
    nn_mlp_config cfg;
    nn_params params;
    nn_tensor *fc_w[NN_MLP_MAX_LAYERS], *fc_b[NN_MLP_MAX_LAYERS];
    nn_tensor *ln_w[NN_MLP_MAX_LAYERS], *ln_b[NN_MLP_MAX_LAYERS];
    float input_mean, input_std; /* the normalisation the model was trained with */
} nn_mlp;

#define NN_LAYER_NORM_EPS 1e-5f

int nn_act_parse(const char *name, nn_act *act);
const char *nn_act_name(nn_act act);

/* Builds the model and initialises it as PyTorch would (nn.Linear's uniform
 * fan-in default; LayerNorm weight 1, bias 0). */
void nn_mlp_init(nn_mlp *m, const nn_mlp_config *cfg, nn_rng *rng);
void nn_mlp_free(nn_mlp *m);
/* x [B, sizes[0]] already normalised -> logits [B, classes]. dropout_rng may
 * be NULL when the context is not in training mode or dropout is 0. */
nn_tensor *nn_mlp_forward(nn_mlp *m, nn_ctx *ctx, nn_tensor *x, nn_rng *dropout_rng);

/* Checkpoints. Metadata keys: nn.arch ("linear"|"mlp"), nn.layers
 * ("784,1024,10"), nn.act, nn.norm ("none"|"layer"), nn.dropout,
 * nn.input_mean, nn.input_std, nn.input_dropout (optional when loading: 0),
 * plus any extra pairs given. */
int nn_mlp_save(const nn_mlp *m, const char *path, const char *const *extra_keys,
                const char *const *extra_values, int n_extra);
/* The same with extra tensors (names must not clash with the model's), as
 * used for the training state of a resumable checkpoint. */
int nn_mlp_save_with(const nn_mlp *m, const char *path, const nn_st_entry *extra_tensors, int n_extra_tensors,
                     const char *const *extra_keys, const char *const *extra_values, int n_extra);
/* Loads a checkpoint written by nn_mlp_save (or by PyTorch with the same
 * names and metadata), validating the metadata and every tensor's shape.
 * Tensors named "train.*" (training state) are ignored. */
int nn_mlp_load(nn_mlp *m, const char *path);
/* The same from an already parsed file; path is only for messages. */
int nn_mlp_load_st(nn_mlp *m, const nn_safetensors *st, const char *path);

#endif
