/* Model specs: "conv(32,3) relu maxpool(2) flatten linear(10)" <-> layers.
 * Each layer kind declares its arguments once, in its entry of the kind
 * table (src/layers/): the parser, the defaults and the canonical form
 * written into checkpoints all come from it. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "nn/spec.h"
#include "core/util.h"

const char *nn_layer_kind_name(const nn_layer_kind *kind) { return kind->name; }

/* The argument's field in the layer. */
static double get_arg(const nn_layer *l, const layer_arg *a) {
    const char *field = (const char *)l + a->field;
    return a->is_int ? *(const int *)field : *(const float *)field;
}

static void set_arg(nn_layer *l, const layer_arg *a, double v) {
    char *field = (char *)l + a->field;
    if (a->is_int) *(int *)field = (int)v;
    else *(float *)field = (float)v;
}

/* Parses one argument value; -1 with the error set when it is not a number
 * of the right kind in range. */
static int parse_value(const char *layer, const layer_arg *a, const char *s, size_t len, double *out) {
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

/* Bounds that keep a few bytes of spec from asking for much memory or stack. */
#define MAX_DEPTH 32           /* blocks inside blocks */
#define MAX_LAYERS (1L << 16)  /* in the stack, repeats written out */

/* The layers parsed so far, growing. */
typedef struct layer_list {
    nn_layer *at;
    int n, cap;
} layer_list;

/* Room for count more layers at the end; returns the first of them. */
static nn_layer *list_grow(layer_list *ls, int count) {
    if (ls->n + count > ls->cap) {
        ls->cap = ls->n + count > 2 * ls->cap ? ls->n + count : 2 * ls->cap;
        if (ls->cap < 16) ls->cap = 16;
        ls->at = nn_xrealloc(ls->at, (size_t)ls->cap * sizeof *ls->at);
    }
    nn_layer *first = &ls->at[ls->n];
    ls->n += count;
    return first;
}

/* The arguments "a,b,key=v" in [p, end) of kind k's layer (text names it in
 * errors) -> *l, defaults filled in. */
static int parse_args(const char *text, const nn_layer_kind *k, const char *p, const char *end, nn_layer *l) {
    double v[LAYER_MAX_ARGS];
    bool given[LAYER_MAX_ARGS] = {false};
    for (int i = 0; i < k->n_args; i++) v[i] = k->args[i].def;
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
    for (int i = 0; i < k->n_args; i++) {
        if (k->args[i].required && !given[i])
            return nn_error("%s: missing argument '%s', e.g. %s", text, k->args[i].name, k->example);
        if (!given[i] && k->args[i].def == LAYER_ARG_FIRST) v[i] = v[0];
        set_arg(l, &k->args[i], v[i]);
    }
    return 0;
}

static int parse_layers(const char *s, size_t len, layer_list *ls, int depth);

/* A block "name(ARGS, LAYERS)", its parentheses' inside in [p, end): the
 * block, then l->times copies of its LAYERS, onto ls. */
static int parse_block(const char *text, const nn_layer_kind *k, const char *p, const char *end, layer_list *ls,
                       int depth) {
    if (depth >= MAX_DEPTH) return nn_error("%s: blocks nested more than %d deep", text, MAX_DEPTH);
    /* Its arguments are the first n_args items (commas outside parentheses), its layers the rest. */
    const char *layers = p;
    int commas = 0, d = 0;
    for (const char *q = p; q < end && commas < k->n_args; q++) {
        d += *q == '(' ? 1 : *q == ')' ? -1 : 0;
        if (*q == ',' && d == 0 && ++commas == k->n_args) layers = q + 1;
    }
    if (commas < k->n_args) return nn_error("%s: expected its arguments, ',' and its layers, e.g. %s", text, k->example);
    nn_layer block = {.kind = k, .times = 1};
    if (parse_args(text, k, p, k->n_args ? layers - 1 : p, &block) != 0) return -1;
    layer_list inner = {0};
    int rc = parse_layers(layers, (size_t)(end - layers), &inner, depth + 1);
    if (rc == 0 && inner.n == 0) rc = nn_error("%s: holds no layers, e.g. %s", text, k->example);
    if (rc == 0 && ls->n + 1 + (long)block.times * inner.n > MAX_LAYERS)
        rc = nn_error("%s: the spec has more than %ld layers with its blocks written out", text, MAX_LAYERS);
    if (rc == 0) {
        block.n_inner = block.times * inner.n;
        nn_layer *at = list_grow(ls, 1 + block.n_inner);
        at[0] = block;
        for (int c = 0; c < block.times; c++) memcpy(at + 1 + (size_t)c * inner.n, inner.at, (size_t)inner.n * sizeof *at);
    }
    free(inner.at);
    return rc;
}

/* "name", "name(a,b,key=v)" or a block "name(ARGS, LAYERS)" of length len
 * onto ls. */
static int parse_layer(const char *s, size_t len, layer_list *ls, int depth) {
    char text[96];
    snprintf(text, sizeof text, "%.*s%s", len > 80 ? 80 : (int)len, s, len > 80 ? "..." : "");
    const char *paren = memchr(s, '(', len);
    size_t name_len = paren ? (size_t)(paren - s) : len;
    const nn_layer_kind *k = layer_kind_find(s, name_len);
    if (!k) return nn_error("unknown layer '%.*s' (%s)", (int)(name_len > 40 ? 40 : name_len), s, layer_kind_names());
    if (paren && s[len - 1] != ')') return nn_error("%s: expected ')' at the end", text);
    if (k->holds_layers) {
        if (!paren) return nn_error("%s: holds layers, written inside its parentheses, e.g. %s", text, k->example);
        return parse_block(text, k, paren + 1, s + len - 1, ls, depth);
    }
    nn_layer l = {.kind = k, .times = 1};
    if (parse_args(text, k, paren ? paren + 1 : s + len, paren ? s + len - 1 : s + len, &l) != 0) return -1;
    *list_grow(ls, 1) = l;
    return 0;
}

/* The layers of s[0, len), separated by spaces outside parentheses, onto ls. */
static int parse_layers(const char *s, size_t len, layer_list *ls, int depth) {
    const char *p = s, *end = s + len;
    for (;;) {
        while (p < end && isspace((unsigned char)*p)) p++;
        if (p == end) return 0;
        const char *start = p;
        int d = 0;
        for (; p < end && (d > 0 || !isspace((unsigned char)*p)); p++) {
            if (*p == '(') d++;
            if (*p == ')' && --d < 0) return nn_error("'%.*s': ')' without '('", (int)(p - start + 1), start);
        }
        if (d != 0) return nn_error("'%.*s': '(' without ')'", end - start > 40 ? 40 : (int)(end - start), start);
        if (parse_layer(start, (size_t)(p - start), ls, depth) != 0) return -1;
    }
}

int spec_parse(const char *spec, nn_layer **layers) {
    layer_list ls = {0};
    *layers = NULL;
    if (parse_layers(spec, strlen(spec), &ls, 0) != 0) {
        free(ls.at);
        return -1;
    }
    if (ls.n == 0) return nn_error("the spec has no layers");
    *layers = ls.at;
    return ls.n;
}

int nn_spec_check(const char *spec) {
    nn_layer *layers;
    int n = spec_parse(spec, &layers);
    free(layers);
    return n < 0 ? -1 : 0;
}

/* The shortest %g form that reads back as the same float, so "0.1" stays
 * "0.1" rather than 0.100000001. */
static void format_number(char *buf, size_t cap, double v) {
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if ((float)strtod(buf, NULL) == (float)v) return;
    }
}

