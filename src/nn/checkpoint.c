/* Model checkpoints in safetensors: the parameters and running statistics
 * under their PyTorch names, the spec, input shape and normalisation in the
 * string metadata. Files of earlier releases describe an MLP with nn.layers,
 * nn.act, nn.norm and nn.dropout instead of a spec; they load as that spec. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"
#include "nn/safetensors.h"

#define MAX_META 64
#define MAX_EXTRA_TENSORS 8

static const char *arch_name(const nn_model *m) {
    int linear = 0;
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer_kind k = m->layers[i].kind;
        if (k == NN_LAYER_CONV || k == NN_LAYER_MAXPOOL || k == NN_LAYER_AVGPOOL) return "cnn";
        linear += k == NN_LAYER_LINEAR;
    }
    return linear == 1 ? "linear" : "mlp";
}

static void add_entries(const nn_params *p, nn_st_entry *entries, int64_t (*shapes)[NN_MAX_DIMS], int *n) {
    for (int i = 0; i < p->n; i++, (*n)++) {
        const nn_tensor *t = &p->tensors[i];
        for (int d = 0; d < t->ndim; d++) shapes[*n][d] = t->shape[d];
        entries[*n] = (nn_st_entry){.name = t->name, .ndim = t->ndim, .shape = shapes[*n], .data = t->data};
    }
}

int nn_model_save(const nn_model *m, const char *path, const nn_st_entry *extra_tensors, int n_extra_tensors,
                  const char *const *extra_keys, const char *const *extra_values, int n_extra) {
    enum { N_OWN = 5 };
    NN_CHECK(n_extra >= 0 && n_extra <= MAX_META - N_OWN, "nn_model_save: too many metadata entries");
    NN_CHECK(n_extra_tensors >= 0 && n_extra_tensors <= MAX_EXTRA_TENSORS, "nn_model_save: too many extra tensors");
    char spec[NN_SPEC_MAX], shape[48], mean[32], std[32];
    nn_model_spec(m, spec, sizeof spec);
    snprintf(shape, sizeof shape, "%d,%d,%d", m->in_shape[0], m->in_shape[1], m->in_shape[2]);
    snprintf(mean, sizeof mean, "%.9g", m->input_mean);
    snprintf(std, sizeof std, "%.9g", m->input_std);
    const char *keys[MAX_META] = {"nn.arch", "nn.spec", "nn.input_shape", "nn.input_mean", "nn.input_std"};
    const char *values[MAX_META] = {arch_name(m), spec, shape, mean, std};
    for (int i = 0; i < n_extra; i++) {
        keys[N_OWN + i] = extra_keys[i];
        values[N_OWN + i] = extra_values[i];
    }
    nn_st_entry entries[2 * NN_MAX_PARAMS + MAX_EXTRA_TENSORS];
    int64_t shapes[2 * NN_MAX_PARAMS][NN_MAX_DIMS];
    int n = 0;
    add_entries(&m->params, entries, shapes, &n);
    add_entries(&m->state, entries, shapes, &n);
    for (int i = 0; i < n_extra_tensors; i++) entries[n++] = extra_tensors[i];
    return nn_st_save(path, entries, n, keys, values, N_OWN + n_extra);
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
static int legacy_spec(const nn_safetensors *st, const char *path, char *spec, size_t cap, int in_shape[3]) {
    const char *arch = meta(st, path, "nn.arch"), *layers = NULL, *act = NULL, *norm = NULL, *dropout = NULL;
    if (!arch || !(layers = meta(st, path, "nn.layers")) || !(act = meta(st, path, "nn.act")) ||
        !(norm = meta(st, path, "nn.norm")) || !(dropout = meta(st, path, "nn.dropout")))
        return -1;
    if (strcmp(arch, "mlp") != 0 && strcmp(arch, "linear") != 0)
        return nn_error("%s: unsupported architecture '%s' without 'nn.spec'", path, arch);
    int sizes[NN_MLP_MAX_HIDDEN + 2], n = 0;
    for (const char *p = layers; *p;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 1 << 16 || n == NN_MLP_MAX_HIDDEN + 2)
            return nn_error("%s: metadata 'nn.layers' = '%s' is not a list of 2..%d widths", path, layers,
                            NN_MLP_MAX_HIDDEN + 2);
        sizes[n++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return nn_error("%s: metadata 'nn.layers' = '%s' is malformed", path, layers);
    }
    if (n < 2) return nn_error("%s: metadata 'nn.layers' = '%s' needs at least two widths", path, layers);
    nn_mlp_config c = {.n_hidden = n - 2, .classes = sizes[n - 1]};
    memcpy(c.hidden, sizes + 1, (size_t)c.n_hidden * sizeof(int));
    if (nn_act_parse(act, &c.act) != 0) return nn_error("%s: unknown activation '%s' in metadata", path, act);
    if (strcmp(norm, "none") != 0 && strcmp(norm, "layer") != 0)
        return nn_error("%s: unknown normalisation '%s' in metadata", path, norm);
    c.layer_norm = strcmp(norm, "layer") == 0;
    if (parse_float(path, "nn.dropout", dropout, 0.0f, 0.95f, &c.dropout) != 0) return -1;
    const char *input_dropout = nn_st_meta(st, "nn.input_dropout"); /* absent from the oldest files */
    if (input_dropout && parse_float(path, "nn.input_dropout", input_dropout, 0.0f, 0.95f, &c.input_dropout) != 0)
        return -1;
    nn_mlp_spec(&c, spec, cap);
    int side = (int)lround(sqrt((double)sizes[0]));
    bool square = side * side == sizes[0];
    in_shape[0] = 1;
    in_shape[1] = square ? side : 1;
    in_shape[2] = square ? side : sizes[0];
    return 0;
}

