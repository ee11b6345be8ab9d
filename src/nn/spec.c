/* Model specs: "conv(32,3) relu maxpool(2) flatten linear(10)" <-> layers.
 * Each layer kind declares its arguments once, in the table below: the
 * parser, the defaults and the canonical form written into checkpoints all
 * come from it. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"

typedef struct arg_def {
    const char *name;
    bool is_int, required;
    double def, lo, hi; /* def < 0 for a stride: "same as the kernel" */
} arg_def;

typedef struct kind_def {
    const char *name;
    nn_layer_kind kind;
    int n_args;
    arg_def args[4];
} kind_def;

#define INT_ARG(n, req, d, lo, hi) {n, true, req, d, lo, hi}
#define FLOAT_ARG(n, req, d, lo, hi) {n, false, req, d, lo, hi}

static const kind_def kinds[] = {
    {"linear", NN_LAYER_LINEAR, 1, {INT_ARG("out", true, 0, 1, 65536)}},
    {"conv", NN_LAYER_CONV, 4,
     {INT_ARG("out", true, 0, 1, 4096), INT_ARG("kernel", true, 0, 1, 32), INT_ARG("stride", false, 1, 1, 32),
      INT_ARG("padding", false, 0, 0, 32)}},
    {"maxpool", NN_LAYER_MAXPOOL, 2, {INT_ARG("kernel", true, 0, 1, 32), INT_ARG("stride", false, -1, 1, 32)}},
    {"avgpool", NN_LAYER_AVGPOOL, 2, {INT_ARG("kernel", true, 0, 1, 32), INT_ARG("stride", false, -1, 1, 32)}},
    {"batchnorm", NN_LAYER_BATCHNORM, 0, {{0}}},
    {"layernorm", NN_LAYER_LAYERNORM, 0, {{0}}},
    {"relu", NN_LAYER_RELU, 0, {{0}}},
    {"leakyrelu", NN_LAYER_LEAKYRELU, 1, {FLOAT_ARG("slope", false, 0.01, 0.0, 1.0)}},
    {"gelu", NN_LAYER_GELU, 0, {{0}}},
    {"sigmoid", NN_LAYER_SIGMOID, 0, {{0}}},
    {"tanh", NN_LAYER_TANH, 0, {{0}}},
    {"dropout", NN_LAYER_DROPOUT, 1, {FLOAT_ARG("p", true, 0, 0.0, 0.95)}},
    {"flatten", NN_LAYER_FLATTEN, 0, {{0}}},
};
#define N_KINDS (int)(sizeof kinds / sizeof kinds[0])

static const kind_def *kind_of(nn_layer_kind k) {
    for (int i = 0; i < N_KINDS; i++)
        if (kinds[i].kind == k) return &kinds[i];
    return NULL;
}

const char *nn_layer_kind_name(nn_layer_kind k) { return kind_of(k)->name; }

/* The argument values of a layer, in the table's order. */
static void get_args(const nn_layer *l, double v[4]) {
    switch (l->kind) {
    case NN_LAYER_LINEAR: v[0] = l->out; break;
    case NN_LAYER_CONV: v[0] = l->out, v[1] = l->kernel, v[2] = l->stride, v[3] = l->padding; break;
    case NN_LAYER_MAXPOOL:
    case NN_LAYER_AVGPOOL: v[0] = l->kernel, v[1] = l->stride == l->kernel ? -1 : l->stride; break;
    case NN_LAYER_LEAKYRELU:
    case NN_LAYER_DROPOUT: v[0] = l->p; break;
    default: break;
    }
}

static void set_args(nn_layer *l, const double v[4]) {
    switch (l->kind) {
    case NN_LAYER_LINEAR: l->out = (int)v[0]; break;
    case NN_LAYER_CONV: l->out = (int)v[0], l->kernel = (int)v[1], l->stride = (int)v[2], l->padding = (int)v[3]; break;
    case NN_LAYER_MAXPOOL:
    case NN_LAYER_AVGPOOL: l->kernel = (int)v[0], l->stride = v[1] < 0 ? (int)v[0] : (int)v[1]; break;
    case NN_LAYER_LEAKYRELU:
    case NN_LAYER_DROPOUT: l->p = (float)v[0]; break;
    default: break;
    }
}

/* Parses one argument value; -1 with the error set when it is not a number
 * of the right kind in range. */
static int parse_value(const char *layer, const arg_def *a, const char *s, size_t len, double *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return nn_error("%s: argument '%s' has no value", layer, a->name);
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (errno || end == buf || *end || !isfinite(v))
        return nn_error("%s: %s '%s' is not a number", layer, a->name, buf);
    if (a->is_int && v != floor(v)) return nn_error("%s: %s '%s' is not an integer", layer, a->name, buf);
    if (v < a->lo || v > a->hi)
        return nn_error("%s: %s %s is out of range [%g, %g]", layer, a->name, buf, a->lo, a->hi);
    *out = v;
    return 0;
}

