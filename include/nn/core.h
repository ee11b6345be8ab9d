/* The core of nn: tensors, the arena they live in, the tape that records the
 * computation graph, and the ops with their gradients.
 *
 *   nn_ctx *ctx = nn_ctx_new(0);
 *   nn_tensor *x = nn_input(ctx, "x", 2, (int[]){B, 784});   // fill x->data
 *   nn_tensor *h = nn_relu(ctx, nn_linear(ctx, x, W, b));    // recorded on the tape
 *   nn_tensor *loss = nn_cross_entropy(ctx, h, labels, 0.0f);
 *   nn_backward(ctx, loss);                                   // W->grad, b->grad filled
 *   nn_ctx_reset(ctx);                                        // next step
 *
 * Shapes follow NumPy: row-major, the last dimension is contiguous. A scalar
 * has ndim 0 and size 1. */
#ifndef NN_CORE_H
#define NN_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "nn/error.h"
#include "nn/rng.h"
#include "nn/api.h"

NN_BEGIN_DECLS

#define NN_MAX_DIMS 4

/* What a tensor is for. The role decides who owns its memory and whether a
 * gradient is kept for it, and lets the library say what a caller forgot. */
typedef enum nn_role {
    NN_INPUT,      /* data fed in each step: no gradient */
    NN_PARAM,      /* learnable: lives in an nn_params store, gradient accumulated */
    NN_ACTIVATION, /* produced by an op during a step: lives in the arena */
    NN_LOSS,       /* the scalar nn_backward started from */
} nn_role;

typedef struct nn_tensor {
    float *data;
    float *grad; /* same size as data; NULL when no gradient flows to this tensor */
    int ndim;
    int shape[NN_MAX_DIMS];
    size_t size; /* number of elements */
    nn_role role;
    const char *name; /* for the graph, checkpoints and messages; may be NULL */
    int node;         /* index of the tape node that produced it, -1 for leaves */
    unsigned step;    /* arena generation it belongs to (0 for parameters) */
} nn_tensor;

/* Misuse of the API is a programming error: abort with a message that says
 * what was wrong. Always on (cheap next to the work of an op). */
#define NN_CHECK(cond, ...)                                                      \
    do {                                                                         \
        if (!(cond)) nn_fatal_at(__FILE__, __LINE__, __VA_ARGS__);               \
    } while (0)

/* Writes "[2, 3]" into buf (at most cap bytes, 64 hold any shape) and returns buf. */
const char *nn_shape_str(const nn_tensor *t, char *buf, size_t cap);
bool nn_same_shape(const nn_tensor *a, const nn_tensor *b);

/* ---- context: arena + tape ------------------------------------------------ */

typedef struct nn_ctx nn_ctx;

/* arena_bytes is the first block's size (0 = a default); the arena grows when a
 * step needs more and settles on one block big enough for a whole step, so a
 * training loop stops calling malloc after its first step. */
nn_ctx *nn_ctx_new(size_t arena_bytes);
void nn_ctx_free(nn_ctx *ctx);
/* Forgets the tape and every activation of the last step (tensors created
 * before the reset must not be used after it; ops check this). */
void nn_ctx_reset(nn_ctx *ctx);

/* Gradient recording (on by default). Off = inference: nothing is recorded and
 * no gradient memory is taken. Returns the previous setting. */
bool nn_set_grad_enabled(nn_ctx *ctx, bool on);
bool nn_grad_enabled(const nn_ctx *ctx);
/* Training mode (on by default) decides what dropout and batch norm do; off =
 * evaluation, where dropout is the identity and batch norm uses its running
 * statistics. Returns the previous setting. */
bool nn_set_training(nn_ctx *ctx, bool on);
bool nn_training(const nn_ctx *ctx);

/* Memory from the arena, valid until the next nn_ctx_reset. */
void *nn_arena_alloc(nn_ctx *ctx, size_t bytes);

/* An input tensor in the arena (uninitialised data); fill x->data. */
nn_tensor *nn_input(nn_ctx *ctx, const char *name, int ndim, const int *shape);

/* Runs the tape backwards from a scalar loss, accumulating into the grad of
 * every parameter the loss depends on (a tensor used twice gets the sum).
 * Parameter gradients are accumulated, not overwritten: zero them first
 * (nn_params_zero_grad). Can be called once per step. */
void nn_backward(nn_ctx *ctx, nn_tensor *loss);

