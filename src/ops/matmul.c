/* Matrix products through OpenBLAS's cblas_sgemm. The backward passes are
 * GEMMs too, with beta = 1 so they accumulate into existing gradients. In
 * bf16 precision (nn/precision.h) the linear layer's three products go to
 * the bf16 GEMM instead (ops/gemm_bf16.h). */
#include <cblas.h>
#include <string.h>

#include "nn/precision.h"
#include "ops/gemm_bf16.h"
#include "ops/ops.h"

/* C[M,N] = A[M,K] B[K,N]
 * dA += dC B^T      [M,N] x [N,K]
 * dB += A^T dC      [K,M] x [M,N] */
nn_tensor *nn_matmul(nn_ctx *ctx, nn_tensor *a, nn_tensor *b) {
    char sa[64], sb[64];
    nn_check_live(ctx, a, "matmul");
    nn_check_live(ctx, b, "matmul");
    NN_CHECK(a->ndim == 2 && b->ndim == 2 && a->shape[1] == b->shape[0],
             "matmul: shapes %s and %s do not chain ([M,K] x [K,N])", nn_shape_str(a, sa, sizeof sa),
             nn_shape_str(b, sb, sizeof sb));
    int M = a->shape[0], K = a->shape[1], N = b->shape[1];
    nn_tensor *in[] = {a, b};
    nn_tensor *c = nn_op_output(ctx, 2, (int[]){M, N}, in, 2);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a->data, K, b->data, N,
                0.0f, c->data, N);
    nn_record(ctx, NN_OP_MATMUL, c, in, 2);
    return c;
}

void nn_matmul_backward(nn_node *n) {
    nn_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
    int M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (a->grad)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, N, 1.0f, c->grad, N, b->data, N,
                    1.0f, a->grad, K);
    if (b->grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, M, 1.0f, a->data, K, c->grad, N,
                    1.0f, b->grad, N);
}

/* y[B,out] = x[B,in] W^T + b, with W stored [out,in] as in PyTorch.
 * dx += dy W        [B,out] x [out,in]
 * dW += dy^T x      [out,B] x [B,in]
 * db += sum over the batch of dy */
nn_tensor *nn_linear(nn_ctx *ctx, nn_tensor *x, nn_tensor *w, nn_tensor *b) {
    char sx[64], sw[64], sb[64];
    nn_check_live(ctx, x, "linear");
    nn_check_live(ctx, w, "linear");
    NN_CHECK(x->ndim == 2 && w->ndim == 2 && x->shape[1] == w->shape[1],
             "linear: input %s does not match weight %s (expected input [B, %d])", nn_shape_str(x, sx, sizeof sx),
             nn_shape_str(w, sw, sizeof sw), w->ndim == 2 ? w->shape[1] : -1);
    int B = x->shape[0], in_f = x->shape[1], out_f = w->shape[0];
    if (b) {
        nn_check_live(ctx, b, "linear");
        NN_CHECK(b->ndim == 1 && b->shape[0] == out_f, "linear: bias %s does not match weight %s",
                 nn_shape_str(b, sb, sizeof sb), nn_shape_str(w, sw, sizeof sw));
    }
    nn_tensor *in[] = {x, w, b};
    int n_in = b ? 3 : 2;
    nn_tensor *y = nn_op_output(ctx, 2, (int[]){B, out_f}, in, n_in);
    if (b && (size_t)B * out_f >= NN_PARALLEL_MIN) {
#pragma omp parallel for
        for (int i = 0; i < B; i++) memcpy(y->data + (size_t)i * out_f, b->data, (size_t)out_f * sizeof(float));
    } else if (b) { /* no OpenMP region for a few rows: even if (false) costs one a system call */
        for (int i = 0; i < B; i++) memcpy(y->data + (size_t)i * out_f, b->data, (size_t)out_f * sizeof(float));
    }
    bool bf16 = nn_get_precision() == NN_PRECISION_BF16;
    void *scratch = NULL;
    if (bf16) {
        /* One scratch for the forward product and, when there will be a
         * backward, for its two products as well. */
        size_t bytes = nn_gemm_bf16_scratch_bytes(B, out_f, in_f);
        if (y->grad) {
            size_t dx = nn_gemm_bf16_scratch_bytes(B, in_f, out_f), dw = nn_gemm_bf16_scratch_bytes(out_f, in_f, B);
            bytes = bytes > dx ? bytes : dx;
            bytes = bytes > dw ? bytes : dw;
        }
        scratch = nn_arena_alloc(ctx, bytes);
        nn_gemm_bf16(false, true, B, out_f, in_f, x->data, in_f, w->data, in_f, b != NULL, y->data, out_f, scratch);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out_f, in_f, 1.0f, x->data, in_f, w->data,
                    in_f, b ? 1.0f : 0.0f, y->data, out_f);
    }
    nn_node *node = nn_record(ctx, NN_OP_LINEAR, y, in, n_in);
    if (node && bf16) node->saved = scratch; /* the backward runs in bf16 too */
    return y;
}

void nn_linear_backward(nn_node *n) {
    nn_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL, *y = n->out;
    int B = x->shape[0], in_f = x->shape[1], out_f = w->shape[0];
    if (n->saved) { /* bf16: the scratch the forward set aside */
        if (x->grad)
            nn_gemm_bf16(false, false, B, in_f, out_f, y->grad, out_f, w->data, in_f, true, x->grad, in_f, n->saved);
        if (w->grad)
            nn_gemm_bf16(true, false, out_f, in_f, B, y->grad, out_f, x->data, in_f, true, w->grad, in_f, n->saved);
    } else {
        if (x->grad)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in_f, out_f, 1.0f, y->grad, out_f,
                        w->data, in_f, 1.0f, x->grad, in_f);
        if (w->grad)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_f, in_f, B, 1.0f, y->grad, out_f,
                        x->data, in_f, 1.0f, w->grad, in_f);
    }
    if (b && b->grad) {
        /* Blocks of columns in parallel; each column still sums the batch in
         * order, so the bits are those of one thread. */
#pragma omp parallel for if ((size_t)B * out_f >= NN_PARALLEL_MIN)
        for (int j0 = 0; j0 < out_f; j0 += 64) {
            int j1 = j0 + 64 < out_f ? j0 + 64 : out_f;
            for (int i = 0; i < B; i++) {
                const float *dy = y->grad + (size_t)i * out_f;
                for (int j = j0; j < j1; j++) b->grad[j] += dy[j];
            }
        }
    }
}
