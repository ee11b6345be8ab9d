/* MLP checkpoints in safetensors: the parameters under their PyTorch names,
 * the architecture and input normalisation in the string metadata. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model.h"
#include "nn/safetensors.h"

#define MAX_META 32

int nn_mlp_save(const nn_mlp *m, const char *path, const char *const *extra_keys,
                const char *const *extra_values, int n_extra) {
    return nn_mlp_save_with(m, path, NULL, 0, extra_keys, extra_values, n_extra);
}

int nn_mlp_save_with(const nn_mlp *m, const char *path, const nn_st_entry *extra_tensors, int n_extra_tensors,
                     const char *const *extra_keys, const char *const *extra_values, int n_extra) {
    const nn_mlp_config *c = &m->cfg;
    const nn_params *p = &m->params;
    NN_CHECK(n_extra >= 0 && n_extra <= MAX_META - 8, "nn_mlp_save: too many metadata entries");
    char layers[256], dropout[32], input_dropout[32], mean[32], std[32];
    int pos = 0;
    for (int i = 0; i <= c->n_linear; i++)
        pos += snprintf(layers + pos, sizeof layers - (size_t)pos, i ? ",%d" : "%d", c->sizes[i]);
    snprintf(dropout, sizeof dropout, "%.9g", c->dropout);
    snprintf(input_dropout, sizeof input_dropout, "%.9g", c->input_dropout);
    snprintf(mean, sizeof mean, "%.9g", m->input_mean);
    snprintf(std, sizeof std, "%.9g", m->input_std);
    const char *keys[MAX_META] = {"nn.arch",       "nn.layers",     "nn.act",      "nn.norm",
                                  "nn.dropout",    "nn.input_mean", "nn.input_std", "nn.input_dropout"};
    const char *values[MAX_META] = {c->n_linear == 1 ? "linear" : "mlp", layers, nn_act_name(c->act),
                                    c->layer_norm ? "layer" : "none", dropout, mean, std, input_dropout};
    for (int i = 0; i < n_extra; i++) {
        keys[8 + i] = extra_keys[i];
        values[8 + i] = extra_values[i];
    }
    NN_CHECK(n_extra_tensors >= 0 && n_extra_tensors <= 8, "nn_mlp_save: too many extra tensors");
    nn_st_entry entries[NN_MAX_PARAMS + 8];
    int64_t shapes[NN_MAX_PARAMS][NN_MAX_DIMS];
    for (int i = 0; i < p->n; i++) {
        const nn_tensor *t = &p->tensors[i];
        for (int d = 0; d < t->ndim; d++) shapes[i][d] = t->shape[d];
        entries[i] = (nn_st_entry){.name = t->name, .ndim = t->ndim, .shape = shapes[i], .data = t->data};
    }
    for (int i = 0; i < n_extra_tensors; i++) entries[p->n + i] = extra_tensors[i];
    return nn_st_save(path, entries, p->n + n_extra_tensors, keys, values, 8 + n_extra);
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

static int parse_layers(const char *path, const char *s, nn_mlp_config *c) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 1 << 16 || n > NN_MLP_MAX_LAYERS)
            return nn_error("%s: metadata 'nn.layers' = '%s' is not a list of 2..%d widths", path, s,
                            NN_MLP_MAX_LAYERS + 1);
        c->sizes[n++] = (int)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return nn_error("%s: metadata 'nn.layers' = '%s' is malformed", path, s);
    }
    if (n < 2) return nn_error("%s: metadata 'nn.layers' = '%s' needs at least two widths", path, s);
    c->n_linear = n - 1;
    return 0;
}

int nn_mlp_load(nn_mlp *m, const char *path) {
    nn_safetensors st;
    if (nn_st_load(path, &st) != 0) return -1;
    int rc = nn_mlp_load_st(m, &st, path);
    nn_st_free(&st);
    return rc;
}

int nn_mlp_load_st(nn_mlp *m, const nn_safetensors *st, const char *path) {
    nn_mlp_config c = {0};
    float mean = 0.0f, std = 1.0f;
    const char *arch = meta(st, path, "nn.arch"), *layers = NULL, *act = NULL, *norm = NULL, *dropout = NULL,
               *smean = NULL, *sstd = NULL;
    int ok = arch && (layers = meta(st, path, "nn.layers")) && (act = meta(st, path, "nn.act")) &&
             (norm = meta(st, path, "nn.norm")) && (dropout = meta(st, path, "nn.dropout")) &&
             (smean = meta(st, path, "nn.input_mean")) && (sstd = meta(st, path, "nn.input_std"));
    if (!ok) goto fail;
    if (strcmp(arch, "mlp") != 0 && strcmp(arch, "linear") != 0) {
        nn_error("%s: unsupported architecture '%s' (expected mlp or linear)", path, arch);
        goto fail;
    }
    if (parse_layers(path, layers, &c) != 0) goto fail;
    if (nn_act_parse(act, &c.act) != 0) {
        nn_error("%s: unknown activation '%s' in metadata", path, act);
        goto fail;
    }
    if (strcmp(norm, "none") != 0 && strcmp(norm, "layer") != 0) {
        nn_error("%s: unknown normalisation '%s' in metadata", path, norm);
        goto fail;
    }
    c.layer_norm = strcmp(norm, "layer") == 0;
    if (parse_float(path, "nn.dropout", dropout, 0.0f, 0.99f, &c.dropout) != 0 ||
        parse_float(path, "nn.input_mean", smean, -1e6f, 1e6f, &mean) != 0 ||
        parse_float(path, "nn.input_std", sstd, 1e-12f, 1e6f, &std) != 0)
        goto fail;
    /* Absent from files written before it existed, or by hand. */
    const char *input_dropout = nn_st_meta(st, "nn.input_dropout");
    if (input_dropout && parse_float(path, "nn.input_dropout", input_dropout, 0.0f, 0.99f, &c.input_dropout) != 0)
        goto fail;
    /* The weight matrices are checked against the metadata before the model
     * is allocated, so a few bytes of "nn.layers" cannot make it allocate
     * gigabytes: each must be in the file (the rest is as small as a width). */
    for (int i = 0; i < c.n_linear; i++) {
        char name[32];
        snprintf(name, sizeof name, "fc%d.weight", i + 1);
        const nn_st_tensor *t = nn_st_find(st, name);
        if (!t) {
            nn_error("%s: no tensor named '%s' (layers %s need one)", path, name, layers);
            goto fail;
        }
        if (t->ndim != 2 || t->shape[0] != c.sizes[i + 1] || t->shape[1] != c.sizes[i]) {
            nn_error("%s: tensor '%s' has the wrong shape for layers %s: expected [%d, %d]", path, name, layers,
                     c.sizes[i + 1], c.sizes[i]);
            goto fail;
        }
    }
    nn_rng unused;
    nn_rng_seed(&unused, 0, 0);
    nn_mlp_init(m, &c, &unused);
    m->input_mean = mean;
    m->input_std = std;
    int n_model = 0;
    for (int i = 0; i < st->n_tensors; i++) n_model += strncmp(st->tensors[i].name, "train.", 6) != 0;
    if (n_model != m->params.n) {
        nn_error("%s: %d tensors, expected %d for a %s model with layers %s", path, n_model, m->params.n,
                 arch, layers);
        goto fail_model;
    }
    for (int i = 0; i < m->params.n; i++) {
        nn_tensor *t = &m->params.tensors[i];
        int64_t shape[NN_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        if (nn_st_read_f32(st, t->name, t->data, t->ndim, shape) != 0) goto fail_model;
        for (size_t k = 0; k < t->size; k++)
            if (!isfinite(t->data[k])) {
                nn_error("%s: tensor '%s' holds a non-finite value", path, t->name);
                goto fail_model;
            }
    }
    return 0;
fail_model:
    nn_mlp_free(m);
fail:
    return -1;
}
