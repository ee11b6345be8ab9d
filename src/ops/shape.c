/* Reshape and flatten: views that share the input's data and gradient
 * buffers, so no copy is made either way and the backward has nothing to do
 * (gradients written to the view land in the input's buffer). They are still
 * recorded so that the graph shows them. */
#include <string.h>

#include "ops/ops.h"

nn_tensor *nn_reshape(nn_ctx *ctx, nn_tensor *a, int ndim, const int *shape) {
    char sa[64];
    nn_check_live(ctx, a, "reshape");
    NN_CHECK(ndim >= 0 && ndim <= NN_MAX_DIMS, "reshape: %d dimensions (at most %d)", ndim, NN_MAX_DIMS);
    int dims[NN_MAX_DIMS];
    size_t known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1) {
            NN_CHECK(infer < 0, "reshape: more than one dimension is -1");
            infer = i;
        } else {
            NN_CHECK(shape[i] > 0, "reshape: dimension %d is %d", i, shape[i]);
            known *= (size_t)shape[i];
        }
    }
    if (infer >= 0) {
        NN_CHECK(a->size % known == 0, "reshape: cannot infer a dimension for %s", nn_shape_str(a, sa, sizeof sa));
        dims[infer] = (int)(a->size / known);
        known *= (size_t)dims[infer];
    }
    NN_CHECK(known == a->size, "reshape: %s has %zu elements, the new shape has %zu",
             nn_shape_str(a, sa, sizeof sa), a->size, known);
    nn_tensor *y = nn_arena_alloc(ctx, sizeof *y);
    *y = *a;
    y->ndim = ndim;
    memset(y->shape, 0, sizeof y->shape);
    memcpy(y->shape, dims, (size_t)ndim * sizeof(int));
    y->role = NN_ACTIVATION;
    y->name = NULL;
    y->node = -1;
    y->step = ctx->step;
    if (!ctx->grad_enabled) y->grad = NULL;
    nn_record(ctx, NN_OP_RESHAPE, y, &a, 1);
    return y;
}

void nn_reshape_backward(nn_node *n) { (void)n; /* the view shares its input's gradient */ }

nn_tensor *nn_flatten(nn_ctx *ctx, nn_tensor *a) {
    NN_CHECK(a->ndim >= 1, "flatten: needs a batch dimension");
    return nn_reshape(ctx, a, 2, (int[]){a->shape[0], -1});
}
