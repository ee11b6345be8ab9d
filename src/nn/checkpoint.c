/* Model checkpoints in safetensors: the parameters and running statistics
 * under their PyTorch names, the spec, input shape and normalisation in the
 * string metadata. Files of earlier releases describe an MLP with nn.layers,
 * nn.act, nn.norm and nn.dropout instead of a spec; they load as that spec. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "nn/model.h"
#include "nn/safetensors.h"
#include "core/util.h"

static const char *arch_name(const nn_model *m) {
    if (m->vocab) return "text";
    int linear = 0;
    for (int i = 0; i < m->n_layers; i++) {
        if (m->layers[i].kind->spatial) return "cnn";
        linear += m->layers[i].kind == &layer_linear;
    }
    return linear == 1 ? "linear" : "mlp";
}

static void add_entries(const nn_params *p, nn_st_entry *entries, int64_t (*shapes)[NN_MAX_DIMS], int *n) {
    for (int i = 0; i < p->n; i++, (*n)++) {
        const nn_tensor *t = p->tensors[i];
        for (int d = 0; d < t->ndim; d++) shapes[*n][d] = t->shape[d];
        entries[*n] = (nn_st_entry){.name = t->name, .ndim = t->ndim, .shape = shapes[*n], .data = t->data};
    }
}

int nn_model_save(const nn_model *m, const char *path) { return nn_model_save_with(m, path, NULL, 0, NULL, NULL, 0); }

int nn_model_save_with(const nn_model *m, const char *path, const nn_st_entry *extra_tensors, int n_extra_tensors,
                       const char *const *extra_keys, const char *const *extra_values, int n_extra) {
    enum { N_OWN = 5 };
    NN_CHECK(n_extra >= 0 && n_extra_tensors >= 0, "nn_model_save_with: negative counts");
    char shape[48], mean[32], std[32];
    if (m->vocab && m->in_shape[0]) snprintf(shape, sizeof shape, "tokens(%d,%d)", m->vocab, m->in_shape[0]);
    else if (m->vocab) snprintf(shape, sizeof shape, "tokens(%d)", m->vocab);
    else snprintf(shape, sizeof shape, "%d,%d,%d", m->in_shape[0], m->in_shape[1], m->in_shape[2]);
    snprintf(mean, sizeof mean, "%.9g", m->input_mean);
    snprintf(std, sizeof std, "%.9g", m->input_std);
    const char **keys = nn_xmalloc((size_t)(N_OWN + n_extra) * sizeof *keys);
    const char **values = nn_xmalloc((size_t)(N_OWN + n_extra) * sizeof *values);
    const char *own_keys[N_OWN] = {"nn.arch", "nn.spec", "nn.input_shape", "nn.input_mean", "nn.input_std"};
    const char *own_values[N_OWN] = {arch_name(m), m->spec, shape, mean, std};
    for (int i = 0; i < N_OWN + n_extra; i++) {
        keys[i] = i < N_OWN ? own_keys[i] : extra_keys[i - N_OWN];
        values[i] = i < N_OWN ? own_values[i] : extra_values[i - N_OWN];
    }
    int n_model = m->params.n + m->state.n, n = 0;
    nn_st_entry *entries = nn_xmalloc((size_t)(n_model + n_extra_tensors + 1) * sizeof *entries);
    int64_t(*shapes)[NN_MAX_DIMS] = nn_xmalloc((size_t)(n_model + 1) * sizeof *shapes);
    add_entries(&m->params, entries, shapes, &n);
    add_entries(&m->state, entries, shapes, &n);
    for (int i = 0; i < n_extra_tensors; i++) entries[n++] = extra_tensors[i];
    int rc = nn_st_save(path, entries, n, keys, values, N_OWN + n_extra);
    free(shapes);
    free(entries);
    free(keys);
    free(values);
    return rc;
}

/* A required metadata string, or an error naming the missing key. */
static const char *meta(const nn_safetensors *st, const char *path, const char *key) {
    const char *v = nn_st_meta(st, key);
    if (!v) nn_error("%s: missing metadata '%s' (not a checkpoint written by nn?)", path, key);
    return v;
}

static int parse_float(const char *path, const char *key, const char *s, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return nn_error("%s: metadata '%s' = '%s' is not a number in [%g, %g]", path, key, s, lo, hi);
    *out = (float)v;
    return 0;
}

