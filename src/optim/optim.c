/* SGD (plain, momentum, Nesterov), Adam and AdamW, as in torch.optim. Each
 * update is one pass over the contiguous parameter buffer; the weight-decay
 * mask is applied per parameter tensor, so the loop runs per tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/optim.h"
#include "core/util.h"

static const char *const kind_names[] = {"sgd", "momentum", "nesterov", "adam", "adamw"};

int nn_optim_parse(const char *name, nn_optim_kind *kind) {
    for (int i = 0; i < (int)(sizeof kind_names / sizeof *kind_names); i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *kind = (nn_optim_kind)i;
            return 0;
        }
    return nn_error("unknown optimiser '%s' (one of: sgd, momentum, nesterov, adam, adamw)", name);
}

const char *nn_optim_name(nn_optim_kind kind) { return kind_names[kind]; }

nn_optim_config nn_optim_defaults(nn_optim_kind kind) {
    nn_optim_config c = {.kind = kind, .momentum = 0.9f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    if (kind == NN_OPT_ADAMW) c.weight_decay = 0.01f; /* torch.optim.AdamW's default */
    return c;
}

float nn_optim_default_lr(nn_optim_kind kind) {
    return kind == NN_OPT_ADAM || kind == NN_OPT_ADAMW ? 1e-3f : 0.05f;
}

void nn_optim_init(nn_optim *o, nn_params *params, const nn_optim_config *cfg) {
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->params = params;
    if (cfg->kind != NN_OPT_SGD) o->m = nn_xcalloc(params->count, sizeof(float));
    if (cfg->kind == NN_OPT_ADAM || cfg->kind == NN_OPT_ADAMW) o->v = nn_xcalloc(params->count, sizeof(float));
}

void nn_optim_free(nn_optim *o) {
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* Updates run on OpenMP threads for tensors big enough to pay for it. */
#define OPTIM_PARALLEL_MIN 65536

/* SGD family on one tensor's slice:
 *   g = grad + wd * w                      (L2, when decayed)
 *   buf = momentum * buf + g               (buf = g on the first step)
 *   d = g + momentum * buf  (nesterov) | buf (momentum) | g (plain)
 *   w -= lr * d
 * One loop per kind, so each is a straight vectorisable pass. */
static void sgd_slice(const nn_optim_config *c, bool first, float lr, float wd, float *restrict w,
                      const float *restrict grad, float *restrict buf, size_t n) {
    float mu = first ? 0.0f : c->momentum;
    switch (c->kind) {
    case NN_OPT_SGD:
#pragma omp parallel for simd if (parallel : n > OPTIM_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) w[i] -= lr * (grad[i] + wd * w[i]);
        break;
    case NN_OPT_MOMENTUM:
#pragma omp parallel for simd if (parallel : n > OPTIM_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) {
            buf[i] = mu * buf[i] + grad[i] + wd * w[i];
            w[i] -= lr * buf[i];
        }
        break;
    default: /* NN_OPT_NESTEROV */
#pragma omp parallel for simd if (parallel : n > OPTIM_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) {
            float g = grad[i] + wd * w[i];
            buf[i] = mu * buf[i] + g;
            w[i] -= lr * (g + c->momentum * buf[i]);
        }
        break;
    }
}

/* Adam / AdamW on one tensor's slice, with bias corrections bc1 = 1 - beta1^t
 * and bc2 = 1 - beta2^t:
 *   adamw: w *= 1 - lr * wd           adam: g = grad + wd * w
 *   m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2
 *   w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps) */
static void adam_slice(const nn_optim_config *c, float lr, float wd, float bc1, float bc2, float *restrict w,
                       const float *restrict grad, float *restrict m, float *restrict v, size_t n) {
    float b1 = c->beta1, b2 = c->beta2, step_size = lr / bc1, sqrt_bc2 = sqrtf(bc2), eps = c->eps;
    /* AdamW's decay multiplies the weight; Adam's adds to the gradient. */
    float shrink = c->kind == NN_OPT_ADAMW ? 1.0f - lr * wd : 1.0f;
    float l2 = c->kind == NN_OPT_ADAMW ? 0.0f : wd;
#pragma omp parallel for simd if (parallel : n > OPTIM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] + l2 * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        w[i] = w[i] * shrink - step_size * m[i] / (sqrtf(v[i]) / sqrt_bc2 + eps);
    }
}

void nn_optim_step(nn_optim *o, float lr) {
    const nn_optim_config *c = &o->cfg;
    nn_params *p = o->params;
    bool first = o->steps == 0;
    o->steps++;
    float bc1 = 1.0f - powf(c->beta1, (float)o->steps), bc2 = 1.0f - powf(c->beta2, (float)o->steps);
    size_t offset = 0;
    for (int t = 0; t < p->n; t++) {
        size_t n = p->tensors[t]->size;
        float wd = p->decay[t] ? c->weight_decay : 0.0f;
        float *w = p->data + offset;
        const float *g = p->grad + offset;
        if (c->kind == NN_OPT_ADAM || c->kind == NN_OPT_ADAMW)
            adam_slice(c, lr, wd, bc1, bc2, w, g, o->m + offset, o->v + offset, n);
        else
            sgd_slice(c, first, lr, wd, w, g, o->m ? o->m + offset : NULL, n);
        offset += n;
    }
}

float nn_clip_grad_norm(nn_params *p, float max_norm) {
    /* Eight running sums, lane k taking every eighth square, added at the end
     * in a fixed order: one vector of doubles where a single sum waited on
     * its own last addition (it was 1% of a GPT step on one thread, and all
     * of it serial on two). */
    double part[8] = {0};
    const float *g = p->grad;
    size_t i = 0;
    for (; i + 8 <= p->count; i += 8)
        for (int k = 0; k < 8; k++) part[k] += (double)g[i + k] * g[i + k];
    double sq = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
    for (; i < p->count; i++) sq += (double)g[i] * g[i];
    float norm = (float)sqrt(sq);
    /* torch: clip_coef = max_norm / (norm + 1e-6), applied when below 1 */
    float coef = max_norm / (norm + 1e-6f);
    if (coef < 1.0f)
        for (size_t k = 0; k < p->count; k++) p->grad[k] *= coef;
    return norm;
}
