/* GEMM micro-benchmark: OpenBLAS cblas_sgemm (fp32) against nn's bf16 GEMM
 * (conversion and packing included) on the products of one training step of
 * the 784-1024-1024-10 MLP at batch 256, and on 1024^3, at 1 and 2 threads.
 * Prints one "key value" line per measurement: the median GFLOP/s of RUNS
 * timed calls, and the bf16 result's largest difference from fp32 relative to
 * the largest |fp32| entry (bf16 rounding: ~1e-2 or less); first, which bf16
 * kernel runs (bf16.kernel amx, avx512_bf16 or portable).
 *
 *   build/bench/bench_gemm [RUNS]      (default 30) */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "core/cpu.h"
#include "nn/core.h"
#include "nn/report.h"
#include "ops/gemm_bf16.h"
#include "core/util.h"

void openblas_set_num_threads(int n);

typedef struct shape {
    const char *name;
    bool ta, tb;
    int M, N, K;
} shape;

static void fill(float *v, size_t n, nn_rng *rng) {
    for (size_t i = 0; i < n; i++) v[i] = 2.0f * nn_rng_uniform(rng) - 1.0f;
}

static void bench_shape(const shape *s, int threads, int runs) {
    nn_rng rng;
    nn_rng_seed(&rng, 3, 1);
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    float *a = nn_xmalloc((size_t)s->M * s->K * sizeof(float)), *b = nn_xmalloc((size_t)s->K * s->N * sizeof(float));
    float *c32 = nn_xmalloc((size_t)s->M * s->N * sizeof(float)), *c16 = nn_xmalloc((size_t)s->M * s->N * sizeof(float));
    fill(a, (size_t)s->M * s->K, &rng);
    fill(b, (size_t)s->K * s->N, &rng);
    void *scratch = aligned_alloc(64, (nn_gemm_bf16_scratch_bytes(s->M, s->N, s->K) + 63) / 64 * 64);
    double *t32 = nn_xmalloc((size_t)runs * sizeof(double)), *t16 = nn_xmalloc((size_t)runs * sizeof(double));
    for (int r = -3; r < runs; r++) { /* interleaved, three warm-up calls */
        double t0 = nn_seconds();
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->M, s->N,
                    s->K, 1.0f, a, lda, b, ldb, 0.0f, c32, s->N);
        double t1 = nn_seconds();
        nn_gemm_bf16(s->ta, s->tb, s->M, s->N, s->K, a, lda, b, ldb, false, c16, s->N, scratch);
        double t2 = nn_seconds();
        if (r >= 0) t32[r] = t1 - t0, t16[r] = t2 - t1;
    }
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < (size_t)s->M * s->N; i++)
        diff = fmax(diff, fabs((double)c16[i] - c32[i])), scale = fmax(scale, fabs(c32[i]));
    double flop = 2.0 * s->M * s->N * s->K;
    printf("%s.t%d.fp32_gflops %.1f\n", s->name, threads, flop / median(t32, runs) / 1e9);
    printf("%s.t%d.bf16_gflops %.1f\n", s->name, threads, flop / median(t16, runs) / 1e9);
    printf("%s.bf16_max_rel_diff %.2g\n", s->name, diff / scale);
    fflush(stdout);
    free(a), free(b), free(c32), free(c16), free(scratch), free(t32), free(t16);
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 30;
    if (runs < 1) {
        fprintf(stderr, "usage: bench_gemm [RUNS]\n");
        return 2;
    }
    printf("cpu.avx512_bf16 %d\n", nn_cpu_has_avx512_bf16());
    printf("cpu.amx_bf16 %d\n", nn_cpu_has_amx_bf16());
    /* The step's products as nn_linear calls them (B = 256). */
    static const shape shapes[] = {
        {"square_1024", false, true, 1024, 1024, 1024},
        {"fc1_forward", false, true, 256, 1024, 784},   {"fc1_weight_grad", true, false, 1024, 784, 256},
        {"fc2_forward", false, true, 256, 1024, 1024},  {"fc2_input_grad", false, false, 256, 1024, 1024},
        {"fc2_weight_grad", true, false, 1024, 1024, 256}, {"fc3_forward", false, true, 256, 10, 1024},
    };
    /* nn_gemm_bf16 chooses by shape: one line if every shape here gets the
     * same kernel, else one per shape */
    size_t n_shapes = sizeof shapes / sizeof shapes[0], same = 1;
    const char *kernel = nn_gemm_bf16_kernel(shapes[0].M, shapes[0].N, shapes[0].K);
    while (same < n_shapes && strcmp(kernel, nn_gemm_bf16_kernel(shapes[same].M, shapes[same].N, shapes[same].K)) == 0)
        same++;
    if (same == n_shapes) printf("bf16.kernel %s\n", kernel);
    else
        for (size_t i = 0; i < n_shapes; i++)
            printf("%s.bf16_kernel %s\n", shapes[i].name, nn_gemm_bf16_kernel(shapes[i].M, shapes[i].N, shapes[i].K));
    int max_threads = omp_get_max_threads();
    for (int threads = 1; threads <= max_threads && threads <= 2; threads++) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
        for (size_t i = 0; i < n_shapes; i++) bench_shape(&shapes[i], threads, runs);
    }
    return 0;
}
