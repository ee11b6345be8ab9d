/* Fuzzing regressions: every input that once crashed a parser, hung it or
 * made it allocate more than the file justified, and the malformed seeds of
 * fuzz/corpus/, are kept under tests/fixtures/fuzz/<target>/ (target as in
 * fuzz/fuzz_<target>.c) and must be refused cleanly: -1 and an error that
 * starts with the file's path. Adding a file there adds a case; the code
 * below need not change. The valid seeds of fuzz/corpus/ must load, so a
 * parser that refuses everything fails too. Run from the repository root
 * (scripts/run_tests.sh does). */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "nn/csv.h"
#include "nn/data.h"
#include "nn/error.h"
#include "nn/image.h"
#include "nn/model.h"
#include "nn/safetensors.h"
#include "core/util.h"

#define FIXTURES "tests/fixtures/fuzz"

static char scratch[64];

static void remove_scratch(void) {
    char path[128];
    const char *const names[] = {"images", "labels"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", scratch, names[i]);
        unlink(path);
    }
    rmdir(scratch);
}

/* scratch/<name> holding data; the folder is made once and removed at exit. */
static const char *scratch_file(const char *name, const unsigned char *data, size_t len) {
    static char paths[2][128];
    if (!scratch[0]) {
        strcpy(scratch, "/tmp/nn_test_fuzz_XXXXXX");
        if (!mkdtemp(scratch)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(remove_scratch);
    }
    char *path = paths[strcmp(name, "images") == 0 ? 0 : 1];
    snprintf(path, sizeof paths[0], "%s/%s", scratch, name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}

/* Each runner feeds one fixture to the parser the way its fuzz target does
 * and returns the parser's result, with *blame set to the path the error
 * must name. */

/* fuzz_idx's input: 2-byte little-endian k, k bytes of images, then labels. */
static int run_idx(const char *path, const char **blame) {
    size_t len;
    unsigned char *data = nn_read_file(path, &len, 0);
    CHECK(data && len >= 2);
    if (!data || len < 2) return 0;
    size_t k = ((size_t)data[0] | (size_t)data[1] << 8) % (len - 1);
    const char *images = scratch_file("images", data + 2, k);
    const char *labels = scratch_file("labels", data + 2 + k, len - 2 - k);
    free(data);
    nn_dataset ds;
    int rc = nn_dataset_load_files(&ds, images, labels);
    *blame = strncmp(nn_last_error(), images, strlen(images)) == 0 ? images : labels;
    if (rc == 0) nn_dataset_free(&ds);
    return rc;
}

static int run_safetensors(const char *path, const char **blame) {
    nn_safetensors st;
    int rc = nn_st_load(&st, path);
    *blame = path;
    if (rc == 0) nn_st_free(&st);
    return rc;
}

static int run_checkpoint(const char *path, const char **blame) {
    nn_model m;
    int rc = nn_model_load(&m, path);
    *blame = path;
    if (rc == 0) nn_model_free(&m);
    return rc;
}

static int run_image(const char *path, const char **blame) {
    float out[NN_MNIST_PIXELS];
    *blame = path;
    return nn_image_load_mnist(out, path);
}

static int run_csv(const char *path, const char **blame) {
    nn_csv t;
    int rc = nn_csv_load(&t, path);
    *blame = path;
    if (rc == 0) nn_csv_free(&t);
    return rc;
}

typedef int (*runner)(const char *, const char **);

/* Every file of FIXTURES/<target>/ must be refused; then each of the valid
 * seeds named (in fuzz/corpus/<target>/) must be accepted. */
static void run_target(const char *target, runner run, const char *const *valid) {
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES, target);
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort), files = 0;
    CHECKF(n >= 0, "%s: cannot read the folder", dir);
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            nn_error("no error");
            const char *blame = path;
            int rc = run(path, &blame);
            const char *msg = nn_last_error();
            size_t plen = strlen(blame);
            CHECKF(rc == -1, "%s: accepted (rc %d)", path, rc);
            CHECKF(strncmp(msg, blame, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0, "%s: error '%s'", path,
                   msg);
            files++;
        }
        free(names[i]);
    }
    if (n >= 0) free(names);
    CHECKF(files > 0, "%s holds no input to refuse", dir);
    for (; *valid; valid++) {
        char path[256];
        snprintf(path, sizeof path, "fuzz/corpus/%s/%s", target, *valid);
        const char *blame;
        CHECKF(run(path, &blame) == 0, "%s: refused: %s", path, nn_last_error());
    }
}

static void test_idx(void) {
    run_target("idx", run_idx, (const char *[]){"valid_raw", "valid_gzip", "valid_gzip_images_raw_labels", NULL});
}
static void test_safetensors(void) {
    run_target("safetensors", run_safetensors, (const char *[]){"two_f32", "empty", NULL});
}
static void test_checkpoint(void) {
    run_target("checkpoint", run_checkpoint,
               (const char *[]){"linear.safetensors", "linear_4_2", "mlp_4_3_2", "mlp_layernorm_gelu", NULL});
}
static void test_image(void) {
    run_target("image", run_image, (const char *[]){"7_gray_dark_on_light.png", "9_palette_4bit.png", "0_light_on_dark.pgm",
                                                    "p2_ascii.pgm", "5_ascii.pgm", NULL});
}
static void test_csv(void) {
    run_target("csv", run_csv, (const char *[]){"simple.csv", "stackloss.csv", "quoted_crlf.csv", NULL});
}

/* The two inputs found so far, by name, so that losing them fails loudly. */
static void test_known_findings_present(void) {
    CHECK(access(FIXTURES "/checkpoint/oom-layers-larger-than-file", R_OK) == 0);
    CHECK(access(FIXTURES "/image/png-header-larger-than-file.png", R_OK) == 0);
    nn_model m;
    CHECK(nn_model_load(&m, FIXTURES "/checkpoint/oom-layers-larger-than-file") == -1);
    CHECK(strstr(nn_last_error(), "the model has more than"));
    nn_image img;
    CHECK(nn_image_load(&img, FIXTURES "/image/png-header-larger-than-file.png") == -1);
    CHECK(strstr(nn_last_error(), "too short for the image size"));
}

TEST_MAIN(TEST(test_idx), TEST(test_safetensors), TEST(test_checkpoint), TEST(test_image), TEST(test_csv),
          TEST(test_known_findings_present))