/* Writes the recorded graph in Graphviz DOT: one box per op with its name and
 * output shape, ellipses for inputs, parameters highlighted. A recurrent op
 * (rnn, lstm, gru) over at most 8 steps is drawn unrolled, one cell per step
 * (x_t and h_{t-1}, and c_{t-1}, into cell t, h_t out) fed by one node of
 * shared weights; a longer one stays one box labelled with its T. A
 * residual connection (an add of x and something computed from x) is drawn
 * as a cluster with its skip edge marked; an op's named output shows its
 * name (attention: its heads and mask); reshapes that keep the last
 * dimension are not drawn. Display only: the tape is not changed. Returns 0
 * or -1 with the error set. */
int nn_graph_write_dot(const nn_ctx *ctx, FILE *f);
int nn_graph_save_dot(const nn_ctx *ctx, const char *path);
int nn_graph_nodes(const nn_ctx *ctx);

/* ---- parameters ------------------------------------------------------------ */

/* All parameters of a model in one buffer, their gradients in another, with
 * named tensor views into both: zeroing gradients is one pass over one
 * buffer, an optimiser update is one loop, and a checkpoint is one pass.
 * The store grows as tensors are added; it has no limit on their number or
 * on the length of their names. */
typedef struct nn_params {
    float *data;
    float *grad;
    size_t count; /* floats in data (and in grad) */
    int n;        /* tensors */
    nn_tensor **tensors; /* n views; each is allocated once, so a pointer to it stays valid */
    bool *decay;         /* n flags: weight decay applies (weights yes; biases, norms no) */
    int cap;             /* room in tensors and decay */
} nn_params;

void nn_params_init(nn_params *p);
void nn_params_free(nn_params *p);
/* Adds a zero-initialised parameter under a copy of name. Pointers returned
 * by earlier calls stay valid, but their data pointers move: add every
 * parameter before using any. */
nn_tensor *nn_params_add(nn_params *p, const char *name, int ndim, const int *shape, bool decay);
nn_tensor *nn_params_find(nn_params *p, const char *name);
void nn_params_zero_grad(nn_params *p);

/* ---- initialisers -------------------------------------------------------- */

/* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's nn.Linear default for weights
 * (kaiming_uniform_ with a = sqrt(5)) and biases. */
void nn_init_uniform_fan_in(nn_tensor *t, int fan_in, nn_rng *rng);
/* He/Kaiming uniform for ReLU: U(-sqrt(6/fan_in), sqrt(6/fan_in)). */
void nn_init_kaiming_uniform(nn_tensor *t, int fan_in, nn_rng *rng);
/* Glorot/Xavier uniform: U(-sqrt(6/(fan_in+fan_out)), +...). */
void nn_init_xavier_uniform(nn_tensor *t, int fan_in, int fan_out, nn_rng *rng);
void nn_init_normal(nn_tensor *t, float mean, float std, nn_rng *rng);
void nn_init_const(nn_tensor *t, float value);

/* ---- ops (forward; each records its backward on the tape) ----------------- */

/* [M,K] x [K,N] -> [M,N] */
nn_tensor *nn_matmul(nn_ctx *ctx, nn_tensor *a, nn_tensor *b);
/* y = x W^T + b: x [B,in], W [out,in] (PyTorch's layout), b [out] or NULL -> [B,out] */
nn_tensor *nn_linear(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b);

nn_tensor *nn_add(nn_ctx *ctx, nn_tensor *a, nn_tensor *b);      /* same shapes */
nn_tensor *nn_sub(nn_ctx *ctx, nn_tensor *a, nn_tensor *b);      /* same shapes */
nn_tensor *nn_mul(nn_ctx *ctx, nn_tensor *a, nn_tensor *b);      /* same shapes, elementwise */
nn_tensor *nn_add_bias(nn_ctx *ctx, nn_tensor *x, nn_tensor *b); /* x [..,N] + b [N] */
nn_tensor *nn_scale(nn_ctx *ctx, nn_tensor *a, float s);

nn_tensor *nn_sum(nn_ctx *ctx, nn_tensor *a);  /* -> scalar */
nn_tensor *nn_mean(nn_ctx *ctx, nn_tensor *a); /* -> scalar */

