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

/* Allocation that never returns NULL: out of memory is fatal, with the size and
 * the call site in the message. */
void *nn_xmalloc_at(size_t n, const char *file, int line);
void *nn_xcalloc_at(size_t count, size_t size, const char *file, int line);
void *nn_xrealloc_at(void *p, size_t n, const char *file, int line);
char *nn_xstrdup_at(const char *s, const char *file, int line);
#define nn_xmalloc(n) nn_xmalloc_at((n), __FILE__, __LINE__)
#define nn_xcalloc(c, s) nn_xcalloc_at((c), (s), __FILE__, __LINE__)
#define nn_xrealloc(p, n) nn_xrealloc_at((p), (n), __FILE__, __LINE__)
#define nn_xstrdup(s) nn_xstrdup_at((s), __FILE__, __LINE__)

/* Reads a whole file into memory (plus a terminating NUL byte that is not
 * counted in *len). Returns NULL and sets the error ("PATH: strerror") on
 * failure. `max_len` bounds the size accepted (0 = no bound). */
unsigned char *nn_read_file(const char *path, size_t *len, size_t max_len);

/* Writes `len` bytes to `path` atomically: a temporary file in the same folder,
 * fsync, rename over the final name, fsync of the folder. On failure the old
 * file (if any) is untouched, the temporary is removed, and the error names the
 * path and the errno text. Returns 0 or -1. */
int nn_write_file_atomic(const char *path, const void *data, size_t len);

NN_END_DECLS

#endif
