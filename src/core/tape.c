/* The tape: ops append nodes as they run (define-by-run); nn_backward walks
 * the nodes in reverse, and each node's backward adds its output gradient's
 * contribution into its inputs' gradients. Because nodes are appended in the
 * order they ran, reverse order is a valid topological order. */
#include <string.h>

#include "core/graph.h"
#include "core/util.h"

nn_node *nn_record(nn_ctx *ctx, nn_op op, nn_tensor *out, nn_tensor *const *inputs, int n_in) {
    if (!ctx->grad_enabled) return NULL;
    NN_CHECK(!ctx->backward_done, "%s: the tape of this step was already run backwards; "
             "call nn_ctx_reset before recording the next step", nn_op_table[op].name);
    NN_CHECK(n_in <= NN_NODE_MAX_INPUTS, "%s: too many inputs", nn_op_table[op].name);
    if (ctx->n_nodes == ctx->cap_nodes) {
        ctx->cap_nodes = ctx->cap_nodes ? 2 * ctx->cap_nodes : 64;
        ctx->nodes = nn_xrealloc(ctx->nodes, (size_t)ctx->cap_nodes * sizeof *ctx->nodes);
    }
    nn_node *node = &ctx->nodes[ctx->n_nodes];
    memset(node, 0, sizeof *node);
    node->op = op;
    node->out = out;
    node->n_in = n_in;
    for (int i = 0; i < n_in; i++) node->in[i] = inputs[i];
    out->node = ctx->n_nodes++;
    return node;
}

/* An activation's gradient starts unwritten (nn_op_output leaves it): it is
 * zeroed just before the first backward that adds to it (its last
 * consumer's, or its own node's when nothing consumed it), when it is about
 * to be in cache anyway, not all at once as the forward makes it (zeroing
 * there was 7% of a GPT step, each buffer streamed out to memory and read
 * back). A view (reshape) shares its input's buffer, so a buffer is known by
 * the node that made it: its owner; -1 for a leaf's (a parameter's). */
static int grad_owner(const nn_ctx *ctx, const nn_tensor *t) {
    while (t->node >= 0) {
        const nn_node *n = &ctx->nodes[t->node];
        if (n->n_in == 0 || !n->in[0] || n->in[0]->grad != t->grad) return t->node;
        t = n->in[0];
    }
    return -1;
}

/* True, claiming it, when t's buffer is unwritten and may be left to the
 * op to store into: not a leaf's, and not an input the node has twice. */
static bool claim_fresh(nn_ctx *ctx, bool *zeroed, const nn_node *node, int k) {
    const nn_tensor *t = node->in[k];
    if (!t || !t->grad) return false;
    for (int i = 0; i < node->n_in; i++)
        if (i != k && node->in[i] && node->in[i]->grad == t->grad) return false;
    int owner = grad_owner(ctx, t);
    if (owner < 0 || zeroed[owner]) return false;
    zeroed[owner] = true;
    return true;
}

static void zero_once(nn_ctx *ctx, bool *zeroed, const nn_tensor *t) {
    if (!t || !t->grad) return;
    int owner = grad_owner(ctx, t);
    if (owner < 0 || zeroed[owner]) return;
    zeroed[owner] = true;
    nn_zero_floats(ctx->nodes[owner].out->grad, ctx->nodes[owner].out->size);
}

void nn_backward(nn_ctx *ctx, nn_tensor *loss) {
    char shape[64];
    NN_CHECK(loss != NULL, "nn_backward: loss is NULL");
    nn_check_live(ctx, loss, "nn_backward");
    NN_CHECK(loss->size == 1, "nn_backward: the loss must be a scalar, got shape %s "
             "(did you forget nn_mean or nn_sum?)", nn_shape_str(loss, shape, sizeof shape));
    NN_CHECK(!ctx->backward_done, "nn_backward: already called for this step "
             "(call nn_ctx_reset, then run the forward pass again)");
    NN_CHECK(loss->node >= 0 && loss->grad != NULL,
             "nn_backward: the loss does not depend on any parameter: were the weights created "
             "with nn_params_add, and was the forward pass run with gradients enabled?");
    loss->role = NN_LOSS;
    bool *zeroed = nn_arena_alloc(ctx, (size_t)ctx->n_nodes * sizeof *zeroed);
    memset(zeroed, 0, (size_t)ctx->n_nodes * sizeof *zeroed);
    zero_once(ctx, zeroed, loss);
    loss->grad[0] = 1.0f;
    for (int i = loss->node; i >= 0; i--) {
        nn_node *node = &ctx->nodes[i];
        if (!node->out->grad) continue;
        zero_once(ctx, zeroed, node->out);
        for (int k = 0; k < node->n_in; k++) {
            if ((nn_op_table[node->op].overwrites >> k & 1u) && claim_fresh(ctx, zeroed, node, k))
                node->fresh |= 1u << k;
            else zero_once(ctx, zeroed, node->in[k]);
        }
        nn_op_table[node->op].backward(node);
    }
    ctx->backward_done = true;
}

int nn_graph_nodes(const nn_ctx *ctx) { return ctx->n_nodes; }