/* "1,28,28" -> three positive ints. */
static int parse_shape(const char *path, const char *s, int shape[3]) {
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 4096 || *end != (i < 2 ? ',' : '\0'))
            return nn_error("%s: metadata 'nn.input_shape' = '%s' is not C,H,W", path, s);
        shape[i] = (int)v;
        p = end + 1;
    }
    return 0;
}

/* An earlier release's MLP metadata as a spec, and its input shape: a
 * square image when the input width is a square (784 = 28 x 28). */
static int legacy_spec(const nn_safetensors *st, const char *path, char **spec, int in_shape[3]) {
    const char *arch = meta(st, path, "nn.arch"), *layers = NULL, *act = NULL, *norm = NULL, *dropout = NULL;
    if (!arch || !(layers = meta(st, path, "nn.layers")) || !(act = meta(st, path, "nn.act")) ||
        !(norm = meta(st, path, "nn.norm")) || !(dropout = meta(st, path, "nn.dropout")))
        return -1;
    if (strcmp(arch, "mlp") != 0 && strcmp(arch, "linear") != 0)
        return nn_error("%s: unsupported architecture '%s' without 'nn.spec'", path, arch);
    enum { MAX_WIDTHS = 10 }; /* what earlier releases wrote: up to 8 hidden layers */
    int sizes[MAX_WIDTHS], n = 0;
    for (const char *p = layers; *p;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 1 << 16 || n == MAX_WIDTHS)
            return nn_error("%s: metadata 'nn.layers' = '%s' is not a list of 2..%d widths", path, layers,
                            MAX_WIDTHS);
        sizes[n++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return nn_error("%s: metadata 'nn.layers' = '%s' is malformed", path, layers);
    }
    if (n < 2) return nn_error("%s: metadata 'nn.layers' = '%s' needs at least two widths", path, layers);
    nn_mlp_config c = {.n_hidden = n - 2, .hidden = sizes + 1, .classes = sizes[n - 1]};
    if (nn_act_parse(act, &c.act) != 0) return nn_error("%s: unknown activation '%s' in metadata", path, act);
    if (strcmp(norm, "none") != 0 && strcmp(norm, "layer") != 0)
        return nn_error("%s: unknown normalisation '%s' in metadata", path, norm);
    c.layer_norm = strcmp(norm, "layer") == 0;
    if (parse_float(path, "nn.dropout", dropout, 0.0f, 0.95f, &c.dropout) != 0) return -1;
    const char *input_dropout = nn_st_meta(st, "nn.input_dropout"); /* absent from the oldest files */
    if (input_dropout && parse_float(path, "nn.input_dropout", input_dropout, 0.0f, 0.95f, &c.input_dropout) != 0)
        return -1;
    *spec = nn_mlp_spec(&c);
    int side = (int)lround(sqrt((double)sizes[0]));
    bool square = side * side == sizes[0];
    in_shape[0] = 1;
    in_shape[1] = square ? side : 1;
    in_shape[2] = square ? side : sizes[0];
    return 0;
}

int nn_model_load(nn_model *m, const char *path) {
    nn_safetensors st;
    if (nn_st_load(&st, path) != 0) return -1;
    int rc = nn_model_load_st(m, &st, path);
    nn_st_free(&st);
    return rc;
}

/* Every tensor the planned model needs must be in the file with its shape
 * before the model is allocated, so a few bytes of spec cannot make it
 * allocate gigabytes; and the file must hold no other model tensor. */
/* One planned tensor against the file's: 0, or -1 with the error. */
static int check_tensor(const nn_safetensors *st, const char *path, const char *spec, const char *name,
                        const layer_tensor *t) {
    const nn_st_tensor *f = nn_st_find(st, name);
    if (!f) return nn_error("%s: no tensor named '%s' (the spec '%s' needs one)", path, name, spec);
    bool same = f->ndim == t->ndim;
    for (int d = 0; same && d < f->ndim; d++) same = f->shape[d] == t->shape[d];
    if (same) return 0;
    char want[64];
    return nn_error("%s: tensor '%s' has the wrong shape for the spec '%s': expected %s", path, name, spec,
                    layer_shape_str(t->ndim, t->shape, want, sizeof want));
}

