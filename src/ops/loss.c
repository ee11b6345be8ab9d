/* Losses: cross-entropy fused with log-softmax, and mean squared error. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

typedef struct ce_saved {
    float *probs; /* softmax of the logits, [B, C]; rows with an ignored label unset */
    int *labels;  /* [B] */
    int counted;  /* rows whose label is not ignored */
} ce_saved;

/* For each row b with label t and smoothing s over C classes:
 *   log p = x - max - log sum e^(x - max)              (stable for |x| ~ 1e4)
 *   loss_b = -(1 - s) log p[t] - (s / C) sum_c log p[c]
 *   loss = mean of loss_b over the N rows whose t >= 0 (0 when N = 0)
 *   dx[b, c] = (p[b, c] - target[b, c]) / N, target = (1 - s) onehot(t) + s / C;
 *   dx[b, :] = 0 for a row with t < 0 (PyTorch's ignore_index)
 * The forward saves the probabilities p, so the backward is one pass. */
nn_tensor *nn_cross_entropy(nn_ctx *ctx, nn_tensor *logits, const int *labels, float smoothing) {
    char sl[64];
    nn_check_live(ctx, logits, "cross_entropy");
    NN_CHECK(logits->ndim == 2, "cross_entropy: logits must be [batch, classes], got %s",
             nn_shape_str(logits, sl, sizeof sl));
    NN_CHECK(smoothing >= 0.0f && smoothing < 1.0f, "cross_entropy: label smoothing %g not in [0, 1)",
             smoothing);
    int B = logits->shape[0], C = logits->shape[1];
    int counted = 0;
    for (int b = 0; b < B; b++) {
        NN_CHECK(labels[b] < C, "cross_entropy: label %d of row %d not in [0, %d) (nor negative: ignored)",
                 labels[b], b, C);
        counted += labels[b] >= 0;
    }
    nn_tensor *loss = nn_op_output(ctx, 0, NULL, &logits, 1);
    bool keep = ctx->grad_enabled && logits->grad;
    float *probs = keep ? nn_arena_alloc(ctx, logits->size * sizeof(float)) : NULL;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        if (labels[b] < 0) continue;
        const float *x = logits->data + (size_t)b * C;
        float m = x[0];
        for (int c = 1; c < C; c++) m = x[c] > m ? x[c] : m;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += exp((double)x[c] - m);
        double lse = m + log(s), sum_logp = 0.0;
        for (int c = 0; c < C; c++) {
            double logp = x[c] - lse;
            sum_logp += logp;
            if (probs) probs[(size_t)b * C + c] = (float)exp(logp);
        }
        total += -(1.0 - smoothing) * (x[labels[b]] - lse) - smoothing / C * sum_logp;
    }
    loss->data[0] = counted ? (float)(total / counted) : 0.0f;
    nn_node *node = nn_record(ctx, NN_OP_CROSS_ENTROPY, loss, &logits, 1);
    if (node) {
        /* The backward needs the probabilities and a copy of the labels
         * (the caller's buffer may change before backward runs). */
        ce_saved *saved = nn_arena_alloc(ctx, sizeof *saved);
        saved->probs = probs;
        saved->labels = nn_arena_alloc(ctx, (size_t)B * sizeof(int));
        memcpy(saved->labels, labels, (size_t)B * sizeof(int));
        saved->counted = counted;
        node->saved = saved;
        node->attr = smoothing;
    }
    return loss;
}

void nn_cross_entropy_backward(nn_node *n) {
    nn_tensor *x = n->in[0];
    if (!x->grad) return;
    const ce_saved *saved = n->saved;
    const float *probs = saved->probs;
    const int *labels = saved->labels;
    int B = x->shape[0], C = x->shape[1];
    if (saved->counted == 0) return;
    float g = n->out->grad[0] / (float)saved->counted, s = n->attr, uniform = s / (float)C;
    for (int b = 0; b < B; b++) {
        if (labels[b] < 0) continue;
        const float *p = probs + (size_t)b * C;
        float *dx = x->grad + (size_t)b * C;
        for (int c = 0; c < C; c++) {
            float target = uniform + (c == labels[b] ? 1.0f - s : 0.0f);
            dx[c] += g * (p[c] - target);
        }
    }
}

/* loss = (1/n) sum (pred - target)^2:  dpred += 2 (pred - target) / n * dloss, dtarget -= the same */
nn_tensor *nn_mse(nn_ctx *ctx, nn_tensor *pred, nn_tensor *target) {
    nn_check_live(ctx, pred, "mse");
    nn_check_live(ctx, target, "mse");
    nn_check_same_shape("mse", pred, target);
    nn_tensor *in[] = {pred, target};
    nn_tensor *loss = nn_op_output(ctx, 0, NULL, in, 2);
    double s = 0.0;
    for (size_t i = 0; i < pred->size; i++) {
        double d = (double)pred->data[i] - target->data[i];
        s += d * d;
    }
    loss->data[0] = (float)(s / (double)pred->size);
    nn_record(ctx, NN_OP_MSE, loss, in, 2);
    return loss;
}

void nn_mse_backward(nn_node *n) {
    nn_tensor *p = n->in[0], *t = n->in[1];
    float g = 2.0f * n->out->grad[0] / (float)p->size;
    for (size_t i = 0; i < p->size; i++) {
        float d = g * (p->data[i] - t->data[i]);
        if (p->grad) p->grad[i] += d;
        if (t->grad) t->grad[i] -= d;
    }
}
