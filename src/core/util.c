/* Checked allocation and whole-file I/O, for the library and the nn
 * program (core/util.h). */
#define _POSIX_C_SOURCE 200809L
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void *nn_xmalloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) nn_fatal_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *nn_xcalloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) nn_fatal_at(file, line, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *nn_xrealloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) nn_fatal_at(file, line, "out of memory reallocating to %zu bytes", n);
    return q;
}

char *nn_xstrdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    return memcpy(nn_xmalloc_at(n, file, line), s, n);
}

unsigned char *nn_read_file(const char *path, size_t *len, size_t max_len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        nn_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        nn_error("%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    if (max_len && n > max_len) {
        nn_error("%s: file too large (%zu bytes, limit %zu)", path, n, max_len);
        fclose(f);
        return NULL;
    }
    unsigned char *buf = nn_xmalloc(n + 1);
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        nn_error("%s: read error", path);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int nn_write_file_atomic(const char *path, const void *data, size_t len) {
    size_t plen = strlen(path);
    char *tmp = nn_xmalloc(plen + 32);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        nn_error("%s: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    const unsigned char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) goto fail;
    /* Make the rename itself durable. */
    char *dir_copy = nn_xmalloc(plen + 1);
    memcpy(dir_copy, path, plen + 1);
    int dfd = open(dirname(dir_copy), O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir_copy);
    free(tmp);
    return 0;
fail:;
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    nn_error("%s: %s", path, strerror(e));
    free(tmp);
    return -1;
}