/* Same data, new shape (element counts must match); -1 in one dim is inferred. */
nn_tensor *nn_reshape(nn_ctx *ctx, nn_tensor *a, int ndim, const int *shape);
/* [B, ...] -> [B, rest] */
nn_tensor *nn_flatten(nn_ctx *ctx, nn_tensor *a);

nn_tensor *nn_relu(nn_ctx *ctx, nn_tensor *a);
nn_tensor *nn_leaky_relu(nn_ctx *ctx, nn_tensor *a, float slope);
nn_tensor *nn_sigmoid(nn_ctx *ctx, nn_tensor *a);
nn_tensor *nn_tanh(nn_ctx *ctx, nn_tensor *a);
/* GELU: x * Phi(x) with the exact erf, or PyTorch's approximate='tanh' form. */
nn_tensor *nn_gelu(nn_ctx *ctx, nn_tensor *a, bool tanh_approx);

/* Over the last dimension. */
nn_tensor *nn_softmax(nn_ctx *ctx, nn_tensor *a);
nn_tensor *nn_log_softmax(nn_ctx *ctx, nn_tensor *a);

/* Mean over the batch of -log softmax(logits)[label], fused and stable.
 * logits [B,C], labels B ints in [0,C) or negative: a row whose label is
 * negative (NN_IGNORE_LABEL) is ignored, as PyTorch's ignore_index: it adds
 * nothing to the loss and gets no gradient, and the mean is over the rows
 * that count (the loss is 0, with no gradient, when none does). With
 * smoothing s the target is (1-s) one-hot + s/C uniform, as in PyTorch's
 * label_smoothing. -> scalar */
#define NN_IGNORE_LABEL (-1)
nn_tensor *nn_cross_entropy(nn_ctx *ctx, nn_tensor *logits, const int *labels, float smoothing);
/* Mean of (pred - target)^2 over all elements. -> scalar */
nn_tensor *nn_mse(nn_ctx *ctx, nn_tensor *pred, nn_tensor *target);

/* Inverted dropout: in training mode zero each element with probability p and
 * scale the rest by 1/(1-p); identity in evaluation mode or when p == 0. */
nn_tensor *nn_dropout(nn_ctx *ctx, nn_tensor *a, float p, nn_rng *rng);

/* LayerNorm over the last dimension with learnable weight and bias [N]. */
nn_tensor *nn_layer_norm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float eps);

/* 2-D convolution (cross-correlation) as torch.nn.functional.conv2d, zero padding:
 * x [B,C,H,W], w [O,C,KH,KW] (PyTorch's layout), b [O] or NULL -> [B,O,OH,OW]
 * with OH = (H + 2 padding - KH) / stride + 1 (floor), OW likewise. */
nn_tensor *nn_conv2d(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding);
/* Max and mean over k x k windows, no padding, as F.max_pool2d / F.avg_pool2d:
 * [B,C,H,W] -> [B,C,OH,OW], OH = (H - k) / stride + 1 (floor). On ties the
 * gradient goes to the first maximum in row-major order, as in PyTorch. */
nn_tensor *nn_max_pool2d(nn_ctx *ctx, nn_tensor *x, int k, int stride);
nn_tensor *nn_avg_pool2d(nn_ctx *ctx, nn_tensor *x, int k, int stride);
/* Batch normalisation per channel C of x [B,C] (BatchNorm1d) or [B,C,H,W]
 * (BatchNorm2d), weight and bias [C]. Training mode normalises with the
 * batch's mean and biased variance and, when running_mean/running_var [C]
 * are not NULL, updates them in place as PyTorch does:
 *   rm = (1 - momentum) rm + momentum mean,  rv = (1 - momentum) rv + momentum var n/(n-1)
 * Evaluation mode normalises with running_mean/running_var (required). */
nn_tensor *nn_batch_norm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b, float *running_mean,
                         float *running_var, float momentum, float eps);

/* ---- sequences (B sequences of T steps, batch first) ---------------------- */

/* Rows of a table by index, as F.embedding: weight [V,D], ids B*T ints in
 * [0,V) (row-major [B,T]; copied) -> [B,T,D]. Repeated ids add their
 * gradients into one row. */
nn_tensor *nn_embedding(nn_ctx *ctx, nn_tensor *weight, const int *ids, int B, int T);

/* The state a recurrent layer starts from and ends in: h and, for the LSTM,
 * c, [B,H] floats each, owned by the caller. */
typedef struct nn_rnn_state {
    float *h;
    float *c; /* LSTM only */
} nn_rnn_state;

