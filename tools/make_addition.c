/* make_addition: writes the addition data set (nn/seq2seq.h) into a folder,
 * as train.lines.txt and test.lines.txt, which nn's text loader reads as
 * lines with that split (nn/text.h). `make data DATASET=addition` runs it
 * through scripts/fetch_data.sh, which checks the files' SHA-256.
 *
 *   build/tools/make_addition [--digits N] [--test N] [--train N] [--seed S] DIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/seq2seq.h"
#include "core/util.h"

static const char *const usage =
    "usage: make_addition [--digits 1|2|3] [--test N] [--train N] [--seed S] DIR\n"
    "\n"
    "Writes DIR/train.lines.txt and DIR/test.lines.txt: sums 'a+b=c', one a line,\n"
    "operands of up to N digits (default 2), the pairs drawn in an order chosen by\n"
    "the seed (default 1); no sum is in both files. Defaults by digits: 1: 10 test,\n"
    "90 train; 2: 1000 test, 9000 train (every pair); 3: 10000 test, 100000 train.\n"
    "--train 0: every pair not held out.\n";

static int bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "make_addition: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

/* A whole non-negative decimal number no larger than max, or -1. */
static long long parse_count(const char *s, long long max) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max) return -1;
    return v;
}

static int write_set(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (nn_write_file_atomic(path, text, strlen(text)) != 0) {
        fprintf(stderr, "make_addition: error: %s\n", nn_last_error());
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    long long digits = 2, n_test = -1, n_train = -1, seed = NN_ADDITION_SEED;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        long long *dst = strcmp(a, "--digits") == 0 ? &digits
                         : strcmp(a, "--test") == 0 ? &n_test
                         : strcmp(a, "--train") == 0 ? &n_train
                         : strcmp(a, "--seed") == 0 ? &seed
                                                    : NULL;
        if (dst) {
            if (i + 1 == argc) return bad_usage("%s needs a value", a);
            if ((*dst = parse_count(argv[++i], 2147483647)) < 0) return bad_usage("bad number '%s'", argv[i]);
        } else if (a[0] == '-') {
            return bad_usage("unknown flag '%s'", a);
        } else if (dir) {
            return bad_usage("one folder only ('%s' is a second)", a);
        } else {
            dir = a;
        }
    }
    if (!dir) return bad_usage("%s", "the folder to write is missing");
    if (digits < 1 || digits > NN_ADDITION_MAX_DIGITS) return bad_usage("%s", "--digits: 1, 2 or 3");
    nn_addition_config c = nn_addition_defaults((int)digits);
    c.seed = (uint64_t)seed;
    if (n_test >= 0) c.n_test = (int)n_test;
    if (n_train >= 0) c.n_train = (int)n_train;
    char *train, *test;
    if (nn_addition_generate(&c, &train, &test) != 0) {
        fprintf(stderr, "make_addition: error: %s\n", nn_last_error());
        return 1;
    }
    int rc = mkdir(dir, 0777) != 0 && errno != EEXIST;
    if (rc) fprintf(stderr, "make_addition: error: %s: %s\n", dir, strerror(errno));
    if (!rc) rc = write_set(dir, "train.lines.txt", train) || write_set(dir, "test.lines.txt", test);
    free(train);
    free(test);
    return rc ? 1 : 0;
}
