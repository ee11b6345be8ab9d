/* The recorded graph as Graphviz DOT, for learners to see what backward
 * walks through: inputs as grey ellipses, parameters as green ellipses, ops
 * as boxes labelled with the op and its output shape, the loss in red.
 *
 * A recurrent op (rnn, lstm, gru) is one node on the tape: it runs the whole
 * sequence. Over a short sequence (T <= DOT_UNROLL_MAX steps) it is drawn
 * unrolled instead, as what it computes: a cluster of T cells, cell t reading
 * x_t and the previous step's h (and c for the LSTM) and writing h_t, every
 * cell fed by one node of shared weights, and the op's own node gathering
 * h_1 ... h_T.
 *
 * A residual connection, y = x + f(x), is found by its shape on the tape:
 * an add one of whose inputs, x, is read by an earlier op from which the
 * other input, f(x), follows. Its ops are drawn in a dashed cluster, the add
 * labelled x + f(x), and the skip path x -> add drawn bold. Attention is one
 * op on the tape and one box, its input edge (the QKV projection's [T, 3D])
 * labelled q, k, v; an op whose output tensor has a name (attention's names
 * its heads and mask) shows the name under its shape. A reshape that keeps
 * the last dimension only regroups rows ([B, T, F] as [B*T, F] around a
 * linear layer): it is not drawn, and what reads it reads its source.
 *
 * Only the drawing changes; the tape is read, never modified. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "core/util.h"

/* Recurrent ops over at most this many steps are drawn unrolled; longer
 * ones stay one node, labelled with their number of steps. */
#define DOT_UNROLL_MAX 8

/* Fill colours: ops, the loss, parameters, inputs, the unrolled steps' states. */
#define COLOUR_OP "#dde6f5"
#define COLOUR_LOSS "#f4b6b6"
#define COLOUR_PARAM "#c8e6c9"
#define COLOUR_INPUT "#eeeeee"
#define COLOUR_STATE "#fff3cd"
#define COLOUR_SHARED "#e8f5e9"

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

/* A name inside a quoted DOT string: quotes and backslashes escaped. */
static void put_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
}

typedef struct dot_writer {
    const nn_ctx *ctx;
    FILE *f;     /* the nodes, each inside its clusters */
    FILE *edges; /* the edges, written after every node: an edge inside a
                  * cluster would pull both its ends into it */
    const nn_tensor **seen;
    int n_seen, cap;
} dot_writer;

/* The op that made t before node i, or -1 for a leaf. */
static int producer(const nn_ctx *ctx, const nn_tensor *t, int i) {
    return t->node >= 0 && t->node < i && ctx->nodes[t->node].out == t ? t->node : -1;
}

/* A reshape that keeps the last dimension, a view of the same rows (not
 * drawn); the tape's last op is always drawn. */
static bool is_row_view(const nn_ctx *ctx, int i) {
    const nn_node *n = &ctx->nodes[i];
    const nn_tensor *a = n->in[0], *y = n->out;
    return n->op == NN_OP_RESHAPE && i < ctx->n_nodes - 1 && a->ndim >= 1 && y->ndim >= 1 &&
           a->shape[a->ndim - 1] == y->shape[y->ndim - 1];
}

/* What node i's k-th input is drawn as: the tensor behind any row views. */
static const nn_tensor *drawn_input(const nn_ctx *ctx, int i, int k) {
    const nn_tensor *t = ctx->nodes[i].in[k];
    for (int p = producer(ctx, t, i); p >= 0 && is_row_view(ctx, p); p = producer(ctx, t, p))
        t = ctx->nodes[p].in[0];
    return t;
}

/* The DOT id of node i's k-th input into buf: "nJ" when it is the output of
 * an earlier op, else "tJ", a leaf, written out the first time it is seen. */
