/* A minimal test harness: CHECK records a failure with file and line and goes
 * on; SKIP says that a test cannot run here (no data, no PyTorch) and why;
 * TEST_MAIN runs the listed tests and prints "N passed, N failed, N skipped",
 * exiting non-zero if anything failed. A test passes when none of its checks
 * failed and it did not skip; a skip never counts as a pass. */
#ifndef NN_TEST_CHECK_H
#define NN_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures_;
static int check_skips_;
static char check_skip_reason_[256];

/* Marks the running test as skipped, with the reason; return after it. */
#define SKIP(...)                                                                \
    do {                                                                         \
        check_skips_++;                                                          \
        snprintf(check_skip_reason_, sizeof check_skip_reason_, __VA_ARGS__);    \
    } while (0)

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures_++;                                                   \
        }                                                                        \
    } while (0)

#define CHECKF(cond, ...)                                                        \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
            check_failures_++;                                                   \
        }                                                                        \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                    \
    do {                                                                         \
        double a_ = (a), b_ = (b);                                               \
        if (!(fabs(a_ - b_) <= (tol))) {                                         \
            fprintf(stderr, "  %s:%d: %s = %.9g, expected %s = %.9g (tol %g)\n",  \
                    __FILE__, __LINE__, #a, a_, #b, b_, (double)(tol));          \
            check_failures_++;                                                   \
        }                                                                        \
    } while (0)

typedef struct {
    const char *name;
    void (*fn)(void);
} test_case;

static inline int run_tests_(const test_case *tests, int n) {
    int passed = 0, failed = 0, skipped = 0;
    const char *only = getenv("NN_TEST");
    for (int i = 0; i < n; i++) {
        if (only && !strstr(tests[i].name, only)) continue;
        int before = check_failures_;
        check_skips_ = 0;
        tests[i].fn();
        if (check_failures_ != before) {
            failed++;
            printf("FAIL %s\n", tests[i].name);
        } else if (check_skips_) {
            skipped++;
            printf("skip %s: %s\n", tests[i].name, check_skip_reason_);
        } else {
            passed++;
            printf("ok %s\n", tests[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

#define TEST(fn) {#fn, fn}
#define TEST_MAIN(...)                                                           \
    int main(void) {                                                             \
        static const test_case tests_[] = {__VA_ARGS__};                         \
        return run_tests_(tests_, (int)(sizeof tests_ / sizeof tests_[0]));      \
    }

#endif