/* One recurrent layer over whole sequences, as PyTorch's nn.RNN (tanh),
 * nn.LSTM and nn.GRU with batch_first=True, in their gate order and layouts
 * (G = 1, 4 (i,f,g,o), 3 (r,z,n)):
 *   x [B,T,D], w_ih [G*H,D], w_hh [G*H,H], b_ih, b_hh [G*H] or both NULL
 *   -> every step's hidden state [B,T,H]
 * state NULL: the sequences start from zeros. Otherwise they start from
 * state->h (and state->c) and the final state is written back into it, so a
 * sequence run in pieces with one state gives the outputs of one run; no
 * gradient flows into the initial state. */
nn_tensor *nn_rnn(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                  nn_rnn_state *state);
nn_tensor *nn_lstm(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                   nn_rnn_state *state);
nn_tensor *nn_gru(nn_ctx *ctx, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh, nn_tensor *b_ih, nn_tensor *b_hh,
                  nn_rnn_state *state);
/* The same over a padded batch: sequence b is its first lengths[b] steps
 * (lengths: B ints in [1,T]; NULL = all T), gates = 1 (nn_rnn), 4
 * (nn_lstm) or 3 (nn_gru). The steps past a sequence's end are not
 * computed: their outputs are 0 (as PyTorch's pack_padded_sequence and
 * pad_packed_sequence give) and nothing flows back from them; the real
 * steps' outputs and gradients are those of the sequence run alone. With a
 * state, the final state is each sequence's at its last real step. */
nn_tensor *nn_recurrent_padded(nn_ctx *ctx, int gates, nn_tensor *x, nn_tensor *w_ih, nn_tensor *w_hh,
                               nn_tensor *b_ih, nn_tensor *b_hh, nn_rnn_state *state, const int *lengths);
/* Each sequence's last real step: x [B,T,H] -> [B,H] with row b the step
 * lengths[b] - 1 (lengths: B ints in [1,T]; NULL = all T). */
nn_tensor *nn_last_step(nn_ctx *ctx, nn_tensor *x, const int *lengths);
/* The mean of each sequence's real steps: x [B,T,F] -> [B,F], row b the
 * average of steps 0 .. lengths[b] - 1 (lengths: B ints in [1,T]; NULL = all T). */
nn_tensor *nn_mean_steps(nn_ctx *ctx, nn_tensor *x, const int *lengths);
/* Learned positions added to every sequence: x [B,T,F] + pos[0..T) of the
 * table pos [T_max,F] (T <= T_max) -> [B,T,F]. */
nn_tensor *nn_add_positions(nn_ctx *ctx, nn_tensor *x, nn_tensor *pos);
/* The same with the steps at positions first .. first+T-1 (T steps that
 * continue a sequence, as generation feeds them): x + pos[first..first+T). */
nn_tensor *nn_add_positions_at(nn_ctx *ctx, nn_tensor *x, nn_tensor *pos, int first);
/* Multi-head self-attention, fused (scores, mask, softmax, weighted sum):
 * x [B,T,3D] the QKV projection's output (q, k, v side by side, each D =
 * heads x hd, head h in columns h*hd..(h+1)*hd-1 of each) -> [B,T,D], the
 * heads' outputs side by side: for each head softmax(q k^T / sqrt(hd)) v,
 * with key j hidden from query i when j > i (causal) or j >= lengths[b]
 * (padding; lengths: B ints in [1,T], NULL = all T). As
 * torch.nn.MultiheadAttention between its projections, with the causal
 * attn_mask and key_padding_mask. */
nn_tensor *nn_attention(nn_ctx *ctx, nn_tensor *x, int heads, bool causal, const int *lengths);
/* The causal attention of T new positions of each of B sequences that
 * continue `past` positions run before, whose keys and values are cached (a
 * KV cache, for generation; evaluation only, nothing is recorded):
 * x [B,T,3D] the new positions' QKV projection. Their keys and values are
 * written into keys and values [B,capacity,D] (sequence b's row past+t,
 * past+T <= capacity), then the query of new position t attends to cached
 * positions 0..past+t. -> [B,T,D]: what nn_attention gives for those rows
 * when run on all past+T positions at once. */
nn_tensor *nn_attention_cached(nn_ctx *ctx, nn_tensor *x, int heads, float *keys, float *values, int capacity,
                               int past);

NN_END_DECLS

#endif