static int check_tensors(const nn_model *m, const nn_safetensors *st, const char *path, const char *spec) {
    int expected = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        layer_tensor t[LAYER_MAX_TENSORS];
        int n = l->kind->tensors ? l->kind->tensors(l, t) : 0;
        for (int k = 0; k < n; k++, expected++) {
            char *name = layer_tensor_name(l, t[k].suffix);
            int rc = check_tensor(st, path, spec, name, &t[k]);
            free(name);
            if (rc != 0) return -1;
        }
    }
    int in_file = 0;
    for (int i = 0; i < st->n_tensors; i++) in_file += strncmp(st->tensors[i].name, "train.", 6) != 0;
    if (in_file != expected)
        return nn_error("%s: %d model tensors, expected %d for the spec '%s'", path, in_file, expected, spec);
    return 0;
}

static int read_store(nn_params *p, const nn_safetensors *st, const char *path) {
    for (int i = 0; i < p->n; i++) {
        nn_tensor *t = p->tensors[i];
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        if (nn_st_read_f32(st, t->name, t->ndim, shape, t->data) != 0) return -1;
        for (size_t k = 0; k < t->size; k++)
            if (!isfinite(t->data[k])) return nn_error("%s: tensor '%s' holds a non-finite value", path, t->name);
    }
    return 0;
}

/* The spec and input shape the file describes: *owned is set (and must be
 * freed) when the spec was rebuilt from an earlier release's metadata. */
/* What the file's model takes: an image [C, H, W] (*vocab 0) or token ids
 * ("tokens(V)": *vocab V; "tokens(V,T)", a model with learned positions:
 * at most T of them, in_shape[0] = T). */
static int parse_input(const char *path, const char *s, int in_shape[3], int *vocab) {
    *vocab = 0;
    if (strncmp(s, "tokens(", 7) != 0) return parse_shape(path, s, in_shape);
    char *end, *end_t = NULL;
    errno = 0;
    long v = strtol(s + 7, &end, 10), t = 0;
    if (!errno && end != s + 7 && *end == ',' && isdigit((unsigned char)end[1])) t = strtol(end + 1, &end_t, 10);
    if (end_t) end = end_t;
    if (errno || end == s + 7 || strcmp(end, ")") != 0 || v < 1 || v > NN_MAX_VOCAB || (end_t && (t < 1 || t > NN_MAX_CONTEXT)))
        return nn_error("%s: metadata 'nn.input_shape' = '%s' is not tokens(V) or tokens(V,T) with V in 1..%d and T "
                        "in 1..%d", path, s, NN_MAX_VOCAB, NN_MAX_CONTEXT);
    *vocab = (int)v;
    in_shape[0] = (int)t;
    return 0;
}

/* The spec and input the file describes: *owned is set (and must be freed)
 * when the spec was rebuilt from an earlier release's metadata. */
static const char *file_spec(const nn_safetensors *st, const char *path, int in_shape[3], int *vocab, char **owned) {
    const char *spec = nn_st_meta(st, "nn.spec"), *shape;
    *owned = NULL;
    *vocab = 0;
    if (!spec) return legacy_spec(st, path, owned, in_shape) == 0 ? *owned : NULL;
    if (!(shape = meta(st, path, "nn.input_shape")) || parse_input(path, shape, in_shape, vocab) != 0) return NULL;
    return spec;
}

int nn_model_load_st(nn_model *m, const nn_safetensors *st, const char *path) {
    memset(m, 0, sizeof *m);
    int in_shape[3], vocab;
    char *legacy;
    const char *spec = file_spec(st, path, in_shape, &vocab, &legacy), *smean, *sstd;
    float mean = 0.0f, std = 1.0f;
    int rc = -1;
    if (!spec || !(smean = meta(st, path, "nn.input_mean")) || !(sstd = meta(st, path, "nn.input_std")) ||
        parse_float(path, "nn.input_mean", smean, -1e6f, 1e6f, &mean) != 0 ||
        parse_float(path, "nn.input_std", sstd, 1e-12f, 1e6f, &std) != 0)
        goto done;
    if ((vocab ? nn_model_plan_text_context(m, spec, vocab, 0, in_shape[0]) : nn_model_plan(m, spec, in_shape, 0)) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", nn_last_error());
        nn_error("%s: metadata 'nn.spec': %s", path, why);
        goto done;
    }
    if (check_tensors(m, st, path, spec) != 0) goto done;
    nn_rng unused;
    nn_rng_seed(&unused, 0, 0);
    nn_model_build(m, &unused);
    m->input_mean = mean;
    m->input_std = std;
    if (read_store(&m->params, st, path) != 0 || read_store(&m->state, st, path) != 0) goto done;
    rc = 0;
done:
    if (rc != 0) nn_model_free(m);
    free(legacy);
    return rc;
}
