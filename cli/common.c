/* Helpers shared by the subcommands (commands.h): usage and runtime errors,
 * lists of widths, Ctrl-C during a run, thread counts, the data's folder. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "commands.h"
#include "nn/core.h"
#include "nn/error.h"
#include "core/util.h"

int usage_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "nn %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry 'nn %s --help'\n", cmd);
    return EXIT_USAGE;
}

int runtime_error(void) {
    fflush(stdout);
    fprintf(stderr, "nn: error: %s\n", nn_last_error());
    return 1;
}

int parse_widths(const char *s, int **out) {
    int n = 0;
    *out = NULL;
    if (strcmp(s, "") == 0 || strcmp(s, "none") == 0) return 0;
    int *w = nn_xmalloc((strlen(s) / 2 + 1) * sizeof *w); /* a width and a comma take two characters at least */
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 1 || v > 65536) break;
        w[n++] = (int)v;
        s = end;
        if (*s == ',' && s[1]) s++;
        else if (*s) break;
    }
    if (*s) {
        free(w);
        return -1;
    }
    *out = w;
    return n;
}

volatile sig_atomic_t stop_requested;

static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
}

void catch_sigint(struct sigaction *old) {
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    stop_requested = 0;
    sigaction(SIGINT, &sa, old);
}

void release_sigint(const struct sigaction *old) { sigaction(SIGINT, old, NULL); }

void set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

const char *dataset_dir(const char *cmd, const char *dataset, const char *data_dir) {
    /* The data sets make data fetches or makes, each in data/NAME. */
    static const char *const known[][2] = {
        {"mnist", "data/mnist"},         {"fashion-mnist", "data/fashion-mnist"},
        {"tinyshakespeare", "data/tinyshakespeare"}, {"names", "data/names"},
        {"names-by-language", "data/names-by-language"}, {"addition", "data/addition"},
        {"addition3", "data/addition3"}};
    if (data_dir) return data_dir;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(dataset, known[i][0]) == 0) return known[i][1];
    usage_error(cmd,
                "--dataset: unknown dataset '%s' (mnist, fashion-mnist, tinyshakespeare, names, names-by-language, "
                "addition, addition3)",
                dataset);
    return NULL;
}

int data_error(const char *dataset, const char *data_dir) {
    runtime_error();
    if (strstr(nn_last_error(), "not found") || strstr(nn_last_error(), "No such file")) {
        if (data_dir)
            fprintf(stderr, "nn: %s must hold the four IDX files of a dataset (raw or .gz)\n", data_dir);
        else if (strcmp(dataset, "fashion-mnist") == 0)
            fprintf(stderr, "nn: fetch the data with: make data DATASET=fashion-mnist\n");
        else
            fprintf(stderr, "nn: fetch the data with: make data\n");
    }
    return 1;
}
