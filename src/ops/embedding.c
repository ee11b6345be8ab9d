/* Embedding lookup, as torch.nn.functional.embedding: row ids[i] of the
 * table is the i-th output vector.
 *   y[b,t,:] = W[ids[b*T + t], :]          W [V,D] -> y [B,T,D]
 *   dW[v,:] += sum over i with ids[i] == v of dy[i,:]
 * Repeated ids add up. The backward splits the table's columns between
 * threads and walks the positions in order inside each block of columns,
 * so no two threads touch one float and the sums do not depend on the
 * thread count. */
#include <string.h>

#include "ops/ops.h"

/* Columns per task of the backward. */
#define EMB_COLS 32

nn_tensor *nn_embedding(nn_ctx *ctx, nn_tensor *weight, const int *ids, int B, int T) {
    char sw[64];
    nn_check_live(ctx, weight, "embedding");
    NN_CHECK(weight->ndim == 2, "embedding: weight %s must be [V, D]", nn_shape_str(weight, sw, sizeof sw));
    NN_CHECK(B > 0 && T > 0, "embedding: B = %d and T = %d must be positive", B, T);
    NN_CHECK(ids != NULL, "embedding: ids is NULL");
    int V = weight->shape[0], D = weight->shape[1];
    size_t n = (size_t)B * T;
    for (size_t i = 0; i < n; i++)
        NN_CHECK(ids[i] >= 0 && ids[i] < V, "embedding: ids[%zu] = %d is outside the table's %d rows", i, ids[i],
                 V);
    nn_tensor *y = nn_op_output(ctx, 3, (int[]){B, T, D}, &weight, 1);
    /* no OpenMP region at all for a few rows (generation's one): even
     * if (false) costs one a system call */
    if (n * (size_t)D >= NN_PARALLEL_MIN) {
#pragma omp parallel for
        for (size_t i = 0; i < n; i++)
            memcpy(y->data + i * D, weight->data + (size_t)ids[i] * D, (size_t)D * sizeof(float));
    } else {
        for (size_t i = 0; i < n; i++)
            memcpy(y->data + i * D, weight->data + (size_t)ids[i] * D, (size_t)D * sizeof(float));
    }
    nn_node *node = nn_record(ctx, NN_OP_EMBEDDING, y, &weight, 1);
    if (node) { /* the caller's ids may change before the backward */
        int *saved = nn_arena_alloc(ctx, n * sizeof(int));
        memcpy(saved, ids, n * sizeof(int));
        node->saved = saved;
    }
    return y;
}

void nn_embedding_backward(nn_node *n) {
    nn_tensor *w = n->in[0], *y = n->out;
    if (!w->grad) return;
    const int *ids = n->saved;
    int D = w->shape[1];
    size_t rows = (size_t)y->shape[0] * y->shape[1];
#pragma omp parallel for if (rows * (size_t)D >= NN_PARALLEL_MIN)
    for (int j0 = 0; j0 < D; j0 += EMB_COLS) {
        int j1 = j0 + EMB_COLS < D ? j0 + EMB_COLS : D;
        for (size_t i = 0; i < rows; i++) {
            const float *dy = y->grad + i * D;
            float *dw = w->grad + (size_t)ids[i] * D;
            for (int j = j0; j < j1; j++) dw[j] += dy[j];
        }
    }
}
