/* Shared by the tests that run the nn binary: a scratch folder removed at
 * exit, and nn(...) which runs "$NN ARGS" (default build/nn) with stdout and
 * stderr captured. */
#ifndef NN_TEST_RUN_NN_H
#define NN_TEST_RUN_NN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[64];
static char out_text[1 << 16], err_text[1 << 16];

static inline void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Runs "PREFIX $NN ARGS" through the shell (PREFIX may set limits, e.g.
 * "ulimit -f 10;"); returns the exit status (128+N for signal N) and leaves
 * stdout/stderr in out_text/err_text. */
static inline int nn_with(const char *prefix, const char *fmt, va_list ap) {
    const char *bin = getenv("NN") ? getenv("NN") : "build/nn";
    char args[2048], cmd[4096];
    vsnprintf(args, sizeof args, fmt, ap);
    snprintf(cmd, sizeof cmd, "%s %s %s >%s/out 2>%s/err </dev/null", prefix, bin, args, tmpdir, tmpdir);
    int status = system(cmd);
    char path[128];
    snprintf(path, sizeof path, "%s/out", tmpdir);
    slurp(path, out_text, sizeof out_text);
    snprintf(path, sizeof path, "%s/err", tmpdir);
    slurp(path, err_text, sizeof err_text);
    if (!WIFEXITED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static inline int nn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = nn_with("", fmt, ap);
    va_end(ap);
    return rc;
}

static inline int nn_limited(const char *prefix, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = nn_with(prefix, fmt, ap);
    va_end(ap);
    return rc;
}

/* A path in the scratch folder (rotating buffers: several may be live). */
static inline const char *tmp(const char *name) {
    static char buf[8][256];
    static int i;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
    return buf[i];
}

/* stderr starts with "nn: error: " and mentions the given text. */
static inline bool one_line_error(const char *must_contain) {
    return strncmp(err_text, "nn: error: ", 11) == 0 && strstr(err_text, must_contain) != NULL;
}

/* Whether MNIST is there; if not, the running test is marked skipped. */
static inline bool have_mnist(void) {
    bool have = access("data/mnist/t10k-images-idx3-ubyte", R_OK) == 0 ||
                access("data/mnist/t10k-images-idx3-ubyte.gz", R_OK) == 0;
    if (!have) SKIP("data/mnist missing (run make data)");
    return have;
}

static void remove_tmpdir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

__attribute__((constructor)) static void make_tmpdir(void) {
    strcpy(tmpdir, "/tmp/nn_test_XXXXXX");
    if (!mkdtemp(tmpdir)) abort();
    atexit(remove_tmpdir);
}

#endif
