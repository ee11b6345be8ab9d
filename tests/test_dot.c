/* The Graphviz writer of the tape (nn_graph_write_dot, nn_graph_save_dot,
 * what nn train --graph calls) on recurrent models: an embedding and a
 * recurrent layer over a short sequence are drawn unrolled, one cell per
 * step with h_{t-1} (and c_{t-1}) -> cell_t -> h_t and one node of shared
 * weights feeding every cell; a long sequence stays one node labelled with
 * its length; writing the graph leaves the tape as it was. A Transformer
 * block: each residual block a cluster whose add reads the block's input by
 * a drawn skip edge, attention one box (heads and mask named) fed by the
 * QKV projection, the reshapes to rows not drawn, the tied embedding one
 * parameter feeding both ends. The residual rule on graphs built by hand:
 * x + relu(x) is one, relu(a) + relu(b) is not. Graphviz is not needed;
 * where `dot` is installed the files are also rendered with it. */
#define _POSIX_C_SOURCE 200809L /* open_memstream */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "nn/core.h"
#include "nn/model.h"
#include "nn/rng.h"
#include "core/util.h"

enum { V = 11, B = 2 };

/* One training step of `spec` (a text model scoring every position) on B
 * sequences of T ids. Unless no_graph, returns the graph of its tape as DOT
 * text (the caller frees it), also saved to save_path when that is given,
 * with the tape's length before and after writing in n_nodes. With grads,
 * the parameters' gradients of the step (at most max_grads floats) are
 * copied there after the graph is written; returns their number in *n_grads. */
typedef struct step_out {
    float *grads;
    size_t max_grads, n_grads;
    int n_nodes[2];
} step_out;

static char *lm_step(const char *spec, int T, bool no_graph, const char *save_path, step_out *out) {
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 7, 0);
    if (nn_model_plan_text_context(&m, spec, V, V, T) != 0) {
        CHECKF(0, "%s: %s", spec, nn_last_error());
        return NULL;
    }
    nn_model_build(&m, &rng);
    int *ids = malloc((size_t)B * T * sizeof *ids), *next = malloc((size_t)B * T * sizeof *next);
    for (int i = 0; i < B * T; i++) ids[i] = (3 * i + 1) % V, next[i] = (3 * i + 4) % V;
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, true);
    nn_tensor *logits = nn_model_forward_tokens(&m, ctx, ids, B, T, NULL, &rng);
    nn_tensor *loss = nn_cross_entropy(ctx, nn_reshape(ctx, logits, 2, (int[]){B * T, V}), next, 0.0f);
    char *text = NULL;
    if (out) out->n_nodes[0] = nn_graph_nodes(ctx);
    if (!no_graph) {
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        CHECKF(nn_graph_write_dot(ctx, f) == 0, "%s", nn_last_error());
        fclose(f);
        if (save_path) CHECKF(nn_graph_save_dot(ctx, save_path) == 0, "%s", nn_last_error());
    }
    if (out) {
        out->n_nodes[1] = nn_graph_nodes(ctx);
        nn_params_zero_grad(&m.params);
        nn_backward(ctx, loss);
        out->n_grads = m.params.count;
        CHECK(out->n_grads <= out->max_grads);
        if (out->n_grads <= out->max_grads) memcpy(out->grads, m.params.grad, out->n_grads * sizeof(float));
    }
    nn_ctx_free(ctx);
    nn_model_free(&m);
    free(ids);
    free(next);
    return text;
}

static char *lm_graph(const char *spec, int T) { return lm_step(spec, T, false, NULL, NULL); }

