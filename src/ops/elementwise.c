/* Elementwise arithmetic: add, sub, mul, bias broadcast, scale. */
#include <string.h>

#include "ops/ops.h"

void nn_check_same_shape(const char *op, const nn_tensor *a, const nn_tensor *b) {
    char sa[64], sb[64];
    NN_CHECK(nn_same_shape(a, b), "%s: shapes %s and %s differ", op, nn_shape_str(a, sa, sizeof sa),
             nn_shape_str(b, sb, sizeof sb));
}

static nn_tensor *binary(nn_ctx *ctx, nn_op op, nn_tensor *a, nn_tensor *b) {
    const char *name = nn_op_table[op].name;
    nn_check_live(ctx, a, name);
    nn_check_live(ctx, b, name);
    nn_check_same_shape(name, a, b);
    nn_tensor *in[] = {a, b};
    nn_tensor *c = nn_op_output(ctx, a->ndim, a->shape, in, 2);
    const float *x = a->data, *y = b->data;
    float *z = c->data;
    size_t n = a->size;
    switch (op) {
    case NN_OP_ADD:
        for (size_t i = 0; i < n; i++) z[i] = x[i] + y[i];
        break;
    case NN_OP_SUB:
        for (size_t i = 0; i < n; i++) z[i] = x[i] - y[i];
        break;
    default: /* NN_OP_MUL */
        for (size_t i = 0; i < n; i++) z[i] = x[i] * y[i];
        break;
    }
    nn_record(ctx, op, c, in, 2);
    return c;
}

/* c = a + b:  da += dc, db += dc */
nn_tensor *nn_add(nn_ctx *ctx, nn_tensor *a, nn_tensor *b) { return binary(ctx, NN_OP_ADD, a, b); }

void nn_add_backward(nn_node *n) {
    const float *dc = n->out->grad;
    for (int k = 0; k < 2; k++) {
        float *d = n->in[k]->grad;
        if (!d) continue;
        if (nn_node_fresh(n, k)) memcpy(d, dc, n->out->size * sizeof(float));
        else
            for (size_t i = 0; i < n->out->size; i++) d[i] += dc[i];
    }
}

/* c = a - b:  da += dc, db -= dc */
nn_tensor *nn_sub(nn_ctx *ctx, nn_tensor *a, nn_tensor *b) { return binary(ctx, NN_OP_SUB, a, b); }

void nn_sub_backward(nn_node *n) {
    const float *dc = n->out->grad;
    float *da = n->in[0]->grad, *db = n->in[1]->grad;
    if (da)
        for (size_t i = 0; i < n->out->size; i++) da[i] += dc[i];
    if (db)
        for (size_t i = 0; i < n->out->size; i++) db[i] -= dc[i];
}

/* c = a * b:  da += dc * b, db += dc * a */
nn_tensor *nn_mul(nn_ctx *ctx, nn_tensor *a, nn_tensor *b) { return binary(ctx, NN_OP_MUL, a, b); }

void nn_mul_backward(nn_node *n) {
    const float *dc = n->out->grad, *a = n->in[0]->data, *b = n->in[1]->data;
    float *da = n->in[0]->grad, *db = n->in[1]->grad;
    if (da)
        for (size_t i = 0; i < n->out->size; i++) da[i] += dc[i] * b[i];
    if (db)
        for (size_t i = 0; i < n->out->size; i++) db[i] += dc[i] * a[i];
}

/* y[r, j] = x[r, j] + b[j]:  dx += dy, db[j] += sum over rows of dy[r, j] */
nn_tensor *nn_add_bias(nn_ctx *ctx, nn_tensor *x, nn_tensor *b) {
    char sx[64], sb[64];
    nn_check_live(ctx, x, "add_bias");
    nn_check_live(ctx, b, "add_bias");
    NN_CHECK(x->ndim >= 1 && b->ndim == 1 && b->shape[0] == x->shape[x->ndim - 1],
             "add_bias: bias %s does not match the last dimension of %s", nn_shape_str(b, sb, sizeof sb),
             nn_shape_str(x, sx, sizeof sx));
    nn_tensor *in[] = {x, b};
    nn_tensor *y = nn_op_output(ctx, x->ndim, x->shape, in, 2);
    size_t N = (size_t)b->shape[0], rows = x->size / N;
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < N; j++) y->data[r * N + j] = x->data[r * N + j] + b->data[j];
    nn_record(ctx, NN_OP_ADD_BIAS, y, in, 2);
    return y;
}

void nn_add_bias_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *b = n->in[1];
    const float *dy = n->out->grad;
    size_t N = (size_t)b->shape[0], rows = x->size / N;
    if (x->grad)
        for (size_t i = 0; i < x->size; i++) x->grad[i] += dy[i];
    if (b->grad)
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < N; j++) b->grad[j] += dy[r * N + j];
}

/* y = s * a:  da += s * dy */
nn_tensor *nn_scale(nn_ctx *ctx, nn_tensor *a, float s) {
    nn_check_live(ctx, a, "scale");
    nn_tensor *y = nn_op_output(ctx, a->ndim, a->shape, &a, 1);
    for (size_t i = 0; i < a->size; i++) y->data[i] = s * a->data[i];
    nn_node *node = nn_record(ctx, NN_OP_SCALE, y, &a, 1);
    if (node) node->attr = s;
    return y;
}

void nn_scale_backward(nn_node *n) {
    float *da = n->in[0]->grad;
    if (da)
        for (size_t i = 0; i < n->out->size; i++) da[i] += n->attr * n->out->grad[i];
}