/* "name" or "name(a,b,key=v)" of length len -> *l. */
static int parse_layer(const char *s, size_t len, nn_layer *l) {
    char text[96];
    snprintf(text, sizeof text, "%.*s", len > 80 ? 80 : (int)len, s);
    const char *paren = memchr(s, '(', len);
    size_t name_len = paren ? (size_t)(paren - s) : len;
    const kind_def *k = NULL;
    for (int i = 0; i < N_KINDS; i++)
        if (strlen(kinds[i].name) == name_len && strncmp(kinds[i].name, s, name_len) == 0) k = &kinds[i];
    if (!k) {
        return nn_error("unknown layer '%.*s' (linear, conv, maxpool, avgpool, batchnorm, layernorm, relu, "
                        "leakyrelu, gelu, sigmoid, tanh, dropout, flatten)",
                        (int)(name_len > 40 ? 40 : name_len), s);
    }
    memset(l, 0, sizeof *l);
    l->kind = k->kind;
    double v[4];
    bool given[4] = {false};
    for (int i = 0; i < k->n_args; i++) v[i] = k->args[i].def;
    if (paren) {
        if (s[len - 1] != ')') return nn_error("%s: expected ')' at the end", text);
        const char *p = paren + 1, *end = s + len - 1;
        if (k->n_args == 0 && p != end) return nn_error("%s: %s takes no arguments", text, k->name);
        int pos = 0;
        bool seen_key = false;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *item_end = comma ? comma : end;
            while (p < item_end && isspace((unsigned char)*p)) p++;
            const char *ie = item_end;
            while (ie > p && isspace((unsigned char)ie[-1])) ie--;
            const char *eq = memchr(p, '=', (size_t)(ie - p));
            int idx;
            if (eq) {
                seen_key = true;
                idx = -1;
                for (int i = 0; i < k->n_args; i++)
                    if (strlen(k->args[i].name) == (size_t)(eq - p) && strncmp(k->args[i].name, p, (size_t)(eq - p)) == 0)
                        idx = i;
                if (idx < 0) return nn_error("%s: %s has no argument '%.*s'", text, k->name, (int)(eq - p), p);
                p = eq + 1;
                while (p < ie && isspace((unsigned char)*p)) p++;
            } else {
                if (seen_key) return nn_error("%s: a positional argument after key=value", text);
                if (pos >= k->n_args) return nn_error("%s: too many arguments (%s takes %d)", text, k->name, k->n_args);
                idx = pos++;
            }
            if (given[idx]) return nn_error("%s: %s given twice", text, k->args[idx].name);
            if (parse_value(text, &k->args[idx], p, (size_t)(ie - p), &v[idx]) != 0) return -1;
            given[idx] = true;
            p = comma ? comma + 1 : end;
            if (comma && p == end) return nn_error("%s: an argument is missing after ','", text);
        }
    }
    for (int i = 0; i < k->n_args; i++)
        if (k->args[i].required && !given[i]) {
            if (k->kind == NN_LAYER_CONV)
                return nn_error("%s: conv needs the output channels and the kernel size, e.g. conv(32,3)", text);
            return nn_error("%s: missing argument '%s', e.g. %s(%s)", text, k->args[i].name, k->name,
                            k->kind == NN_LAYER_DROPOUT ? "0.5" : k->kind == NN_LAYER_LINEAR ? "128" : "2");
        }
    set_args(l, v);
    return 0;
}

int nn_spec_parse(const char *spec, nn_layer *layers, int max_layers) {
    int n = 0;
    const char *p = spec;
    if (strlen(spec) >= NN_SPEC_MAX) return nn_error("the spec is longer than %d characters", NN_SPEC_MAX - 1);
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        /* A layer runs to the next space outside parentheses. */
        const char *start = p;
        int depth = 0;
        for (; *p && (depth > 0 || !isspace((unsigned char)*p)); p++) {
            if (*p == '(') {
                if (++depth > 1) return nn_error("'%.*s': '(' without ')'", (int)(p - start), start);
            } else if (*p == ')') {
                if (--depth < 0) return nn_error("'%.*s': ')' without '('", (int)(p - start + 1), start);
            }
        }
        if (depth != 0) return nn_error("'%.40s': '(' without ')'", start);
        if (n == max_layers) return nn_error("more than %d layers", max_layers);
        if (parse_layer(start, (size_t)(p - start), &layers[n]) != 0) return -1;
        n++;
    }
    if (n == 0) return nn_error("the spec has no layers");
    return n;
}

/* The shortest %g form that reads back as the same float, so "0.1" stays
 * "0.1" rather than 0.100000001. */
static void format_number(char *buf, size_t cap, double v) {
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if ((float)strtod(buf, NULL) == (float)v) return;
    }
}

char *nn_layer_str(const nn_layer *l, char *buf, size_t cap) {
    const kind_def *k = kind_of(l->kind);
    double v[4];
    get_args(l, v);
    size_t pos = (size_t)snprintf(buf, cap, "%s", k->name);
    int written = 0;
    for (int i = 0; i < k->n_args && pos < cap; i++) {
        const arg_def *a = &k->args[i];
        if (!a->required && (float)v[i] == (float)a->def) continue;
        const char *sep = written++ ? "," : "(";
        char num[32];
        format_number(num, sizeof num, v[i]);
        if (a->required) pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s", sep, num);
        else pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s=%s", sep, a->name, num);
    }
    if (written && pos < cap) snprintf(buf + pos, cap - pos, ")");
    return buf;
}
