/* The table of layer kinds a spec can name, and the table of fused runs
 * the forward loop recognises; plus what the families share. */
#include <stdio.h>
#include <string.h>

#include "layers/layers.h"
#include "core/util.h"

static const nn_layer_kind *const kinds[] = {
    &layer_linear,                                                          /* dense.c */
    &layer_conv,                                                            /* conv.c */
    &layer_maxpool, &layer_avgpool, &layer_last, &layer_mean,               /* pool.c */
    &layer_batchnorm, &layer_layernorm,                                     /* norm.c */
    &layer_relu, &layer_leakyrelu, &layer_gelu, &layer_sigmoid, &layer_tanh, /* activation.c */
    &layer_dropout,                                                         /* dropout.c */
    &layer_flatten,                                                         /* reshape.c */
    &layer_embed, &layer_posembed, &layer_unembed,                          /* embed.c */
    &layer_rnn, &layer_lstm, &layer_gru,                                    /* recurrent.c */
    &layer_attention,                                                       /* attention.c */
    &layer_residual, &layer_repeat,                                         /* block.c */
};
#define N_KINDS (int)(sizeof kinds / sizeof kinds[0])

/* The fused ops pool 2x2 windows with stride 2 only. */
static bool l2_pools_2x2(const nn_layer *l) { return layer_is_maxpool_2x2(&l[2]); }
static bool l3_pools_2x2(const nn_layer *l) { return layer_is_maxpool_2x2(&l[3]); }

/* Runs of layers done as one op (same results as layer by layer, fewer
 * passes over memory). The first that matches at a layer wins, so longer
 * runs come before their prefixes. */
static const layer_fusion fusions[] = {
    {4, {&layer_conv, &layer_batchnorm, &layer_relu, &layer_maxpool}, l3_pools_2x2, conv_batchnorm_relu_maxpool_forward},
    {3, {&layer_conv, &layer_batchnorm, &layer_relu}, .forward = conv_batchnorm_relu_forward},
    {3, {&layer_conv, &layer_relu, &layer_maxpool}, l2_pools_2x2, conv_relu_maxpool_forward},
    {2, {&layer_conv, &layer_relu}, .forward = conv_relu_forward},
    {3, {&layer_batchnorm, &layer_relu, &layer_maxpool}, l2_pools_2x2, batchnorm_relu_maxpool_forward},
    {2, {&layer_batchnorm, &layer_relu}, .forward = batchnorm_relu_forward},
    {3, {&layer_layernorm, &layer_gelu, &layer_dropout}, .forward = layernorm_gelu_dropout_forward},
    {2, {&layer_layernorm, &layer_gelu}, .forward = layernorm_gelu_forward},
};
#define N_FUSIONS (int)(sizeof fusions / sizeof fusions[0])

const nn_layer_kind *layer_kind_find(const char *name, size_t len) {
    for (int i = 0; i < N_KINDS; i++)
        if (strlen(kinds[i]->name) == len && strncmp(kinds[i]->name, name, len) == 0) return kinds[i];
    return NULL;
}

const char *layer_kind_names(void) {
    static char names[1024];
    if (!names[0]) {
        size_t pos = 0;
        for (int i = 0; i < N_KINDS && pos < sizeof names; i++)
            pos += (size_t)snprintf(names + pos, sizeof names - pos, "%s%s", i ? ", " : "", kinds[i]->name);
    }
    return names;
}

const layer_fusion *layer_fusion_at(const nn_layer *l, int n) {
    for (int f = 0; f < N_FUSIONS; f++) {
        const layer_fusion *fu = &fusions[f];
        bool match = fu->n <= n;
        for (int k = 0; match && k < fu->n; k++) match = l[k].kind == fu->kinds[k];
        if (match && (!fu->applies || fu->applies(l))) return fu;
    }
    return NULL;
}

/* No fused run contains a block (none is in the fusion table), and the
 * layers a block holds run in the block's own call, bounded by its n_inner:
 * a fused run stays on one side of a block's edge. */
nn_tensor *layers_forward(nn_layer *l, int n, const layer_run *run, nn_tensor *x) {
    for (int i = 0; i < n;) {
        const layer_fusion *fused = layer_fusion_at(&l[i], n - i);
        x = fused ? fused->forward(&l[i], run, x) : l[i].kind->forward(&l[i], run, x);
        i += fused ? fused->n : 1 + l[i].n_inner;
    }
    return x;
}

const nn_layer *layers_span_last(const nn_layer *l, int n) {
    const nn_layer *last = NULL;
    for (int i = 0; i < n; i += 1 + l[i].n_inner) last = &l[i];
    return last;
}

int layer_window(const char *where, const char *axis, int in, int k, int stride, int pad, int *out) {
    if (in + 2 * pad < k)
        return nn_error("%s: kernel %d is larger than the input %s of %d%s", where, k, axis, in,
                        pad ? " (with padding)" : "");
    *out = (in + 2 * pad - k) / stride + 1;
    return 0;
}

char *layer_tensor_name(const nn_layer *l, const char *suffix) {
    size_t len = strlen(l->name) + strlen(suffix) + 2;
    char *name = nn_xmalloc(len);
    snprintf(name, len, "%s.%s", l->name, suffix);
    return name;
}

const char *layer_shape_str(int ndim, const int *shape, char *buf, size_t cap) {
    size_t pos = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && pos < cap; i++)
        pos += shape[i] ? (size_t)snprintf(buf + pos, cap - pos, "%s%d", i ? ", " : "", shape[i])
                        : (size_t)snprintf(buf + pos, cap - pos, "%sT", i ? ", " : "");
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
    return buf;
}
