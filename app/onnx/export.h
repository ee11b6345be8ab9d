/* nn export --onnx: a model as an ONNX graph that other runtimes can run.
 *
 * The graph takes `image`, float32 [N, C, H, W] (N symbolic; MNIST models are
 * [N, 1, 28, 28]) of raw pixels in [0, 1], applies the model's input
 * normalisation (x - input_mean) / input_std, runs every layer in evaluation
 * mode (BatchNorm with its running statistics, no dropout) and gives
 * `logits`, [N, classes]. A text model (m->vocab > 0) takes `tokens`,
 * int64 ids [N, T] (T symbolic too, every sequence of a batch T long: no
 * lengths), and gives [N, classes] or, when it scores every position,
 * [N, T, classes]; its rnn/lstm/gru layers become ONNX's RNN, LSTM and GRU
 * with the gates reordered, attention the matrix products, the causal mask
 * and Softmax, posembed the first T rows of its table (T at most the
 * context), unembed a MatMul by the embedding's own initializer, mean a
 * ReduceMean over all T steps. A residual block is its layers' nodes and an
 * Add of its input and their output; a repeat, its copies' nodes in a row.
 * Weights are initializers under their checkpoint names (fc1.weight,
 * conv1.bias, bn1.running_mean, res1.conv2.weight, ...; a recurrent layer's,
 * reordered, as lstm1.W, .R, .B). docs/onnx.md lists the operator each
 * layer becomes. */
#ifndef NN_APP_ONNX_EXPORT_H
#define NN_APP_ONNX_EXPORT_H

#include <stddef.h>

#include "nn/model.h"

/* The operator set the graph imports. 17 is the first with
 * LayerNormalization; ONNX 1.12 (Debian 12) checks up to it. */
#define ONNX_EXPORT_OPSET 17

typedef struct onnx_export_info {
    int nodes, initializers;
    long ir_version, opset;
    size_t bytes; /* of the file written */
} onnx_export_info;

/* Writes m to path as an ONNX ModelProto, atomically (a temporary file
 * renamed over path). Returns 0 and fills *info (may be NULL), or -1 with
 * the error set: a layer that has no ONNX form (named), a model too large for
 * one protobuf, or the file (named with the reason). */
int onnx_export(const nn_model *m, const char *path, onnx_export_info *info);

#endif
