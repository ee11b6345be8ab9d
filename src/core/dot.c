/* The recorded graph as Graphviz DOT, for learners to see what backward
 * walks through: inputs as grey ellipses, parameters as green ellipses, ops
 * as boxes labelled with the op and its output shape, the loss in red. */
#include <errno.h>
#include <string.h>

#include "core/graph.h"

/* A leaf (input or parameter) is named by its address, an op output by its node. */
static void leaf_id(FILE *f, const nn_tensor *t) { fprintf(f, "t%p", (const void *)t); }

int nn_graph_write_dot(const nn_ctx *ctx, FILE *f) {
    char shape[64];
    fprintf(f, "digraph nn {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n");
    for (int i = 0; i < ctx->n_nodes; i++) {
        const nn_node *n = &ctx->nodes[i];
        const nn_tensor *out = n->out;
        bool is_loss = out->role == NN_LOSS || (i == ctx->n_nodes - 1 && out->size == 1);
        fprintf(f, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=\"%s\", label=\"%s\\n%s\"];\n", i,
                is_loss ? "#f4b6b6" : "#dde6f5", nn_op_table[n->op].name, nn_shape_str(out, shape));
        for (int k = 0; k < n->n_in; k++) {
            const nn_tensor *in = n->in[k];
            if (in->node >= 0 && in->node < i && ctx->nodes[in->node].out == in) {
                fprintf(f, "  n%d -> n%d;\n", in->node, i);
                continue;
            }
            bool param = in->role == NN_PARAM;
            fprintf(f, "  ");
            leaf_id(f, in);
            fprintf(f, " [shape=ellipse, style=filled, fillcolor=\"%s\", label=\"%s%s\\n%s\"];\n",
                    param ? "#c8e6c9" : "#eeeeee", param ? "param " : "",
                    in->name ? in->name : "input", nn_shape_str(in, shape));
            fprintf(f, "  ");
            leaf_id(f, in);
            fprintf(f, " -> n%d;\n", i);
        }
    }
    fprintf(f, "}\n");
    return ferror(f) ? nn_error("writing graph: %s", strerror(errno)) : 0;
}

int nn_graph_save_dot(const nn_ctx *ctx, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return nn_error("%s: %s", path, strerror(errno));
    int rc = nn_graph_write_dot(ctx, f);
    if (fclose(f) != 0 && rc == 0) rc = nn_error("%s: %s", path, strerror(errno));
    return rc;
}
