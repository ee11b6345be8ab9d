/* The addition data set (nn/seq2seq.h): sums written as text, a training and
 * a held-out test set drawn from one seeded order of all the operand pairs,
 * so that the two share no sum. Integer arithmetic and nn's own generator
 * only: the same bytes on every machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/seq2seq.h"
#include "core/util.h"

/* Independent of the streams the same seed drives elsewhere. */
#define ADDITION_RNG_STREAM 0x6164646974ULL /* "addit" */

nn_addition_config nn_addition_defaults(int digits) {
    switch (digits) {
    case 1: return (nn_addition_config){.digits = 1, .n_test = 10, .n_train = 0, .seed = NN_ADDITION_SEED};
    case 2: return (nn_addition_config){.digits = 2, .n_test = 1000, .n_train = 0, .seed = NN_ADDITION_SEED};
    case 3: return (nn_addition_config){.digits = 3, .n_test = 10000, .n_train = 100000, .seed = NN_ADDITION_SEED};
    default: nn_fatal("nn_addition_defaults: %d digits (1 to %d)", digits, NN_ADDITION_MAX_DIGITS);
    }
}

/* Lines "a+b=a+b\n" of the pairs order[0 .. n) (pair k is a = k / base,
 * b = k % base), as one malloc'd string. */
static char *write_sums(const int *order, int n, int base) {
    size_t cap = (size_t)n * 16 + 1, len = 0; /* "999+999=1998\n" is 13 bytes */
    char *text = nn_xmalloc(cap);
    for (int i = 0; i < n; i++) {
        int a = order[i] / base, b = order[i] % base;
        len += (size_t)snprintf(text + len, cap - len, "%d+%d=%d\n", a, b, a + b);
    }
    text[len] = '\0';
    return text;
}

int nn_addition_generate(const nn_addition_config *c, char **train, char **test) {
    *train = *test = NULL;
    if (c->digits < 1 || c->digits > NN_ADDITION_MAX_DIGITS)
        return nn_error("addition: %d-digit operands (1 to %d)", c->digits, NN_ADDITION_MAX_DIGITS);
    int base = 1;
    for (int d = 0; d < c->digits; d++) base *= 10;
    int pairs = base * base; /* at most 10^6 */
    if (c->n_test < 1 || c->n_train < 0 || c->n_test >= pairs || c->n_train > pairs - c->n_test)
        return nn_error("addition: %d test and %d training sums, but %d-digit operands make %d pairs (at least one "
                        "of each set)",
                        c->n_test, c->n_train, c->digits, pairs);
    int n_train = c->n_train ? c->n_train : pairs - c->n_test;
    int *order = nn_xmalloc((size_t)pairs * sizeof *order);
    for (int k = 0; k < pairs; k++) order[k] = k;
    nn_rng rng;
    nn_rng_seed(&rng, c->seed, ADDITION_RNG_STREAM);
    nn_rng_shuffle(&rng, order, pairs);
    *test = write_sums(order, c->n_test, base);
    *train = write_sums(order + c->n_test, n_train, base);
    free(order);
    return 0;
}
