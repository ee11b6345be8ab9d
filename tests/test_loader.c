/* The mini-batch loader: coverage of each epoch, seeded shuffling, the
 * normalisation, and the dataset statistics it normalises with. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "nn/data.h"

/* n examples of 1x2 pixels that spell their own index (low byte, high byte),
 * labelled index mod 10. */
static nn_dataset numbered(int n) {
    nn_dataset d = {n, 1, 2, malloc((size_t)n * 2), malloc((size_t)n)};
    for (int i = 0; i < n; i++) {
        d.images[2 * i] = (uint8_t)(i & 0xff);
        d.images[2 * i + 1] = (uint8_t)(i >> 8);
        d.labels[i] = (uint8_t)(i % 10);
    }
    return d;
}

/* Runs one epoch of a loader over numbered() data with mean 0, std 1, and
 * records the example order and the batch sizes. Returns the batch count. */
static int run_epoch(nn_loader *l, int *order, int *sizes) {
    int bs = l->batch_size, batches = 0, seen = 0, count;
    float *x = malloc((size_t)bs * 2 * sizeof *x);
    int *y = malloc((size_t)bs * sizeof *y);
    nn_loader_start_epoch(l);
    while ((count = nn_loader_next(l, x, y)) > 0) {
        for (int i = 0; i < count; i++) {
            int idx = (int)lrintf(x[2 * i] * 255.0f) + 256 * (int)lrintf(x[2 * i + 1] * 255.0f);
            CHECKF(y[i] == idx % 10, "example %d has label %d", idx, y[i]);
            order[seen++] = idx;
        }
        sizes[batches++] = count;
    }
    CHECK(nn_loader_next(l, x, y) == 0); /* stays at the end */
    CHECK(seen == l->ds->n);
    free(x);
    free(y);
    return batches;
}

