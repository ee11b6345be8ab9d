/* Error reporting shared by the library and the CLI.
 *
 * Library functions that can fail on user input (files, flags, shapes coming
 * from outside) return NULL or -1 and leave a one-line message here; the CLI
 * prints it as "nn: error: <message>" and exits 1. Programming errors (wrong
 * shapes passed by the caller, a forgotten role) are assertions instead: see
 * NN_CHECK in nn/core.h. */
#ifndef NN_ERROR_H
#define NN_ERROR_H

#include <stddef.h>
#include <stdio.h>

#include "nn/api.h"

NN_BEGIN_DECLS

#if defined(__GNUC__)
#define NN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define NN_NORETURN __attribute__((noreturn))
#else
#define NN_PRINTF(a, b)
#define NN_NORETURN
#endif

/* Sets the thread's last error message (printf-style); always returns -1 so a
 * caller can write `return nn_error("%s: truncated", path);`. */
int nn_error(const char *fmt, ...) NN_PRINTF(1, 2);
/* The last message set by nn_error ("" if none). */
const char *nn_last_error(void);

/* Prints "nn: fatal: <file>:<line>: <message>" and aborts. For broken
 * invariants and misuse of the API, never for bad user input. */
NN_NORETURN void nn_fatal_at(const char *file, int line, const char *fmt, ...) NN_PRINTF(3, 4);
#define nn_fatal(...) nn_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

NN_END_DECLS

#endif
