/* The MLP (and softmax regression, its zero-hidden-layer case). */
#include <stdio.h>
#include <string.h>

#include "nn/model.h"

static const char *const act_names[] = {"relu", "gelu", "sigmoid", "tanh"};

int nn_act_parse(const char *name, nn_act *act) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, act_names[i]) == 0) {
            *act = (nn_act)i;
            return 0;
        }
    return -1;
}

const char *nn_act_name(nn_act act) { return act_names[act]; }

void nn_mlp_init(nn_mlp *m, const nn_mlp_config *cfg, nn_rng *rng) {
    NN_CHECK(cfg->n_linear >= 1 && cfg->n_linear <= NN_MLP_MAX_LAYERS, "mlp: %d linear layers (1..%d)",
             cfg->n_linear, NN_MLP_MAX_LAYERS);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->input_mean = 0.0f;
    m->input_std = 1.0f;
    nn_params_init(&m->params);
    char name[32];
    /* Register everything first: the store's buffer moves while it grows. */
    for (int i = 0; i < cfg->n_linear; i++) {
        int in_f = cfg->sizes[i], out_f = cfg->sizes[i + 1];
        snprintf(name, sizeof name, "fc%d.weight", i + 1);
        m->fc_w[i] = nn_params_add(&m->params, name, 2, (int[]){out_f, in_f}, true);
        snprintf(name, sizeof name, "fc%d.bias", i + 1);
        m->fc_b[i] = nn_params_add(&m->params, name, 1, (int[]){out_f}, false);
        if (cfg->layer_norm && i < cfg->n_linear - 1) {
            snprintf(name, sizeof name, "ln%d.weight", i + 1);
            m->ln_w[i] = nn_params_add(&m->params, name, 1, (int[]){out_f}, false);
            snprintf(name, sizeof name, "ln%d.bias", i + 1);
            m->ln_b[i] = nn_params_add(&m->params, name, 1, (int[]){out_f}, false);
        }
    }
    for (int i = 0; i < cfg->n_linear; i++) {
        nn_init_uniform_fan_in(m->fc_w[i], cfg->sizes[i], rng);
        nn_init_uniform_fan_in(m->fc_b[i], cfg->sizes[i], rng);
        if (m->ln_w[i]) nn_init_const(m->ln_w[i], 1.0f);
    }
}

void nn_mlp_free(nn_mlp *m) { nn_params_free(&m->params); }

static nn_tensor *activation(nn_ctx *ctx, nn_act act, nn_tensor *x) {
    switch (act) {
    case NN_ACT_GELU: return nn_gelu(ctx, x, false);
    case NN_ACT_SIGMOID: return nn_sigmoid(ctx, x);
    case NN_ACT_TANH: return nn_tanh(ctx, x);
    default: return nn_relu(ctx, x);
    }
}

nn_tensor *nn_mlp_forward(nn_mlp *m, nn_ctx *ctx, nn_tensor *x, nn_rng *dropout_rng) {
    const nn_mlp_config *c = &m->cfg;
    nn_tensor *h = x;
    if (c->input_dropout > 0.0f) h = nn_dropout(ctx, h, c->input_dropout, dropout_rng);
    for (int i = 0; i < c->n_linear; i++) {
        h = nn_linear(ctx, h, m->fc_w[i], m->fc_b[i]);
        if (i == c->n_linear - 1) break; /* logits */
        if (m->ln_w[i]) h = nn_layer_norm(ctx, h, m->ln_w[i], m->ln_b[i], NN_LAYER_NORM_EPS);
        h = activation(ctx, c->act, h);
        if (c->dropout > 0.0f) h = nn_dropout(ctx, h, c->dropout, dropout_rng);
    }
    return h;
}