static int is_permutation(const int *order, int n) {
    char *seen = calloc((size_t)n, 1);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        ok = order[i] >= 0 && order[i] < n && !seen[order[i]];
        if (ok) seen[order[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_epoch_covers_every_example_once(void) {
    enum { N = 1003, BS = 10 };
    nn_dataset d = numbered(N);
    nn_loader l;
    nn_loader_init(&l, &d, BS, 1, 7, 0.0f, 1.0f);
    CHECK(nn_loader_num_batches(&l) == 101);
    int order[N], sizes[N];
    for (int epoch = 0; epoch < 3; epoch++) {
        int batches = run_epoch(&l, order, sizes);
        CHECK(batches == 101);
        for (int b = 0; b < 100; b++) CHECK(sizes[b] == BS);
        CHECK(sizes[100] == 3); /* the last, partial batch */
        CHECK(is_permutation(order, N));
    }
    nn_loader_free(&l);
    nn_dataset_free(&d);
}

static void test_shuffle_follows_the_seed(void) {
    enum { N = 500 };
    nn_dataset d = numbered(N);
    nn_loader a, b, c;
    nn_loader_init(&a, &d, 32, 1, 42, 0.0f, 1.0f);
    nn_loader_init(&b, &d, 32, 1, 42, 0.0f, 1.0f);
    nn_loader_init(&c, &d, 32, 1, 43, 0.0f, 1.0f);
    int oa[N], ob[N], oc[N], prev[N], sizes[N];
    for (int epoch = 0; epoch < 3; epoch++) {
        run_epoch(&a, oa, sizes);
        run_epoch(&b, ob, sizes);
        run_epoch(&c, oc, sizes);
        CHECKF(memcmp(oa, ob, sizeof oa) == 0, "epoch %d: same seed, different order", epoch);
        CHECKF(memcmp(oa, oc, sizeof oa) != 0, "epoch %d: seeds 42 and 43 agree", epoch);
        if (epoch > 0) CHECKF(memcmp(oa, prev, sizeof oa) != 0, "epoch %d repeats", epoch);
        memcpy(prev, oa, sizeof oa);
        /* Really shuffled: few examples stay in place. */
        int fixed = 0;
        for (int i = 0; i < N; i++) fixed += oa[i] == i;
        CHECKF(fixed < 10, "%d of %d examples in place", fixed, N);
    }
    nn_loader_free(&a);
    nn_loader_free(&b);
    nn_loader_free(&c);
    nn_dataset_free(&d);
}

static void test_no_shuffle_keeps_file_order(void) {
    enum { N = 25 };
    nn_dataset d = numbered(N);
    nn_loader l;
    nn_loader_init(&l, &d, 100, 0, 1, 0.0f, 1.0f); /* one batch larger than the data */
    CHECK(nn_loader_num_batches(&l) == 1);
    int order[N], sizes[N];
    for (int epoch = 0; epoch < 2; epoch++) {
        CHECK(run_epoch(&l, order, sizes) == 1);
        CHECK(sizes[0] == N);
        for (int i = 0; i < N; i++) CHECK(order[i] == i);
    }
    nn_loader_free(&l);
    nn_dataset_free(&d);
}

static void test_nothing_before_start_epoch(void) {
    nn_dataset d = numbered(5);
    nn_loader l;
    float x[10];
    int y[5];
    nn_loader_init(&l, &d, 5, 1, 1, 0.0f, 1.0f);
    CHECK(nn_loader_next(&l, x, y) == 0);
    nn_loader_start_epoch(&l);
    CHECK(nn_loader_next(&l, x, y) == 5);
    nn_loader_free(&l);
    nn_dataset_free(&d);
}

/* Every byte value maps to (v/255 - mean)/std. */
static void test_normalisation(void) {
    uint8_t pixels[256], label = 3;
    for (int v = 0; v < 256; v++) pixels[v] = (uint8_t)v;
    nn_dataset d = {1, 16, 16, pixels, &label};
    float x[256];
    int y;
    nn_loader l;
    nn_loader_init(&l, &d, 1, 0, 1, 0.1307f, 0.3081f);
    nn_loader_start_epoch(&l);
    CHECK(nn_loader_next(&l, x, &y) == 1);
    CHECK(y == 3);
    for (int v = 0; v < 256; v++) {
        double want = (v / 255.0 - 0.1307f) / 0.3081f;
        CHECKF(fabs(x[v] - want) <= 1e-6 * fabs(want) + 1e-7, "byte %d: %.9g, want %.9g", v, x[v],
               want);
    }
    CHECK_NEAR(x[0], -0.4242129614, 1e-6);
    CHECK_NEAR(x[255], 2.8214866436, 1e-6);
    nn_loader_free(&l);

    /* A constant dataset has std 0: values must stay finite. */
    nn_loader_init(&l, &d, 1, 0, 1, 0.5f, 0.0f);
    nn_loader_start_epoch(&l);
    nn_loader_next(&l, x, &y);
    CHECK_NEAR(x[0], -0.5, 1e-7);
    CHECK_NEAR(x[255], 0.5, 1e-7);
    nn_loader_free(&l);
}

static void test_mean_std(void) {
    /* Half black, half white: mean 1/2, standard deviation 1/2. */
    uint8_t pixels[8] = {0, 255, 0, 255, 255, 0, 255, 0}, labels[2] = {0, 1};
    nn_dataset d = {2, 2, 2, pixels, labels};
    float mean, std;
    nn_dataset_mean_std(&d, &mean, &std);
    CHECK_NEAR(mean, 0.5, 1e-7);
    CHECK_NEAR(std, 0.5, 1e-7);

    /* Against a direct two-pass computation. */
    uint8_t varied[3 * 5 * 7];
    for (int i = 0; i < 105; i++) varied[i] = (uint8_t)(i * i * 31 % 256);
    nn_dataset v = {3, 5, 7, varied, labels};
    double sum = 0, sq = 0;
    for (int i = 0; i < 105; i++) sum += varied[i] / 255.0;
    for (int i = 0; i < 105; i++) sq += pow(varied[i] / 255.0 - sum / 105, 2);
    nn_dataset_mean_std(&v, &mean, &std);
    CHECK_NEAR(mean, sum / 105, 1e-7);
    CHECK_NEAR(std, sqrt(sq / 105), 1e-7);

    /* Only the examples kept count. */
    nn_dataset_limit(&d, 1);
    nn_dataset_mean_std(&d, &mean, &std);
    CHECK_NEAR(mean, 0.5, 1e-7);
    nn_dataset_limit(&d, 0);
    nn_dataset_mean_std(&d, &mean, &std);
    CHECK(mean == 0.0f && std == 0.0f);
}

TEST_MAIN(TEST(test_epoch_covers_every_example_once), TEST(test_shuffle_follows_the_seed),
          TEST(test_no_shuffle_keeps_file_order), TEST(test_nothing_before_start_epoch),
          TEST(test_normalisation), TEST(test_mean_std))