static const char *input_id(dot_writer *w, int i, int k, char *buf, size_t cap) {
    const nn_tensor *in = drawn_input(w->ctx, i, k);
    int p = producer(w->ctx, in, i);
    if (p >= 0) {
        snprintf(buf, cap, "n%d", p);
        return buf;
    }
    bool param = in->role == NN_PARAM, is_new;
    int id = leaf_id(w->seen, &w->n_seen, w->cap, in, &is_new);
    if (is_new) {
        char shape[64];
        fprintf(w->f, "  t%d [shape=ellipse, style=filled, fillcolor=\"%s\", label=\"%s", id,
                param ? COLOUR_PARAM : COLOUR_INPUT, param ? "param " : "");
        put_escaped(w->f, in->name ? in->name : "input");
        fprintf(w->f, "\\n%s\"];\n", nn_shape_str(in, shape, sizeof shape));
    }
    snprintf(buf, cap, "t%d", id);
    return buf;
}

static bool is_recurrent(nn_op op) { return op == NN_OP_RNN || op == NN_OP_LSTM || op == NN_OP_GRU; }

/* The last part of a parameter's name: "weight_ih_l0" of "lstm1.weight_ih_l0". */
static const char *short_name(const nn_tensor *t) {
    const char *name = t->name ? t->name : "weight";
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

/* A state of the unrolled recurrence, h_t or c_t: an ellipse with its shape. */
static void state_node(FILE *f, int i, char which, int t, int B, int H) {
    fprintf(f,
            "    n%d_%c%d [shape=ellipse, style=filled, fillcolor=\"" COLOUR_STATE
            "\", label=<%c<SUB>%d</SUB><BR/><FONT POINT-SIZE=\"9\">[%d, %d]</FONT>>];\n",
            i, which, t, which, t, B, H);
}

/* Node i, a recurrent op over x [B,T,D] giving h [B,T,H], unrolled over its
 * T steps (see the top of the file). */
static void write_unrolled(dot_writer *w, int i) {
    FILE *f = w->f;
    const nn_node *n = &w->ctx->nodes[i];
    const char *op = nn_op_table[n->op].name;
    const nn_tensor *x = n->in[0];
    int B = n->out->shape[0], T = n->out->shape[1], H = n->out->shape[2], D = x->shape[2];
    bool lstm = n->op == NN_OP_LSTM;
    char shape[64], ids[NN_NODE_MAX_INPUTS][32];

    /* What the cluster reads: the sequence and the weights (leaves are
     * declared here, outside it). */
    for (int k = 0; k < n->n_in; k++) input_id(w, i, k, ids[k], sizeof ids[k]);

    fprintf(f, "  subgraph cluster_n%d {\n", i);
    fprintf(f, "    label=\"%s unrolled over its T = %d steps:\\none cell per step, the same weights in every cell\";\n",
            op, T);
    fprintf(f, "    labelloc=b; style=\"rounded,dashed\"; color=\"#7a8ba8\"; fontname=\"Helvetica\"; fontsize=11;\n");
    fprintf(f, "    n%d_w [shape=note, style=filled, fillcolor=\"" COLOUR_SHARED "\", label=\"shared by all %d cells", i,
            T);
    for (int k = 1; k < n->n_in; k++) {
        fputs("\\n", f);
        put_escaped(f, short_name(n->in[k]));
    }
    fputs("\"];\n", f);
    /* The initial state: zeros, or the state carried from a previous call. */
    state_node(f, i, 'h', 0, B, H);
    if (lstm) state_node(f, i, 'c', 0, B, H);
    for (int t = 1; t <= T; t++) {
        fprintf(f,
                "    n%d_x%d [shape=ellipse, style=filled, fillcolor=\"" COLOUR_INPUT
                "\", label=<x<SUB>%d</SUB><BR/><FONT POINT-SIZE=\"9\">[%d, %d]</FONT>>];\n",
                i, t, t, B, D);
        fprintf(f,
                "    n%d_cell%d [shape=box, style=\"rounded,filled\", fillcolor=\"" COLOUR_OP
                "\", label=\"%s cell\\nt = %d\"];\n",
                i, t, op, t);
        state_node(f, i, 'h', t, B, H);
        if (lstm) state_node(f, i, 'c', t, B, H);
    }
    fprintf(f, "    n%d [shape=box, style=\"rounded,filled\", fillcolor=\"" COLOUR_OP "\", label=\"%s\\n%s\"];\n", i,
            op, nn_shape_str(n->out, shape, sizeof shape));
    fprintf(f, "  }\n");

    f = w->edges;
    for (int k = 1; k < n->n_in; k++) fprintf(f, "  %s -> n%d_w;\n", ids[k], i);
    for (int t = 1; t <= T; t++) {
        fprintf(f, "  %s -> n%d_x%d;\n", ids[0], i, t);
        fprintf(f, "  n%d_x%d -> n%d_cell%d;\n", i, t, i, t);
        fprintf(f, "  n%d_h%d -> n%d_cell%d;\n", i, t - 1, i, t);
        if (lstm) fprintf(f, "  n%d_c%d -> n%d_cell%d;\n", i, t - 1, i, t);
        fprintf(f, "  n%d_w -> n%d_cell%d [style=dashed, color=\"#5b8c5e\"];\n", i, i, t);
        fprintf(f, "  n%d_cell%d -> n%d_h%d;\n", i, t, i, t);
        if (lstm) fprintf(f, "  n%d_cell%d -> n%d_c%d;\n", i, t, i, t);
        fprintf(f, "  n%d_h%d -> n%d;\n", i, t, i);
    }
}

/* A residual connection y = x + f(x) ending at the add `end`: the ops from
 * `start`, the first to read x, to the add form f; skip is the add's input
 * that is x; cluster is false where the span crosses another's. */
typedef struct residual {
    int start, end, skip;
    bool cluster;
} residual;

/* Whether the add at node i is x + f(x) with x its input k: x is read
 * before the other input is made, and that input depends on x. Sets *start
 * to the first op after x's that reads it. */
static bool is_residual_add(const nn_ctx *ctx, int i, int k, bool *dep, int *start) {
    const nn_node *n = &ctx->nodes[i];
    const nn_tensor *x = drawn_input(ctx, i, k), *fx = drawn_input(ctx, i, 1 - k);
    int px = producer(ctx, x, i), pf = producer(ctx, fx, i);
    if (pf <= px || x->size != n->out->size || fx->size != n->out->size) return false;
    *start = -1;
    for (int j = px + 1; j <= pf; j++) { /* dep[j]: op j's output depends on x */
        dep[j] = false;
        if (is_row_view(ctx, j)) continue;
        for (int q = 0; q < ctx->nodes[j].n_in && !dep[j]; q++) {
            const nn_tensor *in = drawn_input(ctx, j, q);
            int p = producer(ctx, in, j);
            dep[j] = in == x || (p > px && dep[p]);
            if (in == x && *start < 0) *start = j;
        }
    }
    return *start >= 0 && dep[pf];
}

/* The residual adds in tape order, each span nested in or apart from the
 * earlier ones' (a crossing span is labelled but not clustered). */
static int find_residuals(const nn_ctx *ctx, residual *out) {
    int count = 0;
    bool *dep = nn_xmalloc((size_t)ctx->n_nodes + 1);
    for (int i = 0; i < ctx->n_nodes; i++) {
        const nn_node *n = &ctx->nodes[i];
        if (n->op != NN_OP_ADD || n->n_in != 2) continue;
        for (int k = 0; k < 2; k++) {
            int start;
            if (!is_residual_add(ctx, i, k, dep, &start)) continue;
            residual r = {.start = start, .end = i, .skip = k, .cluster = true};
            for (int e = 0; e < count; e++)
                if (out[e].cluster && out[e].start < r.start && r.start <= out[e].end && out[e].end < r.end)
                    r.cluster = false;
            out[count++] = r;
            break;
        }
    }
    free(dep);
    return count;
}

int nn_graph_write_dot(const nn_ctx *ctx, FILE *f) {
    char shape[64], id[32], *edges = NULL;
    size_t edges_len = 0;
    dot_writer w = {.ctx = ctx, .f = f, .cap = 3 * ctx->n_nodes + 1, .edges = open_memstream(&edges, &edges_len)};
    if (!w.edges) return nn_error("writing graph: %s", strerror(errno));
    w.seen = nn_xmalloc((size_t)w.cap * sizeof *w.seen);
    residual *res = nn_xmalloc(((size_t)ctx->n_nodes + 1) * sizeof *res);
    int n_res = find_residuals(ctx, res), *stack = nn_xmalloc(((size_t)n_res + 1) * sizeof *stack), n_open = 0;
    fprintf(f, "digraph nn {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n");
    for (int i = 0; i < ctx->n_nodes; i++) {
        /* The clusters of the residual blocks that start here, outermost first. */
        for (;;) {
            int outer = -1;
            for (int r = 0; r < n_res; r++)
                if (res[r].cluster && res[r].start == i && (outer < 0 || res[r].end > res[outer].end) &&
                    (n_open == 0 || res[r].end < res[stack[n_open - 1]].end))
                    outer = r;
            if (outer < 0) break;
            stack[n_open++] = outer;
            fprintf(f, "  subgraph cluster_res%d {\n", res[outer].end);
            fprintf(f, "    label=\"residual block: y = x + f(x)\"; labelloc=b; style=\"rounded,dashed\"; "
                       "color=\"#b07d2b\"; fontname=\"Helvetica\"; fontsize=11;\n");
        }
        const nn_node *n = &ctx->nodes[i];
        const nn_tensor *out = n->out;
        const residual *add = NULL;
        for (int r = 0; r < n_res; r++)
            if (res[r].end == i) add = &res[r];
        bool recurrent = is_recurrent(n->op) && out->ndim == 3;
        if (recurrent && out->shape[1] <= DOT_UNROLL_MAX) {
            write_unrolled(&w, i);
        } else if (!is_row_view(ctx, i)) {
            bool is_loss = out->role == NN_LOSS || (i == ctx->n_nodes - 1 && out->size == 1);
            fprintf(f, "  n%d [shape=box, style=\"rounded,filled\", fillcolor=\"%s\", label=\"%s%s\\n%s", i,
                    is_loss ? COLOUR_LOSS : COLOUR_OP, nn_op_table[n->op].name, add ? ": x + f(x)" : "",
                    nn_shape_str(out, shape, sizeof shape));
            if (recurrent) fprintf(f, "\\nT = %d steps (drawn unrolled up to %d)", out->shape[1], DOT_UNROLL_MAX);
            if (out->name) {
                fputs("\\n", f);
                put_escaped(f, out->name);
            }
            fprintf(f, "\"];\n");
            for (int k = 0; k < n->n_in; k++) {
                fprintf(w.edges, "  %s -> n%d", input_id(&w, i, k, id, sizeof id), i);
                if (add && k == add->skip)
                    fputs(" [penwidth=2.5, color=\"#b07d2b\", label=\" x (skip)\", fontname=\"Helvetica\", "
                          "fontsize=10]", w.edges);
                else if (n->op == NN_OP_ATTENTION && k == 0)
                    fputs(" [label=\" q, k, v\", fontname=\"Helvetica\", fontsize=10]", w.edges);
                fputs(";\n", w.edges);
            }
        }
        while (n_open > 0 && res[stack[n_open - 1]].end == i) {
            fprintf(f, "  }\n");
            n_open--;
        }
    }
    fclose(w.edges);
    fwrite(edges, 1, edges_len, f);
    fprintf(f, "}\n");
    free(edges);
    free(stack);
    free(res);
    free(w.seen);
    return ferror(f) ? nn_error("writing graph: %s", strerror(errno)) : 0;
}

int nn_graph_save_dot(const nn_ctx *ctx, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return nn_error("%s: %s", path, strerror(errno));
    int rc = nn_graph_write_dot(ctx, f);
    if (fclose(f) != 0 && rc == 0) rc = nn_error("%s: %s", path, strerror(errno));
    return rc;
}
