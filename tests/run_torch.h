/* Shared by the tests that compare with PyTorch: whether they can run (MNIST
 * and Debian's python3-torch present; otherwise SKIP with the reason), a
 * python(...) runner with stdout and stderr captured, and MNIST's test set
 * loaded once. Include after check.h and run_nn.h. */
#ifndef NN_TEST_RUN_TORCH_H
#define NN_TEST_RUN_TORCH_H

#include "nn/data.h"
#include "nn/error.h"

#define PYTHON "/usr/bin/python3"

static inline bool have_torch(void) {
    static int cached = -1;
    if (cached < 0) cached = system(PYTHON " -c 'import torch' >/dev/null 2>&1") == 0;
    return cached;
}

/* Whether the test can run; if not, marks it skipped and says why. */
static inline bool can_run(const char *what) {
    if (!have_mnist()) return false;
    if (!have_torch()) {
        SKIP("%s -c 'import torch' fails (is Debian's python3-torch installed?); %s not run", PYTHON, what);
        return false;
    }
    return true;
}

/* Runs "/usr/bin/python3 ARGS" with stdout and stderr captured in
 * out_text/err_text; returns the exit status (128+N for signal N). */
static inline int python(const char *fmt, ...) {
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, PYTHON " %s >%s 2>%s </dev/null", args, tmp("py.out"), tmp("py.err"));
    int status = system(cmd);
    slurp(tmp("py.out"), out_text, sizeof out_text);
    slurp(tmp("py.err"), err_text, sizeof err_text);
    if (!WIFEXITED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/* MNIST's test set, loaded on first use. */
static inline const nn_dataset *test_set(void) {
    static nn_dataset test;
    static bool loaded;
    if (!loaded) {
        CHECKF(nn_dataset_load(&test, "data/mnist", "t10k") == 0, "%s", nn_last_error());
        loaded = true;
    }
    return &test;
}

#endif
