/* Tensor creation and shape helpers. */
#include <stdio.h>
#include <string.h>

#include "core/graph.h"

const char *nn_shape_str(const nn_tensor *t, char *buf, size_t cap) {
    size_t pos = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && pos < cap; i++)
        pos += (size_t)snprintf(buf + pos, cap - pos, i ? ", %d" : "%d", t->shape[i]);
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
    return buf;
}

bool nn_same_shape(const nn_tensor *a, const nn_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* Fills shape fields and returns the element count, checking the dimensions. */
static size_t set_shape(nn_tensor *t, int ndim, const int *shape) {
    NN_CHECK(ndim >= 0 && ndim <= NN_MAX_DIMS, "tensor: %d dimensions (at most %d)", ndim, NN_MAX_DIMS);
    size_t size = 1;
    t->ndim = ndim;
    for (int i = 0; i < NN_MAX_DIMS; i++) t->shape[i] = 0;
    for (int i = 0; i < ndim; i++) {
        NN_CHECK(shape[i] > 0, "tensor: dimension %d is %d (must be positive)", i, shape[i]);
        t->shape[i] = shape[i];
        size *= (size_t)shape[i];
    }
    t->size = size;
    return size;
}

static nn_tensor *arena_tensor(nn_ctx *ctx, int ndim, const int *shape, nn_role role, const char *name) {
    nn_tensor *t = nn_arena_alloc(ctx, sizeof *t);
    memset(t, 0, sizeof *t);
    size_t size = set_shape(t, ndim, shape);
    t->data = nn_arena_alloc(ctx, size * sizeof(float));
    t->role = role;
    t->name = name;
    t->node = -1;
    t->step = ctx->step;
    return t;
}

nn_tensor *nn_input(nn_ctx *ctx, const char *name, int ndim, const int *shape) {
    return arena_tensor(ctx, ndim, shape, NN_INPUT, name);
}

void nn_check_live(const nn_ctx *ctx, const nn_tensor *t, const char *op) {
    NN_CHECK(t != NULL, "%s: input tensor is NULL", op);
    NN_CHECK(t->role == NN_PARAM || t->step == ctx->step,
             "%s: tensor '%s' belongs to an earlier step (it was freed by nn_ctx_reset)", op,
             t->name ? t->name : "?");
}

void nn_zero_floats(float *p, size_t n) {
    enum { BLOCK = 16384 }; /* floats per task: 64 KiB */
    if (n < 4 * (size_t)BLOCK) {
        memset(p, 0, n * sizeof(float));
        return;
    }
    long blocks = (long)((n + BLOCK - 1) / BLOCK);
#pragma omp parallel for schedule(static)
    for (long k = 0; k < blocks; k++) {
        size_t at = (size_t)k * BLOCK, len = n - at < BLOCK ? n - at : BLOCK;
        memset(p + at, 0, len * sizeof(float));
    }
}

nn_tensor *nn_op_output(nn_ctx *ctx, int ndim, const int *shape, nn_tensor *const *inputs, int n_in) {
    nn_tensor *t = arena_tensor(ctx, ndim, shape, NN_ACTIVATION, NULL);
    bool needs_grad = false;
    for (int i = 0; i < n_in; i++)
        if (inputs[i] && inputs[i]->grad) needs_grad = true;
    /* Zeroed by nn_backward just before its first use (tape.c). */
    if (ctx->grad_enabled && needs_grad) t->grad = nn_arena_alloc(ctx, t->size * sizeof(float));
    return t;
}
