/* Recurrent layers over whole sequences, as torch.nn.RNN (tanh), nn.LSTM and
 * nn.GRU (one layer, batch_first), every step's hidden state out:
 *   rnn(H), lstm(H), gru(H)    [T, D] -> [T, H]
 *   rnnN / lstmN / gruN .weight_ih_l0 [G H, D], .weight_hh_l0 [G H, H],
 *   .bias_ih_l0 [G H], .bias_hh_l0 [G H]; G = 1, 4 (gates i, f, g, o), 3 (r, z, n)
 * Stacking is two layers in the spec. With a carried state (generation) a
 * layer starts from where the last call ended (ops/rnn.c). */
#include <math.h>

#include "layers/layers.h"

enum { WEIGHT_IH, WEIGHT_HH, BIAS_IH, BIAS_HH };

static int gates(const nn_layer *l) { return l->kind == &layer_lstm ? 4 : l->kind == &layer_gru ? 3 : 1; }

static int recurrent_infer(nn_layer *l, const char *where) {
    if (l->in_ndim != 2) {
        char in[48];
        return nn_error("%s: runs over a sequence [T, D], but its input is %s (put embed(D) first)", where,
                        layer_shape_str(l->in_ndim, l->in_shape, in, sizeof in));
    }
    l->out_shape[1] = l->out;
    return 0;
}

static int recurrent_tensors(const nn_layer *l, layer_tensor out[LAYER_MAX_TENSORS]) {
    int G = gates(l), H = l->out, D = l->in_shape[1];
    out[WEIGHT_IH] = (layer_tensor){"weight_ih_l0", 2, {G * H, D}, .learned = true, .decay = true};
    out[WEIGHT_HH] = (layer_tensor){"weight_hh_l0", 2, {G * H, H}, .learned = true, .decay = true};
    out[BIAS_IH] = (layer_tensor){"bias_ih_l0", 1, {G * H}, .learned = true};
    out[BIAS_HH] = (layer_tensor){"bias_hh_l0", 1, {G * H}, .learned = true};
    return 4;
}

/* PyTorch's default: every tensor U(-1/sqrt(H), 1/sqrt(H)). */
static void recurrent_init(nn_layer *l, nn_rng *rng) {
    for (int k = 0; k < 4; k++) nn_init_uniform_fan_in(l->tensors[k], l->out, rng);
}

/* A padded batch's steps past each sequence's end are skipped (outputs 0):
 * what follows reads a sequence's real steps only (last, mean). */
static nn_tensor *recurrent_forward(nn_layer *l, const layer_run *run, nn_tensor *x) {
    nn_rnn_state *state = run->states ? &run->states[l - run->layers] : NULL;
    return nn_recurrent_padded(run->ctx, gates(l), x, l->tensors[WEIGHT_IH], l->tensors[WEIGHT_HH],
                               l->tensors[BIAS_IH], l->tensors[BIAS_HH], state, run->lengths);
}

#define RECURRENT(kind, example_, carried)                                                                      \
    .name = #kind, .prefix = #kind, .example = example_, .n_args = 1,                                          \
    .args = {{"hidden", true, true, 0, 1, 65536, offsetof(nn_layer, out)}}, .state_vectors = carried,         \
    .infer = recurrent_infer, .tensors = recurrent_tensors, .init = recurrent_init, .forward = recurrent_forward

const nn_layer_kind layer_rnn = {RECURRENT(rnn, "rnn(128)", 1)};
const nn_layer_kind layer_lstm = {RECURRENT(lstm, "lstm(256)", 2)};
const nn_layer_kind layer_gru = {RECURRENT(gru, "gru(128)", 1)};
