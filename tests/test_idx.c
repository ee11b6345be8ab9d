/* IDX loading: the real MNIST files when present, synthetic files written to a
 * temporary folder, and one malformed file for each check the loader makes. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "nn/data.h"
#include "nn/error.h"
#include "core/util.h"

#define IMAGES 2051u
#define LABELS 2049u

/* ---- a scratch folder, removed at exit ---- */

static char scratch[64];
static char made[64][256]; /* every file written, for the clean-up */
static int n_made;

static void remove_scratch(void) {
    for (int i = n_made - 1; i >= 0; i--) remove(made[i]);
    rmdir(scratch);
}

static const char *scratch_dir(void) {
    if (!scratch[0]) {
        strcpy(scratch, "/tmp/nn_test_idx_XXXXXX");
        if (!mkdtemp(scratch)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(remove_scratch);
    }
    return scratch;
}

/* Returns scratch/name in a buffer that stays valid until exit. */
static const char *tmp(const char *name) {
    scratch_dir();
    for (int i = 0; i < n_made; i++) {
        const char *base = made[i] + strlen(scratch) + 1;
        if (strcmp(base, name) == 0) return made[i];
    }
    if (n_made == 64) {
        fprintf(stderr, "test_idx: too many scratch files\n");
        exit(1);
    }
    snprintf(made[n_made], sizeof made[0], "%s/%s", scratch, name);
    return made[n_made++];
}

static void write_bytes(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void write_gzip(const char *path, const uint8_t *data, size_t len) {
    gzFile gz = gzopen(path, "wb");
    if (!gz || (len && gzwrite(gz, data, (unsigned)len) != (int)len) || gzclose(gz) != Z_OK) {
        fprintf(stderr, "%s: gzip write failed\n", path);
        exit(1);
    }
}

static uint8_t *slurp(const char *path, size_t *len) {
    uint8_t *p = nn_read_file(path, len, 0);
    if (!p) {
        fprintf(stderr, "%s\n", nn_last_error());
        exit(1);
    }
    return p;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes an IDX file: the header as given, then `payload` data bytes (image
 * pixels i*7 mod 256; labels i mod 10) whatever the header says, so the
 * header and the data can be made to disagree. */
static void write_idx(const char *path, uint32_t magic, int ndims, const uint32_t *dims,
                      size_t payload) {
    size_t header = 4 + 4 * (size_t)ndims;
    uint8_t *buf = malloc(header + payload);
    put32(buf, magic);
    for (int i = 0; i < ndims; i++) put32(buf + 4 + 4 * i, dims[i]);
    for (size_t i = 0; i < payload; i++)
        buf[header + i] = (uint8_t)(magic == LABELS ? i % 10 : i * 7 % 256);
    write_bytes(path, buf, header + payload);
    free(buf);
}

/* A valid pair of files with n images of rows x cols. */
static void write_pair(const char *images, const char *labels, uint32_t n, uint32_t rows,
                       uint32_t cols) {
    write_idx(images, IMAGES, 3, (uint32_t[]){n, rows, cols}, (size_t)n * rows * cols);
    write_idx(labels, LABELS, 1, (uint32_t[]){n}, n);
}

/* Checks that loading failed cleanly: -1, an empty dataset, and a message that
 * starts with the offending path and contains `words`. */
static void expect_failure(const char *images, const char *labels, const char *bad_path,
                           const char *words) {
    nn_dataset d;
    memset(&d, 0xff, sizeof d);
    int rc = nn_dataset_load_files(&d, images, labels);
    const char *msg = nn_last_error();
    size_t plen = strlen(bad_path);
    CHECKF(rc == -1, "expected failure with '%s'", words);
    CHECKF(d.images == NULL && d.labels == NULL && d.n == 0, "dataset not left empty");
    CHECKF(strncmp(msg, bad_path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0,
           "message '%s' does not start with '%s: '", msg, bad_path);
    CHECKF(strstr(msg, words) != NULL, "message '%s' lacks '%s'", msg, words);
    if (rc == 0) nn_dataset_free(&d);
}

/* ---- the real data ---- */

static int have_split(const char *dir, const char *split) {
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    if (stat(path, &st) == 0) return 1;
    strcat(path, ".gz");
    return stat(path, &st) == 0;
}

static void check_real(const char *dir, const char *split, int n, const uint8_t first[10]) {
    nn_dataset d;
    int rc = nn_dataset_load(&d, dir, split);
    CHECKF(rc == 0, "%s", nn_last_error());
    if (rc != 0) return;
    CHECK(d.n == n);
    CHECK(d.rows == 28 && d.cols == 28);
    CHECK(memcmp(d.labels, first, 10) == 0);
    int bad = 0, counts[NN_DATA_CLASSES] = {0};
    for (int i = 0; i < d.n; i++) {
        if (d.labels[i] >= NN_DATA_CLASSES) bad++;
        else counts[d.labels[i]]++;
    }
    CHECK(bad == 0);
    for (int c = 0; c < NN_DATA_CLASSES; c++)
        CHECKF(counts[c] > n / 20, "class %d has only %d examples", c, counts[c]);
    nn_dataset_free(&d);
}

static void test_real_mnist(void) {
    if (!have_split("data/mnist", "train") || !have_split("data/mnist", "t10k")) {
        SKIP("data/mnist not there (make data fetches it)");
        return;
    }
    check_real("data/mnist", "train", 60000, (const uint8_t[]){5, 0, 4, 1, 9, 2, 1, 3, 1, 4});
    check_real("data/mnist", "t10k", 10000, (const uint8_t[]){7, 2, 1, 0, 4, 1, 4, 9, 5, 9});
    /* The usual normalisation constants (0.1307, 0.3081), to more digits. */
    nn_dataset d;
    if (nn_dataset_load(&d, "data/mnist", "train") != 0) return;
    float mean, std;
    nn_dataset_mean_std(&d, &mean, &std);
    CHECK_NEAR(mean, 0.1306604763, 1e-6);
    CHECK_NEAR(std, 0.3081078039, 1e-6);
    nn_dataset_free(&d);
}

static void test_real_fashion_mnist(void) {
    if (!have_split("data/fashion-mnist", "train") || !have_split("data/fashion-mnist", "t10k")) {
        SKIP("data/fashion-mnist not there (make data DATASET=fashion-mnist fetches it)");
        return;
    }
    check_real("data/fashion-mnist", "train", 60000,
               (const uint8_t[]){9, 0, 0, 3, 0, 2, 7, 2, 5, 5});
    check_real("data/fashion-mnist", "t10k", 10000,
               (const uint8_t[]){9, 2, 1, 1, 6, 1, 4, 6, 5, 7});
}

/* ---- valid synthetic files ---- */

static void test_save_load_roundtrip(void) {
    uint8_t images[5 * 3 * 4], labels[5] = {3, 1, 4, 1, 5};
    for (int i = 0; i < 60; i++) images[i] = (uint8_t)(i * 13);
    nn_dataset d = {5, 3, 4, images, labels}, back;
    tmp("rt-images-idx3-ubyte"); /* registered for the clean-up */
    tmp("rt-labels-idx1-ubyte");
    CHECKF(nn_dataset_save(&d, scratch_dir(), "rt") == 0, "%s", nn_last_error());
    CHECKF(nn_dataset_load(&back, scratch_dir(), "rt") == 0, "%s", nn_last_error());
    CHECK(back.n == 5 && back.rows == 3 && back.cols == 4);
    CHECK(back.images && memcmp(back.images, images, sizeof images) == 0);
    CHECK(back.labels && memcmp(back.labels, labels, sizeof labels) == 0);
    nn_dataset_free(&back);
    CHECK(back.images == NULL && back.n == 0);
}

/* Big enough (2.4 MB) that the gzip reader has to grow its buffer. */
static void test_gzip_equals_raw(void) {
    const char *img = tmp("gz-images"), *lab = tmp("gz-labels");
    const char *img_gz = tmp("gz-images.gz"), *lab_gz = tmp("gz-labels.gz");
    write_pair(img, lab, 3000, 28, 28);
    size_t ilen, llen;
    uint8_t *ibytes = slurp(img, &ilen), *lbytes = slurp(lab, &llen);
    write_gzip(img_gz, ibytes, ilen);
    write_gzip(lab_gz, lbytes, llen);
    nn_dataset raw, gz;
    CHECKF(nn_dataset_load_files(&raw, img, lab) == 0, "%s", nn_last_error());
    CHECKF(nn_dataset_load_files(&gz, img_gz, lab_gz) == 0, "%s", nn_last_error());
    CHECK(raw.n == 3000 && gz.n == 3000 && gz.rows == 28 && gz.cols == 28);
    CHECK(raw.images && gz.images && memcmp(raw.images, gz.images, ilen - 16) == 0);
    CHECK(memcmp(raw.images, ibytes + 16, ilen - 16) == 0);
    CHECK(raw.labels && gz.labels && memcmp(raw.labels, gz.labels, 3000) == 0);
    nn_dataset_free(&raw);
    nn_dataset_free(&gz);
    free(ibytes);
    free(lbytes);
}

/* nn_dataset_load takes the raw file when there is one, else the .gz. */
static void test_load_finds_raw_then_gz(void) {
    write_pair(tmp("g-images-idx3-ubyte"), tmp("g-labels-idx1-ubyte"), 4, 2, 2);
    size_t len;
    uint8_t *bytes = slurp(tmp("g-images-idx3-ubyte"), &len);
    write_gzip(tmp("g-images-idx3-ubyte.gz"), bytes, len);
    remove(tmp("g-images-idx3-ubyte"));
    nn_dataset d;
    CHECKF(nn_dataset_load(&d, scratch_dir(), "g") == 0, "%s", nn_last_error());
    CHECK(d.n == 4 && d.images && memcmp(d.images, bytes + 16, 16) == 0);
    nn_dataset_free(&d);

    /* Both present: a raw file with different pixels wins. */
    bytes[16] ^= 0xff;
    write_bytes(tmp("g-images-idx3-ubyte"), bytes, len);
    CHECKF(nn_dataset_load(&d, scratch_dir(), "g") == 0, "%s", nn_last_error());
    CHECK(d.n == 4 && d.images && d.images[0] == bytes[16]);
    nn_dataset_free(&d);
    free(bytes);
}

static void test_limit_and_split(void) {
    uint8_t *images = malloc(10 * 4), *labels = malloc(10);
    for (int i = 0; i < 40; i++) images[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++) labels[i] = (uint8_t)i;
    nn_dataset d = {10, 2, 2, images, labels}, val;

    nn_dataset_limit(&d, 20);
    CHECK(d.n == 10);
    nn_dataset_limit(&d, 8);
    CHECK(d.n == 8);

    CHECK(nn_dataset_split(&d, 0, &val) == -1);
    CHECK(nn_dataset_split(&d, 8, &val) == -1);
    CHECK(strstr(nn_last_error(), "8 of 8") != NULL);
    CHECK(d.n == 8);
    CHECK(nn_dataset_split(&d, 3, &val) == 0);
    CHECK(d.n == 5 && val.n == 3 && val.rows == 2 && val.cols == 2);
    CHECK(val.labels[0] == 5 && val.labels[2] == 7);
    CHECK(val.images[0] == 20 && val.images[11] == 31);
    CHECK(d.labels[4] == 4 && d.images[19] == 19);
    nn_dataset_free(&val);
    nn_dataset_free(&d);
}

/* ---- malformed files ---- */

static void test_truncated(void) {
    const char *img = tmp("t-images"), *lab = tmp("t-labels");
    write_pair(img, lab, 3, 4, 4);
    write_idx(img, IMAGES, 3, (uint32_t[]){3, 4, 4}, 47);
    expect_failure(img, lab, img, "truncated: expected 64 bytes, found 63");
    write_idx(img, IMAGES, 3, (uint32_t[]){3, 4, 4}, 48);
    write_idx(lab, LABELS, 1, (uint32_t[]){3}, 0);
    expect_failure(img, lab, lab, "truncated: expected 11 bytes, found 8");
    /* Too short to hold even the header. */
    write_bytes(img, (const uint8_t[]){0, 0, 8, 3, 0, 0}, 6);
    expect_failure(img, lab, img, "truncated: expected at least 16 bytes, found 6");
    write_bytes(img, (const uint8_t[]){0}, 0);
    expect_failure(img, lab, img, "truncated: expected at least 16 bytes, found 0");
}

static void test_trailing_bytes(void) {
    const char *img = tmp("tb-images"), *lab = tmp("tb-labels");
    write_pair(img, lab, 3, 4, 4);
    write_idx(img, IMAGES, 3, (uint32_t[]){3, 4, 4}, 51);
    expect_failure(img, lab, img, "trailing bytes: expected 64 bytes, found 67");
    /* The same inside a gzip stream. */
    size_t len;
    uint8_t *bytes = slurp(img, &len);
    write_gzip(tmp("tb-images.gz"), bytes, len);
    free(bytes);
    expect_failure(tmp("tb-images.gz"), lab, tmp("tb-images.gz"), "trailing bytes");
}

static void test_wrong_magic(void) {
    const char *img = tmp("m-images"), *lab = tmp("m-labels");
    write_pair(img, lab, 2, 2, 2);
    /* Images and labels swapped. */
    expect_failure(lab, img, lab, "wrong magic number 2049, expected 2051");
    write_idx(img, 0x0D03, 3, (uint32_t[]){2, 2, 2}, 8); /* float pixels */
    expect_failure(img, lab, img, "wrong magic number 3331");
    const char *text = "P5\n2 2\n255\nabcd";
    write_bytes(img, (const uint8_t *)text, strlen(text)); /* not IDX at all */
    expect_failure(img, lab, img, "wrong magic");
}

static void test_bad_dimensions(void) {
    const char *img = tmp("d-images"), *lab = tmp("d-labels");
    write_pair(img, lab, 2, 2, 2);
    write_idx(img, IMAGES, 3, (uint32_t[]){2, 0, 2}, 0);
    expect_failure(img, lab, img, "rows is 0, must be in 1..1024");
    write_idx(img, IMAGES, 3, (uint32_t[]){2, 2, 1025}, 0);
    expect_failure(img, lab, img, "cols is 1025, must be in 1..1024");
    write_idx(img, IMAGES, 3, (uint32_t[]){0, 2, 2}, 0);
    expect_failure(img, lab, img, "count is 0");
    write_idx(img, IMAGES, 3, (uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu}, 0);
    expect_failure(img, lab, img, "count is 4294967295, must be in 1..10000000");
    write_idx(img, IMAGES, 3, (uint32_t[]){2, 2, 2}, 8);
    write_idx(lab, LABELS, 1, (uint32_t[]){10000001}, 4);
    expect_failure(img, lab, lab, "count is 10000001");

    /* The largest header allowed claims 10 TB; the file holds 16 bytes. */
    write_idx(img, IMAGES, 3, (uint32_t[]){10000000, 1024, 1024}, 0);
    expect_failure(img, lab, img, "truncated: expected 10485760000016 bytes, found 16");
    /* Gzipped, the size is only known by decompressing: memory must follow
     * the data actually there, not the header (a 10 TB allocation would abort). */
    size_t len;
    uint8_t *bytes = slurp(img, &len);
    write_gzip(tmp("d-images.gz"), bytes, len);
    free(bytes);
    expect_failure(tmp("d-images.gz"), lab, tmp("d-images.gz"),
                   "truncated: expected 10485760000016 bytes, found 16 after decompression");
}

static void test_count_mismatch(void) {
    const char *img = tmp("c-images"), *lab = tmp("c-labels");
    write_idx(img, IMAGES, 3, (uint32_t[]){3, 2, 2}, 12);
    write_idx(lab, LABELS, 1, (uint32_t[]){4}, 4);
    expect_failure(img, lab, lab, "count mismatch: 4 labels for the 3 images");
}

static void test_label_out_of_range(void) {
    const char *img = tmp("l-images"), *lab = tmp("l-labels");
    write_pair(img, lab, 3, 2, 2);
    write_bytes(lab, (const uint8_t[]){0, 0, 8, 1, 0, 0, 0, 3, 1, 9, 10}, 11);
    expect_failure(img, lab, lab, "label 10 of example 2 is out of range 0..9");
    write_bytes(lab, (const uint8_t[]){0, 0, 8, 1, 0, 0, 0, 3, 255, 0, 0}, 11);
    expect_failure(img, lab, lab, "label 255 of example 0 is out of range");
}

static void test_broken_gzip(void) {
    const char *img = tmp("bg-images"), *lab = tmp("bg-labels"), *gz = tmp("bg-images.gz");
    write_pair(img, lab, 50, 28, 28);
    size_t len, zlen;
    uint8_t *bytes = slurp(img, &len);
    write_gzip(gz, bytes, len);
    uint8_t *z = slurp(gz, &zlen);

    /* Cut in the middle of the compressed data. */
    write_bytes(gz, z, zlen / 2);
    expect_failure(gz, lab, gz, "truncated");
    /* All data there, but the trailer (CRC and length) cut off. */
    write_bytes(gz, z, zlen - 4);
    expect_failure(gz, lab, gz, "truncated");
    /* A wrong CRC in the trailer. */
    z[zlen - 8] ^= 0x55;
    write_bytes(gz, z, zlen);
    expect_failure(gz, lab, gz, "corrupt gzip data");
    z[zlen - 8] ^= 0x55;
    /* Garbage in the compressed data; zlib notices somewhere, the CRC at last. */
    for (size_t i = zlen / 3; i < zlen / 3 + 16; i++) z[i] ^= 0xa5;
    write_bytes(gz, z, zlen);
    expect_failure(gz, lab, gz, "");
    /* Only the gzip magic. */
    write_bytes(gz, z, 2);
    expect_failure(gz, lab, gz, "truncated");
    free(z);
    free(bytes);
}

static void test_missing_files(void) {
    const char *img = tmp("mf-images"), *lab = tmp("mf-labels");
    write_pair(img, lab, 2, 2, 2);
    const char *none = tmp("no-such-file");
    expect_failure(none, lab, none, "No such file or directory");
    expect_failure(img, none, none, "No such file or directory");
    expect_failure(scratch_dir(), lab, scratch_dir(), "not a regular file");

    nn_dataset d;
    char want[300];
    snprintf(want, sizeof want,
             "%s/nope-images-idx3-ubyte: not found (nor nope-images-idx3-ubyte.gz)", scratch_dir());
    CHECK(nn_dataset_load(&d, scratch_dir(), "nope") == -1);
    CHECKF(strcmp(nn_last_error(), want) == 0, "%s", nn_last_error());
    CHECK(d.images == NULL && d.n == 0);

    /* Images there, labels missing. */
    write_idx(tmp("half-images-idx3-ubyte"), IMAGES, 3, (uint32_t[]){2, 2, 2}, 8);
    CHECK(nn_dataset_load(&d, scratch_dir(), "half") == -1);
    CHECKF(strstr(nn_last_error(), "half-labels-idx1-ubyte: not found") != NULL, "%s",
           nn_last_error());
}

TEST_MAIN(TEST(test_real_mnist), TEST(test_real_fashion_mnist), TEST(test_save_load_roundtrip),
          TEST(test_gzip_equals_raw), TEST(test_load_finds_raw_then_gz), TEST(test_limit_and_split),
          TEST(test_truncated), TEST(test_trailing_bytes), TEST(test_wrong_magic),
          TEST(test_bad_dimensions), TEST(test_count_mismatch), TEST(test_label_out_of_range),
          TEST(test_broken_gzip), TEST(test_missing_files))
