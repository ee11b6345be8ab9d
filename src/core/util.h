/* Helpers of the library and of the nn program that are not libnn's API
 * (nothing here is exported from libnn.so): allocation that never fails,
 * reading a whole file, writing one atomically. The program links libnn.a
 * and reaches them through -Isrc. */
#ifndef NN_CORE_UTIL_H
#define NN_CORE_UTIL_H

#include <stddef.h>

#include "nn/error.h"

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

#endif
