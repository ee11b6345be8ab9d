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
    loss->grad[0] = 1.0f;
    for (int i = loss->node; i >= 0; i--) {
        nn_node *node = &ctx->nodes[i];
        if (node->out->grad) nn_op_table[node->op].backward(node);
    }
    ctx->backward_done = true;
}

int nn_graph_nodes(const nn_ctx *ctx) { return ctx->n_nodes; }
