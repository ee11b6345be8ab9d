/* Shared by the benchmarks: the median of repeated timings (robust to the
 * odd slow run on a shared machine). */
#ifndef NN_BENCH_UTIL_H
#define NN_BENCH_UTIL_H

#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