/* Whether the text holds the formatted string. */
static bool has(const char *text, const char *fmt, ...) {
    char want[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    return strstr(text, want) != NULL;
}

static int count(const char *text, const char *s) {
    int n = 0;
    for (const char *p = strstr(text, s); p; p = strstr(p + 1, s)) n++;
    return n;
}

/* The tape index of the unrolled op: the N of "nN_cell1 [". */
static int unrolled_node(const char *dot) {
    const char *p = strstr(dot, "_cell1 [");
    if (!p) return -1;
    while (p > dot && p[-1] >= '0' && p[-1] <= '9') p--;
    return p > dot && p[-1] == 'n' ? atoi(p) : -1;
}

/* Renders the file with Graphviz when it is installed: it must accept it. */
static void render_if_possible(const char *path) {
    if (system("command -v dot >/dev/null 2>&1") != 0) {
        printf("  (graphviz not installed: %s not rendered)\n", path);
        return;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "dot -Tsvg '%s' -o /dev/null", path);
    CHECKF(system(cmd) == 0, "dot rejects %s", path);
}

static void check_unrolled(const char *dot, const char *op, int T, bool has_cell_state) {
    int i = unrolled_node(dot);
    CHECKF(i >= 1, "no unrolled %s in:\n%s", op, dot);
    if (i < 1) return;
    CHECK(has(dot, "subgraph cluster_n%d {", i) && has(dot, "%s unrolled over its T = %d steps", op, T));
    /* T cells, no more. */
    char cell[32];
    snprintf(cell, sizeof cell, "n%d_cell", i);
    CHECKF(count(dot, cell) > 0 && has(dot, "n%d_cell%d [", i, T) && !has(dot, "n%d_cell%d ", i, T + 1) &&
               !has(dot, "n%d_cell0", i),
           "%s: not %d cells", op, T);
    int cells = 0;
    for (int t = 1; t <= T + 1; t++) cells += has(dot, "n%d_cell%d [shape=box", i, t);
    CHECKF(cells == T, "%s: %d cell nodes for %d steps", op, cells, T);
    /* The embedding's output is split into x_1 ... x_T. */
    int embedding = i - 1;
    CHECK(has(dot, "n%d [shape=box, style=\"rounded,filled\", fillcolor=\"#dde6f5\", label=\"embedding\\n[%d, %d, ",
              embedding, B, T));
    for (int t = 1; t <= T; t++) {
        CHECKF(has(dot, "n%d -> n%d_x%d;", embedding, i, t) && has(dot, "n%d_x%d -> n%d_cell%d;", i, t, i, t),
               "%s: x_%d does not reach cell %d", op, t, t);
        CHECKF(has(dot, "n%d_h%d -> n%d_cell%d;", i, t - 1, i, t), "%s: no h_%d -> cell %d", op, t - 1, t);
        CHECKF(has(dot, "n%d_cell%d -> n%d_h%d;", i, t, i, t), "%s: no cell %d -> h_%d", op, t, t);
        CHECKF(has(dot, "n%d_c%d -> n%d_cell%d;", i, t - 1, i, t) == has_cell_state &&
                   has(dot, "n%d_cell%d -> n%d_c%d;", i, t, i, t) == has_cell_state,
               "%s: c_%d %s", op, t, has_cell_state ? "missing" : "drawn");
        CHECKF(has(dot, "n%d_w -> n%d_cell%d [style=dashed", i, i, t), "%s: shared weights do not feed cell %d", op,
               t);
        CHECKF(has(dot, "n%d_h%d -> n%d;", i, t, i), "%s: h_%d is not gathered into the op's output", op, t);
    }
    /* No step's h reaches past the last cell; h_0 (and c_0) start the chain. */
    CHECK(!has(dot, "n%d_h%d -> n%d_cell", i, T, i));
    CHECK(has(dot, "n%d_h0 [", i) && has(dot, "n%d_c0 [", i) == has_cell_state);
    /* The four weights appear once each, as parameters, and feed the one
     * shared node, never a cell directly. */
    const char *names[] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"};
    for (int k = 0; k < 4; k++) {
        char param[64];
        snprintf(param, sizeof param, "label=\"param %s1.%s\\n", op, names[k]);
        CHECKF(count(dot, param) == 1, "%s: %s drawn %d times", op, names[k], count(dot, param));
    }
    char into_shared[32];
    snprintf(into_shared, sizeof into_shared, " -> n%d_w;", i);
    CHECKF(count(dot, into_shared) == 4, "%s: %d tensors feed the shared weights", op, count(dot, into_shared));
    CHECK(!strstr(dot, "t1 -> n1_cell") && !strstr(dot, "t2 -> n1_cell"));
    /* What follows the layer reads the op's node, as for any op: the linear
     * layer two ops on, past the reshape to rows, which is not drawn. */
    CHECKF(has(dot, "n%d -> n%d;", i, i + 2) && !has(dot, "n%d [", i + 1), "%s's output does not feed the next op",
           op);
    /* Braces balance. */
    CHECK(count(dot, "{") == count(dot, "}"));
}

static void test_lstm_unrolled(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/nn_test_dot_%d.dot", (int)getpid());
    const char *spec = "embed(8) lstm(16) linear(11)";
    enum { MAX_GRADS = 8192 };
    step_out with = {.grads = calloc(MAX_GRADS, sizeof(float)), .max_grads = MAX_GRADS};
    step_out without = {.grads = calloc(MAX_GRADS, sizeof(float)), .max_grads = MAX_GRADS};
    char *dot = lm_step(spec, 5, false, path, &with);
    if (dot) {
        check_unrolled(dot, "lstm", 5, true);
        /* The file nn_graph_save_dot writes (what train --graph calls) is the same text. */
        size_t len = 0;
        char *saved = (char *)nn_read_file(path, &len, 0);
        CHECKF(saved && len == strlen(dot) && memcmp(saved, dot, len) == 0, "%s differs from the streamed graph",
               path);
        free(saved);
        render_if_possible(path);
    }
    unlink(path);
    free(dot);
    /* Display only: the tape keeps its length, and its backward gives the
     * gradients of the same step with no graph written. */
    lm_step(spec, 5, true, NULL, &without);
    CHECKF(with.n_nodes[0] == with.n_nodes[1] && with.n_nodes[0] == without.n_nodes[0] && with.n_nodes[0] >= 4,
           "tape of %d nodes, %d after writing the graph, %d without", with.n_nodes[0], with.n_nodes[1],
           without.n_nodes[0]);
    CHECK(with.n_grads == without.n_grads && with.n_grads > 0);
    CHECK(memcmp(with.grads, without.grads, with.n_grads * sizeof(float)) == 0);
    double norm = 0;
    for (size_t k = 0; k < with.n_grads; k++) norm += (double)with.grads[k] * with.grads[k];
    CHECKF(norm > 0, "no gradient reached the parameters");
    free(with.grads);
    free(without.grads);
}

static void test_gru_and_rnn_unrolled(void) {
    char *dot = lm_graph("embed(8) gru(16) linear(11)", 3);
    if (dot) check_unrolled(dot, "gru", 3, false);
    free(dot);
    /* Up to 8 steps are unrolled. */
    dot = lm_graph("embed(8) rnn(16) linear(11)", 8);
    if (dot) check_unrolled(dot, "rnn", 8, false);
    free(dot);
}

static void test_long_sequence_one_node(void) {
    char *dot = lm_graph("embed(8) lstm(16) linear(11)", 9);
    if (!dot) return;
    CHECKF(!strstr(dot, "cluster") && !strstr(dot, "_cell") && !strstr(dot, "_h0"), "9 steps drawn unrolled:\n%s",
           dot);
    CHECKF(count(dot, "label=\"lstm\\n[2, 9, 16]\\nT = 9 steps") == 1, "no one lstm node labelled with T:\n%s", dot);
    /* Its inputs come straight in, as for any op. */
    CHECK(strstr(dot, "n0 -> n1;") && strstr(dot, "n1 -> n3;"));
    CHECK(count(dot, " -> n1;") == 5);
    free(dot);
}

/* The id N of the op node "nN [shape=box, ..., label=\"LABEL..." (the
 * nth such, from 0), or -1. */
static int op_node(const char *dot, const char *label, int nth) {
    char want[160];
    snprintf(want, sizeof want, "fillcolor=\"#dde6f5\", label=\"%s", label);
    for (const char *p = strstr(dot, want); p; p = strstr(p + 1, want)) {
        const char *line = p;
        while (line > dot && line[-1] != '\n') line--;
        int id;
        if (sscanf(line, " n%d [shape=box", &id) == 1 && nth-- == 0) return id;
    }
    return -1;
}

/* The id N of the leaf "tN [..., label=\"param NAME\n...", or -1. */
static int param_node(const char *dot, const char *name) {
    char want[160];
    snprintf(want, sizeof want, "label=\"param %s\\n", name);
    const char *p = strstr(dot, want);
    if (!p) return -1;
    while (p > dot && p[-1] != '\n') p--;
    int id;
    return sscanf(p, " t%d [", &id) == 1 ? id : -1;
}

/* The edges into node "nTO": how many. */
static int edges_into(const char *dot, int to) {
    char a[32], b[32];
    snprintf(a, sizeof a, " -> n%d;", to);
    snprintf(b, sizeof b, " -> n%d [", to);
    return count(dot, a) + count(dot, b);
}

/* The text of cluster NAME, from its opening brace to its closing one, into buf. */
static const char *cluster_text(const char *dot, const char *name, char *buf, size_t cap) {
    char want[64];
    snprintf(want, sizeof want, "subgraph %s {", name);
    const char *p = strstr(dot, want);
    buf[0] = '\0';
    if (!p) return buf;
    int depth = 0;
    size_t n = 0;
    for (; *p && n + 1 < cap; p++) {
        buf[n++] = *p;
        depth += *p == '{';
        if (*p == '}' && --depth == 0) break;
    }
    buf[n] = '\0';
    return buf;
}

static void test_transformer_block(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/nn_test_dot_gpt_%d.dot", (int)getpid());
    const char *spec = "embed(16) posembed residual(layernorm attention(2)) residual(layernorm linear(64) gelu "
                       "linear(16)) layernorm unembed";
    enum { T = 4, MAX_GRADS = 16384 };
    step_out with = {.grads = calloc(MAX_GRADS, sizeof(float)), .max_grads = MAX_GRADS};
    char *dot = lm_step(spec, T, false, path, &with);
    if (!dot) return;
    /* The rows views around each linear layer are not drawn. */
    CHECKF(!strstr(dot, "reshape"), "a reshape is drawn:\n%s", dot);
    /* Attention: one box, its heads and mask named, fed by the QKV
     * projection alone (x W_in^T + b_in, [B*T, 3D]), feeding the output
     * projection. */
    int attn = op_node(dot, "attention\\n[2, 4, 16]\\nres1.attn1: 2 heads, causal mask\"", 0);
    int qkv = op_node(dot, "linear\\n[8, 48]\"", 0), proj = op_node(dot, "linear\\n[8, 16]\"", 0);
    int ln1 = op_node(dot, "layer_norm\\n[2, 4, 16]\"", 0), pos = op_node(dot, "add_positions\\n[2, 4, 16]\"", 0);
    CHECKF(attn >= 0 && qkv >= 0 && proj >= 0 && ln1 >= 0 && pos >= 0, "nodes missing:\n%s", dot);
    CHECK(count(dot, "label=\"attention") == 1);
    CHECK(edges_into(dot, attn) == 1 && has(dot, "n%d -> n%d [label=\" q, k, v\"", qkv, attn));
    int w_in = param_node(dot, "res1.attn1.in_proj_weight"), b_in = param_node(dot, "res1.attn1.in_proj_bias");
    int w_out = param_node(dot, "res1.attn1.out_proj.weight");
    CHECK(w_in >= 0 && b_in >= 0 && w_out >= 0);
    CHECK(edges_into(dot, qkv) == 3 && has(dot, "n%d -> n%d;", ln1, qkv) && has(dot, "t%d -> n%d;", w_in, qkv) &&
          has(dot, "t%d -> n%d;", b_in, qkv));
    CHECK(has(dot, "n%d -> n%d;", attn, proj) && has(dot, "t%d -> n%d;", w_out, proj));
    /* Two residual adds: each reads its block's input by the skip edge
     * and its block's last op. */
    int add1 = op_node(dot, "add: x + f(x)\\n[2, 4, 16]\"", 0), add2 = op_node(dot, "add: x + f(x)\\n[2, 4, 16]\"", 1);
    int fc2 = op_node(dot, "linear\\n[8, 16]\"", 1);
    CHECKF(add1 >= 0 && add2 >= 0 && fc2 >= 0 && count(dot, ": x + f(x)") == 2, "adds missing:\n%s", dot);
    const char *skip = "[penwidth=2.5, color=\"#b07d2b\", label=\" x (skip)\"";
    CHECK(has(dot, "n%d -> n%d %s", pos, add1, skip) && has(dot, "n%d -> n%d;", proj, add1) &&
          edges_into(dot, add1) == 2);
    CHECK(has(dot, "n%d -> n%d %s", add1, add2, skip) && has(dot, "n%d -> n%d;", fc2, add2) &&
          edges_into(dot, add2) == 2);
    CHECK(count(dot, "x (skip)") == 2);
    /* Each block a cluster holding its ops, its parameters and its add,
     * not the input it adds; edges are drawn outside every cluster (one
     * inside would pull both its ends in). */
    static char c1[1 << 14], c2[1 << 14];
    char name[32];
    snprintf(name, sizeof name, "cluster_res%d", add1);
    cluster_text(dot, name, c1, sizeof c1);
    snprintf(name, sizeof name, "cluster_res%d", add2);
    cluster_text(dot, name, c2, sizeof c2);
    CHECK(count(dot, "subgraph cluster_res") == 2 && strstr(c1, "residual block: y = x + f(x)"));
    CHECK(has(c1, "n%d [", ln1) && has(c1, "n%d [", attn) && has(c1, "n%d [", add1) && has(c1, "t%d [", w_out) &&
          !has(c1, "n%d [", pos) && !has(c1, "n%d [", add2) && !strstr(c1, "->") && !strstr(c1, "res2."));
    CHECK(has(c2, "n%d [", fc2) && has(c2, "n%d [", add2) && strstr(c2, "param res2.fc1.weight") &&
          !has(c2, "n%d [", add1) && !strstr(c2, "->") && !strstr(c2, "res1."));
    /* The tied matrix: one parameter, read by the lookup and the output. */
    int E = param_node(dot, "embed1.weight"), emb = op_node(dot, "embedding\\n[2, 4, 16]\"", 0);
    int logits = op_node(dot, "linear\\n[8, 11]\"", 0), ln3 = op_node(dot, "layer_norm\\n[2, 4, 16]\"", 2);
    CHECK(E >= 0 && emb >= 0 && logits >= 0 && ln3 >= 0 && count(dot, "param embed1.weight") == 1);
    CHECK(has(dot, "t%d -> n%d;", E, emb) && has(dot, "t%d -> n%d;", E, logits) && has(dot, "n%d -> n%d;", ln3, logits) &&
          has(dot, "n%d -> n%d;", add2, ln3));
    CHECK(strstr(dot, "label=\"cross_entropy") && has(dot, "n%d -> n", logits));
    CHECK(count(dot, "{") == count(dot, "}"));
    /* Display only. */
    CHECK(with.n_nodes[0] == with.n_nodes[1] && with.n_nodes[0] > 20);
    render_if_possible(path);
    unlink(path);
    free(dot);
    free(with.grads);
}

/* The rule on graphs built by hand: x + relu(x) is a residual connection;
 * relu(a) + relu(b), two inputs apart, is a plain add. */
static void test_residual_rule(void) {
    for (int residual = 0; residual < 2; residual++) {
        nn_ctx *ctx = nn_ctx_new(0);
        nn_tensor *a = nn_input(ctx, "a", 2, (int[]){3, 4}), *b = nn_input(ctx, "b", 2, (int[]){3, 4});
        nn_tensor *y = residual ? nn_add(ctx, a, nn_relu(ctx, a)) : nn_add(ctx, nn_relu(ctx, a), nn_relu(ctx, b));
        nn_sum(ctx, y);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        CHECK(nn_graph_write_dot(ctx, f) == 0);
        fclose(f);
        if (residual)
            CHECKF(strstr(text, "label=\"add: x + f(x)\\n[3, 4]\"") && strstr(text, "t0 -> n1 [penwidth=2.5") &&
                       strstr(text, "subgraph cluster_res1 {") && strstr(text, "t0 -> n0;") &&
                       strstr(text, "n0 -> n1;"),
                   "x + relu(x):\n%s", text);
        else
            CHECKF(strstr(text, "label=\"add\\n[3, 4]\"") && !strstr(text, "x + f(x)") && !strstr(text, "cluster") &&
                       !strstr(text, "penwidth"),
                   "relu(a) + relu(b):\n%s", text);
        free(text);
        nn_ctx_free(ctx);
    }
}

TEST_MAIN(TEST(test_lstm_unrolled), TEST(test_gru_and_rnn_unrolled), TEST(test_long_sequence_one_node),
          TEST(test_transformer_block), TEST(test_residual_rule))
