/* Ops over the steps of sequences [B, T, F] that the Transformer's layers
 * need besides attention (ops/attention.c).
 *
 * Learned positions (GPT's wpe), a table P [T_max, F] whose rows first ..
 * first + T - 1 are added to every sequence (first > 0: the T steps continue
 * a sequence whose first steps were run before, as generation feeds them):
 *   y[b, t, :] = x[b, t, :] + P[first + t, :]
 *   dx = dy,  dP[first + t, :] += sum over b of dy[b, t, :]
 *
 * The mean over each sequence's real steps (an encoder's pooled output):
 *   y[b, :] = (1 / len_b) sum_{t < len_b} x[b, t, :]            [B, T, F] -> [B, F]
 *   dx[b, t, :] += dy[b, :] / len_b for t < len_b (padding steps get nothing) */
#include <string.h>

#include "ops/ops.h"

nn_tensor *nn_add_positions(nn_ctx *ctx, nn_tensor *x, nn_tensor *pos) { return nn_add_positions_at(ctx, x, pos, 0); }

nn_tensor *nn_add_positions_at(nn_ctx *ctx, nn_tensor *x, nn_tensor *pos, int first) {
    char sx[64], sp[64];
    nn_check_live(ctx, x, "add_positions");
    nn_check_live(ctx, pos, "add_positions");
    NN_CHECK(x->ndim == 3 && pos->ndim == 2 && pos->shape[1] == x->shape[2],
             "add_positions: input %s and positions %s must be [B, T, F] and [T_max, F]",
             nn_shape_str(x, sx, sizeof sx), nn_shape_str(pos, sp, sizeof sp));
    int B = x->shape[0], T = x->shape[1], F = x->shape[2];
    NN_CHECK(first >= 0 && first + T <= pos->shape[0], "add_positions: steps %d to %d, but the positions %s go to "
             "%d (the model's context)", first, first + T - 1, nn_shape_str(pos, sp, sizeof sp), pos->shape[0] - 1);
    nn_tensor *in[] = {x, pos};
    nn_tensor *y = nn_op_output(ctx, 3, x->shape, in, 2);
    size_t plane = (size_t)T * F;
    const float *p = pos->data + (size_t)first * F;
    if (x->size >= NN_PARALLEL_MIN) { /* no OpenMP region for a token's row: even if(false) costs a futex call */
#pragma omp parallel for
        for (int b = 0; b < B; b++)
            for (size_t k = 0; k < plane; k++) y->data[b * plane + k] = x->data[b * plane + k] + p[k];
    } else {
        for (int b = 0; b < B; b++)
            for (size_t k = 0; k < plane; k++) y->data[b * plane + k] = x->data[b * plane + k] + p[k];
    }
    nn_node *node = nn_record(ctx, NN_OP_ADD_POSITIONS, y, in, 2);
    if (node) {
        int *saved = nn_arena_alloc(ctx, sizeof *saved);
        *saved = first;
        node->saved = saved;
    }
    return y;
}

void nn_add_positions_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *pos = n->in[1], *y = n->out;
    int B = x->shape[0];
    size_t plane = (size_t)x->shape[1] * x->shape[2];
    float *dp = pos->grad ? pos->grad + (size_t)*(const int *)n->saved * x->shape[2] : NULL;
    if (x->grad) {
#pragma omp parallel for if (x->size >= NN_PARALLEL_MIN)
        for (size_t k = 0; k < x->size; k++) x->grad[k] += y->grad[k];
    }
    if (dp) {
        /* Blocks of the table in parallel, each summing the batch in order. */
#pragma omp parallel for if (x->size >= NN_PARALLEL_MIN)
        for (size_t k0 = 0; k0 < plane; k0 += 256) {
            size_t k1 = k0 + 256 < plane ? k0 + 256 : plane;
            for (int b = 0; b < B; b++)
                for (size_t k = k0; k < k1; k++) dp[k] += y->grad[b * plane + k];
        }
    }
}

nn_tensor *nn_mean_steps(nn_ctx *ctx, nn_tensor *x, const int *lengths) {
    char sx[64];
    nn_check_live(ctx, x, "mean_steps");
    NN_CHECK(x->ndim == 3, "mean_steps: input %s must be [B, T, F]", nn_shape_str(x, sx, sizeof sx));
    int B = x->shape[0], T = x->shape[1], F = x->shape[2];
    int *len = nn_arena_alloc(ctx, (size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) {
        NN_CHECK(!lengths || (lengths[b] >= 1 && lengths[b] <= T),
                 "mean_steps: lengths[%d] = %d is outside [1, %d] for input %s", b, lengths ? lengths[b] : 0, T,
                 nn_shape_str(x, sx, sizeof sx));
        len[b] = lengths ? lengths[b] : T;
    }
    nn_tensor *y = nn_op_output(ctx, 2, (int[]){B, F}, &x, 1);
#pragma omp parallel for if (x->size >= NN_PARALLEL_MIN)
    for (int b = 0; b < B; b++) {
        float *yb = y->data + (size_t)b * F;
        memset(yb, 0, (size_t)F * sizeof(float));
        for (int t = 0; t < len[b]; t++) {
            const float *xt = x->data + ((size_t)b * T + t) * F;
            for (int j = 0; j < F; j++) yb[j] += xt[j];
        }
        float inv = 1.0f / (float)len[b];
        for (int j = 0; j < F; j++) yb[j] *= inv;
    }
    nn_node *node = nn_record(ctx, NN_OP_MEAN_STEPS, y, &x, 1);
    if (node) node->saved = len;
    return y;
}

void nn_mean_steps_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *y = n->out;
    if (!x->grad) return;
    const int *len = n->saved;
    int B = x->shape[0], T = x->shape[1], F = x->shape[2];
#pragma omp parallel for if (x->size >= NN_PARALLEL_MIN)
    for (int b = 0; b < B; b++) {
        float inv = 1.0f / (float)len[b];
        const float *dy = y->grad + (size_t)b * F;
        for (int t = 0; t < len[b]; t++) {
            float *dx = x->grad + ((size_t)b * T + t) * F;
            for (int j = 0; j < F; j++) dx[j] += dy[j] * inv;
        }
    }
}
