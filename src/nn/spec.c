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

/* "name" or "name(a,b,key=v)" of length len -> *l. */
static int parse_layer(const char *s, size_t len, nn_layer *l) {
    char text[96];
    snprintf(text, sizeof text, "%.*s", len > 80 ? 80 : (int)len, s);
    const char *paren = memchr(s, '(', len);
    size_t name_len = paren ? (size_t)(paren - s) : len;
    const nn_layer_kind *k = layer_kind_find(s, name_len);
    if (!k) return nn_error("unknown layer '%.*s' (%s)", (int)(name_len > 40 ? 40 : name_len), s, layer_kind_names());
    memset(l, 0, sizeof *l);
    l->kind = k;
    double v[LAYER_MAX_ARGS];
    bool given[LAYER_MAX_ARGS] = {false};
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
    for (int i = 0; i < k->n_args; i++) {
        if (k->args[i].required && !given[i])
            return nn_error("%s: missing argument '%s', e.g. %s", text, k->args[i].name, k->example);
        if (!given[i] && k->args[i].def == LAYER_ARG_FIRST) v[i] = v[0];
        set_arg(l, &k->args[i], v[i]);
    }
    return 0;
}

int spec_parse(const char *spec, nn_layer **layers) {
    int n = 0, cap = 0;
    *layers = NULL;
    for (const char *p = spec;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        /* A layer runs to the next space outside parentheses. */
        const char *start = p;
        int depth = 0, rc = 0;
        for (; *p && (depth > 0 || !isspace((unsigned char)*p)); p++) {
            if (*p == '(' && ++depth > 1) {
                rc = nn_error("'%.*s': '(' without ')'", (int)(p - start), start);
                break;
            }
            if (*p == ')' && --depth < 0) {
                rc = nn_error("'%.*s': ')' without '('", (int)(p - start + 1), start);
                break;
            }
        }
        if (rc == 0 && depth != 0) rc = nn_error("'%.40s': '(' without ')'", start);
        if (rc == 0 && n == cap) {
            cap = cap ? 2 * cap : 16;
            *layers = nn_xrealloc(*layers, (size_t)cap * sizeof **layers);
        }
        if (rc != 0 || parse_layer(start, (size_t)(p - start), &(*layers)[n]) != 0) {
            free(*layers);
            *layers = NULL;
            return -1;
        }
        n++;
    }
    if (n == 0) return nn_error("the spec has no layers");
    return n;
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

char *nn_layer_str(const nn_layer *l, char *buf, size_t cap) {
    const nn_layer_kind *k = l->kind;
    size_t pos = (size_t)snprintf(buf, cap, "%s", k->name);
    int written = 0;
    for (int i = 0; i < k->n_args && pos < cap; i++) {
        const layer_arg *a = &k->args[i];
        double v = get_arg(l, a), def = a->def == LAYER_ARG_FIRST ? get_arg(l, &k->args[0]) : a->def;
        if (!a->required && (float)v == (float)def) continue;
        const char *sep = written++ ? "," : "(";
        char num[32];
        format_number(num, sizeof num, v);
        if (a->required) pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s", sep, num);
        else pos += (size_t)snprintf(buf + pos, cap - pos, "%s%s=%s", sep, a->name, num);
    }
    if (written && pos < cap) snprintf(buf + pos, cap - pos, ")");
    return buf;
}
