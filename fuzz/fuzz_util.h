/* Helpers shared by the fuzz targets (header-only: each target is one file).
 *
 * Some parsers read from a path, so the input is written to a file in a
 * private scratch folder (in /dev/shm when it exists: no disk I/O), reused
 * from one run to the next. A problem of the harness itself aborts; a broken
 * promise of the parser under test traps, which libFuzzer reports as a crash. */
#ifndef NN_FUZZ_UTIL_H
#define NN_FUZZ_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/error.h"

static char fuzz_dir_[64];

static inline void fuzz_remove_dir_(void) {
    DIR *d = opendir(fuzz_dir_);
    if (!d) return;
    char path[128];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", fuzz_dir_, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(fuzz_dir_);
}

/* Writes data to <scratch>/<name> and returns that path (valid until the next
 * call with the same name). */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t size) {
    static char path[128];
    if (!fuzz_dir_[0]) {
        strcpy(fuzz_dir_, access("/dev/shm", W_OK) == 0 ? "/dev/shm/nn-fuzz-XXXXXX" : "/tmp/nn-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir_)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_remove_dir_);
    }
    snprintf(path, sizeof path, "%s/%s", fuzz_dir_, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* The error contract: a failure leaves a message that starts with
 * "<prefix>: " and says something after it. */
static inline void fuzz_check_error(const char *prefix) {
    const char *msg = nn_last_error();
    size_t n = strlen(prefix);
    if (strncmp(msg, prefix, n) != 0 || strncmp(msg + n, ": ", 2) != 0 || !msg[n + 2]) {
        fprintf(stderr, "fuzz: error message breaks the contract (want \"%s: ...\"): \"%s\"\n", prefix, msg);
        __builtin_trap();
    }
}

#endif