/* A string that grows as it is written. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void put(text *t, const char *s) {
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1) > 64 ? 2 * (t->len + n + 1) : 64;
        t->s = nn_xrealloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, s, n + 1);
    t->len += n;
}

/* Writes the arguments that differ from their defaults: "32,3,padding=1". */
static void put_args(text *t, const nn_layer *l) {
    const nn_layer_kind *k = l->kind;
    int written = 0;
    for (int i = 0; i < k->n_args; i++) {
        const layer_arg *a = &k->args[i];
        double v = get_arg(l, a), def = a->def == LAYER_ARG_FIRST ? get_arg(l, &k->args[0]) : a->def;
        if (!a->required && (float)v == (float)def) continue;
        char num[32], item[64];
        format_number(num, sizeof num, v);
        if (a->required) snprintf(item, sizeof item, "%s%s", written++ ? "," : "", num);
        else snprintf(item, sizeof item, "%s%s=%s", written++ ? "," : "", a->name, num);
        put(t, item);
    }
}

static void put_span(text *t, const nn_layer *l, int n);

/* The arguments that differ from their defaults, "32,3,padding=1", for the
 * caller to free ("" when none do). */
static char *args_string(const nn_layer *l) {
    text t = {0};
    put(&t, "");
    put_args(&t, l);
    return t.s;
}

/* name, name(args), or a block: name(args, LAYERS) with one copy of its layers. */
static void put_layer(text *t, const nn_layer *l) {
    char *args = args_string(l);
    put(t, l->kind->name);
    if (l->kind->holds_layers) {
        put(t, "(");
        put(t, args);
        if (*args) put(t, ", ");
        put_span(t, l + 1, l->n_inner / l->times);
        put(t, ")");
    } else if (*args) {
        put(t, "(");
        put(t, args);
        put(t, ")");
    }
    free(args);
}

static void put_span(text *t, const nn_layer *l, int n) {
    for (int i = 0; i < n; i += 1 + l[i].n_inner) {
        if (i) put(t, " ");
        put_layer(t, &l[i]);
    }
}

char *spec_string(const nn_layer *l, int n) {
    text t = {0};
    put(&t, "");
    put_span(&t, l, n);
    return t.s;
}

char *nn_layer_str(const nn_layer *l, char *buf, size_t cap) {
    text t = {0};
    put(&t, "");
    put_layer(&t, l);
    snprintf(buf, cap, "%s", t.s);
    free(t.s);
    return buf;
}

const char *spec_layer_brief(const nn_layer *l, char *buf, size_t cap) {
    if (!l->kind->holds_layers) return nn_layer_str(l, buf, cap);
    char *args = args_string(l);
    snprintf(buf, cap, "%s(%s%s...)", l->kind->name, args, *args ? ", " : "");
    free(args);
    return buf;
}
