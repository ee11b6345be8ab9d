/* Softmax and log-softmax over the last dimension, both shifted by the row
 * maximum so that exp never overflows. */
#include <math.h>

#include "ops/ops.h"

static nn_tensor *rowwise(nn_ctx *ctx, nn_op op, nn_tensor *a) {
    const char *name = nn_op_table[op].name;
    nn_check_live(ctx, a, name);
    NN_CHECK(a->ndim >= 1, "%s: needs at least one dimension", name);
    nn_tensor *y = nn_op_output(ctx, a->ndim, a->shape, &a, 1);
    int N = a->shape[a->ndim - 1];
    size_t rows = a->size / (size_t)N;
#pragma omp parallel for if (a->size > NN_PARALLEL_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *x = a->data + r * N;
        float *o = y->data + r * N;
        float m = x[0];
        for (int j = 1; j < N; j++) m = x[j] > m ? x[j] : m;
        double s = 0.0;
        for (int j = 0; j < N; j++) s += exp((double)x[j] - m);
        if (op == NN_OP_SOFTMAX) {
            for (int j = 0; j < N; j++) o[j] = (float)(exp((double)x[j] - m) / s);
        } else {
            /* (x - m) - log s, not x - (m + log s): the sum m + log s would
             * round away the digits of the small log-probabilities. */
            float log_s = (float)log(s);
            for (int j = 0; j < N; j++) o[j] = (x[j] - m) - log_s;
        }
    }
    nn_record(ctx, op, y, &a, 1);
    return y;
}

/* y = e^x / sum e^x:  dx = y * (dy - sum_j dy_j y_j) */
nn_tensor *nn_softmax(nn_ctx *ctx, nn_tensor *a) { return rowwise(ctx, NN_OP_SOFTMAX, a); }

void nn_softmax_backward(nn_node *n) {
    nn_tensor *a = n->in[0], *y = n->out;
    if (!a->grad) return;
    int N = a->shape[a->ndim - 1];
    size_t rows = a->size / (size_t)N;
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y->data + r * N, *dy = y->grad + r * N;
        float *dx = a->grad + r * N;
        double dot = 0.0;
        for (int j = 0; j < N; j++) dot += (double)dy[j] * yr[j];
        for (int j = 0; j < N; j++) dx[j] += yr[j] * (dy[j] - (float)dot);
    }
}

/* y = x - log sum e^x:  dx = dy - softmax(x) * sum_j dy_j, with softmax = e^y */
nn_tensor *nn_log_softmax(nn_ctx *ctx, nn_tensor *a) { return rowwise(ctx, NN_OP_LOG_SOFTMAX, a); }

void nn_log_softmax_backward(nn_node *n) {
    nn_tensor *a = n->in[0], *y = n->out;
    if (!a->grad) return;
    int N = a->shape[a->ndim - 1];
    size_t rows = a->size / (size_t)N;
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y->data + r * N, *dy = y->grad + r * N;
        float *dx = a->grad + r * N;
        double s = 0.0;
        for (int j = 0; j < N; j++) s += dy[j];
        for (int j = 0; j < N; j++) dx[j] += dy[j] - expf(yr[j]) * (float)s;
    }
}
