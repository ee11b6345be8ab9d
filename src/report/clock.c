/* Durations on a monotonic clock. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "nn/report.h"

#include <time.h>

double nn_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
