/* Error messages and fatal errors. */
#define _POSIX_C_SOURCE 200809L
#include "nn/error.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

int nn_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    /* Messages quote names and values from files: keep them on one line and
     * free of terminal escapes. */
    for (char *p = last_error; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    return -1;
}

const char *nn_last_error(void) { return last_error; }

void nn_fatal_at(const char *file, int line, const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "nn: fatal: %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
