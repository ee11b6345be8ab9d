/* The recorded graph as Graphviz DOT, for learners to see what backward
 * walks through: inputs as grey ellipses, parameters as green ellipses, ops
 * as boxes labelled with the op and its output shape, the loss in red. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "core/util.h"

/* Leaves (inputs and parameters) are numbered in order of first use, so the
 * same graph always gives the same text. Returns the number, and whether the
 * leaf was new in *is_new. */
static int leaf_id(const nn_tensor **seen, int *n_seen, int cap, const nn_tensor *t, bool *is_new) {
    for (int i = 0; i < *n_seen; i++)
        if (seen[i] == t) {
            *is_new = false;
            return i;
        }
    *is_new = true;
    if (*n_seen < cap) seen[(*n_seen)++] = t;
    return *n_seen - 1;
}

int nn_graph_write_dot(const nn_ctx *ctx, FILE *f) {
    char shape[64];
    int cap = 3 * ctx->n_nodes + 1, n_seen = 0;
    const nn_tensor **seen = nn_xmalloc((size_t)cap * sizeof *seen);
    fprintf(f, "digraph nn {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n");
    for (int i = 0; i < ctx->n_nodes; i++) {
        const nn_node *n = &ctx->nodes[i];
        const nn_tensor *out = n->out;
        bool is_loss = out->role == NN_LOSS || (i == ctx->n_nodes - 1 && out->size == 1);
        fprintf(f, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=\"%s\", label=\"%s\\n%s\"];\n", i,
                is_loss ? "#f4b6b6" : "#dde6f5", nn_op_table[n->op].name, nn_shape_str(out, shape, sizeof shape));
        for (int k = 0; k < n->n_in; k++) {
            const nn_tensor *in = n->in[k];
            if (in->node >= 0 && in->node < i && ctx->nodes[in->node].out == in) {
                fprintf(f, "  n%d -> n%d;\n", in->node, i);
                continue;
            }
            bool param = in->role == NN_PARAM, is_new;
            int id = leaf_id(seen, &n_seen, cap, in, &is_new);
            if (is_new)
                fprintf(f, "  t%d [shape=ellipse, style=filled, fillcolor=\"%s\", label=\"%s%s\\n%s\"];\n", id,
                        param ? "#c8e6c9" : "#eeeeee", param ? "param " : "", in->name ? in->name : "input",
                        nn_shape_str(in, shape, sizeof shape));
            fprintf(f, "  t%d -> n%d;\n", id, i);
        }
    }
    fprintf(f, "}\n");
    free(seen);
    return ferror(f) ? nn_error("writing graph: %s", strerror(errno)) : 0;
}

int nn_graph_save_dot(const nn_ctx *ctx, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return nn_error("%s: %s", path, strerror(errno));
    int rc = nn_graph_write_dot(ctx, f);
    if (fclose(f) != 0 && rc == 0) rc = nn_error("%s: %s", path, strerror(errno));
    return rc;
}
