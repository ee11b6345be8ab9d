/* Shared by the benchmarks: the median of repeated timings (robust to the
 * odd slow run on a shared machine), OpenBLAS's sgemm peak, and running one
 * measurement in a child process. */
#ifndef NN_BENCH_UTIL_H
#define NN_BENCH_UTIL_H

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "nn/report.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Best-of-5 GFLOP/s of a 1024^3 C = A B^T on `threads` threads (after one
 * warm-up round of 10 calls). */
static inline double bench_sgemm_peak(int threads) {
    enum { N = 1024 };
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    float *a = nn_xmalloc((size_t)N * N * sizeof(float)), *b = nn_xmalloc((size_t)N * N * sizeof(float)),
          *c = nn_xmalloc((size_t)N * N * sizeof(float));
    for (size_t i = 0; i < (size_t)N * N; i++) a[i] = (float)(i % 7) * 1e-3f, b[i] = (float)(i % 5) * 1e-3f;
    double best = 0.0;
    for (int r = 0; r < 6; r++) {
        double t = nn_seconds();
        for (int i = 0; i < 10; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
        double g = 2.0 * N * N * N * 10 / (nn_seconds() - t) / 1e9;
        if (r > 0 && g > best) best = g; /* r = 0 warms up */
    }
    free(a), free(b), free(c);
    return best;
}

/* Runs fn(arg) in a child process, so that its peak RSS is its own and the
 * parent never starts OpenMP threads (a child forked after that would run
 * on one thread); 0 if it exited 0, else its exit status (-1 if it did not
 * exit), with its resource usage in *ru. */
static inline int bench_in_child(int (*fn)(const void *), const void *arg, struct rusage *ru) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(fn(arg));
    int status;
    if (pid < 0 || wait4(pid, &status, 0, ru) < 0 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

#endif
