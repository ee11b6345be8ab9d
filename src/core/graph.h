/* The internal side of the computation graph, shared by the core and the ops:
 * the context (arena + tape), the tape node, and the table of ops. */
#ifndef NN_GRAPH_H
#define NN_GRAPH_H

#include "nn/core.h"

/* Every op, in one table (src/core/ops_table.c): its name and its backward. */
typedef enum nn_op {
    NN_OP_MATMUL,
    NN_OP_LINEAR,
    NN_OP_ADD,
    NN_OP_SUB,
    NN_OP_MUL,
    NN_OP_ADD_BIAS,
    NN_OP_SCALE,
    NN_OP_SUM,
    NN_OP_MEAN,
    NN_OP_RESHAPE,
    NN_OP_RELU,
    NN_OP_LEAKY_RELU,
    NN_OP_SIGMOID,
    NN_OP_TANH,
    NN_OP_GELU,
    NN_OP_SOFTMAX,
    NN_OP_LOG_SOFTMAX,
    NN_OP_CROSS_ENTROPY,
    NN_OP_MSE,
    NN_OP_DROPOUT,
    NN_OP_LAYER_NORM,
    NN_OP_CONV2D,
    NN_OP_CONV2D_RELU,
    NN_OP_CONV2D_RELU_MAXPOOL,
    NN_OP_CONV2D_BN_RELU,
    NN_OP_CONV2D_BN_RELU_MAXPOOL,
    NN_OP_MAX_POOL2D,
    NN_OP_AVG_POOL2D,
    NN_OP_BATCH_NORM,
    NN_OP_BATCH_NORM_RELU,
    NN_OP_BATCH_NORM_RELU_MAXPOOL,
    NN_OP_LAYER_NORM_GELU,
    NN_OP_LAYER_NORM_GELU_DROPOUT,
    NN_OP_EMBEDDING,
    NN_OP_RNN,
    NN_OP_LSTM,
    NN_OP_GRU,
    NN_OP_LAST_STEP,
    NN_OP_ATTENTION,
    NN_OP_ADD_POSITIONS,
    NN_OP_MEAN_STEPS,
    NN_OP_COUNT
} nn_op;

#define NN_NODE_MAX_INPUTS 5

/* One recorded op: its inputs, its output, and what its backward needs. */
typedef struct nn_node {
    nn_op op;
    nn_tensor *out;
    nn_tensor *in[NN_NODE_MAX_INPUTS];
    int n_in;
    float attr;    /* scalar attribute: slope, scale, p, eps, smoothing */
    int flag;      /* integer attribute: e.g. GELU's tanh form, batch norm's mode */
    int iattr[4];  /* integer attributes: stride, padding, kernel size */
    void *saved;   /* arena memory the backward reads (mask, statistics, labels) */
    /* Set by nn_backward for an op that overwrites (nn_op_info): bit k when
     * in[k]'s gradient has not been written yet this backward, so the op
     * stores its gradient there instead of adding it to zeros. */
    unsigned fresh;
} nn_node;

/* Whether in[k]'s gradient is the op's to store rather than add to. */
static inline bool nn_node_fresh(const nn_node *n, int k) { return n->fresh >> k & 1u; }

typedef void (*nn_backward_fn)(nn_node *node);

typedef struct nn_op_info {
    const char *name;
    nn_backward_fn backward;
    /* Bit k: the backward writes every element of in[k]'s gradient, and
     * stores (not adds) when nn_node_fresh(node, k) says it is unwritten:
     * the buffer then needs no zeroing first. */
    unsigned overwrites;
} nn_op_info;

extern const nn_op_info nn_op_table[NN_OP_COUNT];

typedef struct nn_arena_block {
    char *mem;
    size_t cap, used;
} nn_arena_block;

#define NN_ARENA_MAX_BLOCKS 32

struct nn_ctx {
    nn_arena_block blocks[NN_ARENA_MAX_BLOCKS];
    int n_blocks;
    nn_node *nodes;
    int n_nodes, cap_nodes;
    unsigned step; /* generation; starts at 1, bumped by every reset */
    bool grad_enabled;
    bool training;
    bool backward_done;
    void *scratch; /* nn_ctx_scratch's buffer */
    size_t scratch_cap;
};

/* Working memory an op needs only while its forward or its backward runs
 * (the per-thread buffers of convolution, say): one buffer for the whole
 * context, grown to the largest request and kept across resets, so ops
 * share it instead of each taking its own from the arena. Valid until the
 * next call; contents are not kept. */
void *nn_ctx_scratch(nn_ctx *ctx, size_t bytes);

/* A point in the arena to come back to: everything allocated after it is
 * released at once (the forward in evaluation mode runs a large batch in
 * chunks this way). Tensors from after the mark must not be used again. */
typedef struct nn_arena_mark {
    int block;
    size_t used;
} nn_arena_mark;
nn_arena_mark nn_arena_get_mark(const nn_ctx *ctx);
void nn_arena_release(nn_ctx *ctx, nn_arena_mark mark);

/* Creates an op's output in the arena. Its gradient buffer exists when
 * gradients are being recorded and some input carries a gradient; nn_backward
 * zeroes it before the first backward that adds to it, so the op must record
 * itself (nn_record) with this output. */
nn_tensor *nn_op_output(nn_ctx *ctx, int ndim, const int *shape, nn_tensor *const *inputs, int n_in);
/* Records an op on the tape (when gradients are enabled) and returns the node
 * so the op can attach saved state; NULL when nothing is recorded. */
nn_node *nn_record(nn_ctx *ctx, nn_op op, nn_tensor *out, nn_tensor *const *inputs, int n_in);
/* Aborts unless the tensor belongs to the current step (or is a parameter). */
void nn_check_live(const nn_ctx *ctx, const nn_tensor *t, const char *op);

/* Elementwise loops run on OpenMP threads only when there is enough work to
 * pay for waking them. */
#define NN_PARALLEL_MIN 32768

/* Sets n floats to zero, on every thread when n is large: a megabyte-sized
 * memset on one thread (the parameters' gradients each step) keeps the
 * others waiting at the next barrier. */
void nn_zero_floats(float *p, size_t n);

#endif
