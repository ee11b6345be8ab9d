/* Elementwise activations. Each backward reads the op's saved input (or,
 * where the derivative is exactly a function of the output, the output). */
#include <math.h>

#include "ops/fastmath.h"
#include "ops/ops.h"

static nn_tensor *unary_out(nn_ctx *ctx, nn_tensor *a, const char *name) {
    nn_check_live(ctx, a, name);
    return nn_op_output(ctx, a->ndim, a->shape, &a, 1);
}

/* y = max(x, 0):  dx += dy * [x > 0] */
nn_tensor *nn_relu(nn_ctx *ctx, nn_tensor *a) {
    nn_tensor *y = unary_out(ctx, a, "relu");
    const float *x = a->data;
    float *o = y->data;
    size_t n = a->size;
#pragma omp parallel for simd if (parallel : n > NN_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) o[i] = x[i] > 0.0f ? x[i] : 0.0f;
    nn_record(ctx, NN_OP_RELU, y, &a, 1);
    return y;
}

void nn_relu_backward(nn_node *n) {
    const float *x = n->in[0]->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    size_t len = n->out->size;
    if (!dx) return;
#pragma omp parallel for simd if (parallel : len > NN_PARALLEL_MIN)
    for (size_t i = 0; i < len; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}

/* y = x if x > 0 else slope * x:  dx += dy * (x > 0 ? 1 : slope) */
nn_tensor *nn_leaky_relu(nn_ctx *ctx, nn_tensor *a, float slope) {
    nn_tensor *y = unary_out(ctx, a, "leaky_relu");
    for (size_t i = 0; i < a->size; i++) y->data[i] = a->data[i] > 0.0f ? a->data[i] : slope * a->data[i];
    nn_node *node = nn_record(ctx, NN_OP_LEAKY_RELU, y, &a, 1);
    if (node) node->attr = slope;
    return y;
}

void nn_leaky_relu_backward(nn_node *n) {
    const float *x = n->in[0]->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    if (!dx) return;
    for (size_t i = 0; i < n->out->size; i++) dx[i] += x[i] > 0.0f ? dy[i] : n->attr * dy[i];
}

/* Written so that exp never overflows: for x < 0 use e^x / (1 + e^x). */
static inline float sigmoidf(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

/* y = 1 / (1 + e^-x):  dx += dy * y (1 - y) */
nn_tensor *nn_sigmoid(nn_ctx *ctx, nn_tensor *a) {
    nn_tensor *y = unary_out(ctx, a, "sigmoid");
    size_t n = a->size;
#pragma omp parallel for if (n > NN_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y->data[i] = sigmoidf(a->data[i]);
    nn_record(ctx, NN_OP_SIGMOID, y, &a, 1);
    return y;
}

void nn_sigmoid_backward(nn_node *n) {
    const float *y = n->out->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    if (!dx) return;
    for (size_t i = 0; i < n->out->size; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

/* y = tanh(x):  dx += dy * (1 - y^2) */
nn_tensor *nn_tanh(nn_ctx *ctx, nn_tensor *a) {
    nn_tensor *y = unary_out(ctx, a, "tanh");
    size_t n = a->size;
#pragma omp parallel for if (n > NN_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y->data[i] = tanhf(a->data[i]);
    nn_record(ctx, NN_OP_TANH, y, &a, 1);
    return y;
}

void nn_tanh_backward(nn_node *n) {
    const float *y = n->out->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    if (!dx) return;
    for (size_t i = 0; i < n->out->size; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

/* GELU (Hendrycks & Gimpel).
 * exact:  y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2
 *         dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
 * tanh:   y = x (1 + tanh u) / 2, u = sqrt(2/pi) (x + 0.044715 x^3)
 *         dy/dx = (1 + tanh u) / 2 + x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2 */
#define GELU_C 0.044715f
#define SQRT_2_OVER_PI 0.7978845608028654f

nn_tensor *nn_gelu(nn_ctx *ctx, nn_tensor *a, bool tanh_approx) {
    nn_tensor *y = unary_out(ctx, a, "gelu");
    const float *x = a->data;
    float *o = y->data;
    size_t n = a->size;
    if (tanh_approx) {
#pragma omp parallel for if (n > NN_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) {
            float u = SQRT_2_OVER_PI * (x[i] + GELU_C * x[i] * x[i] * x[i]);
            o[i] = 0.5f * x[i] * (1.0f + tanhf(u));
        }
    } else {
#pragma omp parallel for simd if (parallel : n > NN_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) o[i] = nn_gelu_from_erf(x[i], nn_erff(x[i] * NN_INV_SQRT_2));
    }
    nn_node *node = nn_record(ctx, NN_OP_GELU, y, &a, 1);
    if (node) node->flag = tanh_approx;
    return y;
}

void nn_gelu_backward(nn_node *n) {
    const float *x = n->in[0]->data, *dy = n->out->grad;
    float *dx = n->in[0]->grad;
    size_t len = n->out->size;
    if (!dx) return;
    bool store = nn_node_fresh(n, 0); /* dx is unwritten: store into it */
    if (n->flag) {
#pragma omp parallel for if (len > NN_PARALLEL_MIN)
        for (size_t i = 0; i < len; i++) {
            float x2 = x[i] * x[i];
            float t = tanhf(SQRT_2_OVER_PI * (x[i] + GELU_C * x2 * x[i]));
            float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * x2);
            float g = dy[i] * (0.5f * (1.0f + t) + 0.5f * x[i] * (1.0f - t * t) * du);
            dx[i] = store ? g : dx[i] + g;
        }
    } else if (store) {
#pragma omp parallel for simd if (parallel : len > NN_PARALLEL_MIN)
        for (size_t i = 0; i < len; i++) dx[i] = dy[i] * nn_gelu_grad(x[i]);
    } else {
#pragma omp parallel for simd if (parallel : len > NN_PARALLEL_MIN)
        for (size_t i = 0; i < len; i++) dx[i] += dy[i] * nn_gelu_grad(x[i]);
    }
}