int nn_model_load(nn_model *m, const char *path) {
    nn_safetensors st;
    if (nn_st_load(path, &st) != 0) return -1;
    int rc = nn_model_load_st(m, &st, path);
    nn_st_free(&st);
    return rc;
}

/* Every tensor the planned model needs must be in the file with its shape
 * before the model is allocated, so a few bytes of spec cannot make it
 * allocate gigabytes; and the file must hold no other model tensor. */
static int check_tensors(const nn_model *m, const nn_safetensors *st, const char *path, const char *spec) {
    int expected = 0;
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer_tensor t[5];
        int n = nn_layer_tensors(&m->layers[i], t);
        for (int k = 0; k < n; k++, expected++) {
            const nn_st_tensor *f = nn_st_find(st, t[k].name);
            if (!f) return nn_error("%s: no tensor named '%s' (the spec '%s' needs one)", path, t[k].name, spec);
            bool same = f->ndim == t[k].ndim;
            for (int d = 0; same && d < f->ndim; d++) same = f->shape[d] == t[k].shape[d];
            if (!same) {
                char want[64];
                size_t pos = (size_t)snprintf(want, sizeof want, "[");
                for (int d = 0; d < t[k].ndim; d++)
                    pos += (size_t)snprintf(want + pos, sizeof want - pos, "%s%d", d ? ", " : "", t[k].shape[d]);
                snprintf(want + pos, sizeof want - pos, "]");
                return nn_error("%s: tensor '%s' has the wrong shape for the spec '%s': expected %s", path, t[k].name,
                                spec, want);
            }
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
        nn_tensor *t = &p->tensors[i];
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        if (nn_st_read_f32(st, t->name, t->data, t->ndim, shape) != 0) return -1;
        for (size_t k = 0; k < t->size; k++)
            if (!isfinite(t->data[k])) return nn_error("%s: tensor '%s' holds a non-finite value", path, t->name);
    }
    return 0;
}

int nn_model_load_st(nn_model *m, const nn_safetensors *st, const char *path) {
    char legacy[NN_SPEC_MAX];
    int in_shape[3];
    const char *spec = nn_st_meta(st, "nn.spec"), *shape = NULL, *smean, *sstd;
    if (spec) {
        if (!(shape = meta(st, path, "nn.input_shape")) || parse_shape(path, shape, in_shape) != 0) return -1;
    } else {
        if (legacy_spec(st, path, legacy, sizeof legacy, in_shape) != 0) return -1;
        spec = legacy;
    }
    float mean = 0.0f, std = 1.0f;
    if (!(smean = meta(st, path, "nn.input_mean")) || !(sstd = meta(st, path, "nn.input_std")) ||
        parse_float(path, "nn.input_mean", smean, -1e6f, 1e6f, &mean) != 0 ||
        parse_float(path, "nn.input_std", sstd, 1e-12f, 1e6f, &std) != 0)
        return -1;
    if (nn_model_plan(m, spec, in_shape, 0) != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", nn_last_error());
        return nn_error("%s: metadata 'nn.spec': %s", path, why);
    }
    if (check_tensors(m, st, path, spec) != 0) return -1;
    nn_rng unused;
    nn_rng_seed(&unused, 0, 0);
    nn_model_build(m, &unused);
    m->input_mean = mean;
    m->input_std = std;
    if (read_store(&m->params, st, path) != 0 || read_store(&m->state, st, path) != 0) {
        nn_model_free(m);
        return -1;
    }
    return 0;
}
