/* Reductions to a scalar. Sums are accumulated in double: a float running sum
 * over a million elements loses digits the gradient check would notice. */
#include "ops/ops.h"

static nn_tensor *reduce(nn_ctx *ctx, nn_op op, nn_tensor *a) {
    nn_check_live(ctx, a, nn_op_table[op].name);
    nn_tensor *y = nn_op_output(ctx, 0, NULL, &a, 1);
    double s = 0.0;
    for (size_t i = 0; i < a->size; i++) s += a->data[i];
    y->data[0] = (float)(op == NN_OP_MEAN ? s / (double)a->size : s);
    nn_record(ctx, op, y, &a, 1);
    return y;
}

/* y = sum_i a_i:  da_i += dy */
nn_tensor *nn_sum(nn_ctx *ctx, nn_tensor *a) { return reduce(ctx, NN_OP_SUM, a); }

void nn_sum_backward(nn_node *n) {
    float *da = n->in[0]->grad, g = n->out->grad[0];
    if (da)
        for (size_t i = 0; i < n->in[0]->size; i++) da[i] += g;
}

/* y = (1/n) sum_i a_i:  da_i += dy / n */
nn_tensor *nn_mean(nn_ctx *ctx, nn_tensor *a) { return reduce(ctx, NN_OP_MEAN, a); }

void nn_mean_backward(nn_node *n) {
    float *da = n->in[0]->grad, g = n->out->grad[0] / (float)n->in[0]->size;
    if (da)
        for (size_t i = 0; i < n->in[0]->size; i++) da[i] += g;
}
