/* End-to-end tests of `nn experiment` on tiny settings: it writes all its
 * files with the right columns, is deterministic, rejects bad flags with exit
 * status 2 and an unusable output folder with 1. Runs the binary named by $NN
 * (default build/nn). A small synthetic dataset (written here) keeps the
 * tests fast and independent of data/mnist; real MNIST is used as well when
 * it is present. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "nn/data.h"

static char tmpdir[64];
static char out_text[1 << 16], err_text[1 << 16];

/* The scratch folder goes when the tests end. */
static void cleanup(void) {
    if (!tmpdir[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmpdir);
}

static const char *tmp(const char *name) {
    static char buf[8][256];
    static int i;
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/nn_test_experiment_XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(cleanup);
    }
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
    return buf[i];
}

__attribute__((noinline)) static void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Runs "$NN experiment ARGS"; returns the exit status and leaves stdout and
 * stderr in out_text and err_text. */
static int nn_experiment(const char *fmt, ...) {
    const char *bin = getenv("NN") ? getenv("NN") : "build/nn";
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s experiment %s >%s 2>%s </dev/null", bin, args, tmp("out"), tmp("err"));
    int status = system(cmd);
    slurp(tmp("out"), out_text, sizeof out_text);
    slurp(tmp("err"), err_text, sizeof err_text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool have_mnist(void) {
    struct stat st;
    return stat("data/mnist/t10k-images-idx3-ubyte", &st) == 0 || stat("data/mnist/t10k-images-idx3-ubyte.gz", &st) == 0;
}

/* A learnable synthetic dataset in `dir`: 28x28 images, class k is a bright
 * horizontal bar at row 2 + 2k plus noise. */
static void write_synthetic(const char *dir) {
    if (mkdir(dir, 0777) != 0) return; /* written already */
    const char *splits[2] = {"train", "t10k"};
    int counts[2] = {300, 100};
    uint32_t state = 12345;
    for (int s = 0; s < 2; s++) {
        int n = counts[s];
        nn_dataset d = {.n = n, .rows = 28, .cols = 28};
        d.images = malloc((size_t)n * 784);
        d.labels = malloc((size_t)n);
        for (int i = 0; i < n; i++) {
            int k = (i * 7 + s) % 10;
            d.labels[i] = (uint8_t)k;
            for (int p = 0; p < 784; p++) {
                state = state * 1664525u + 1013904223u;
                int v = (int)(state >> 27); /* 0..31 noise */
                if (p / 28 == 2 + 2 * k || p / 28 == 3 + 2 * k) v += 200;
                d.images[(size_t)i * 784 + p] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
        CHECK(nn_dataset_save(&d, dir, splits[s]) == 0);
        nn_dataset_free(&d);
    }
}

/* The synthetic dataset's folder, written on first use. */
static const char *synth(void) {
    write_synthetic(tmp("synth"));
    return tmp("synth");
}

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Counts the fields of a CSV line, honouring double quotes. */
static int csv_fields(const char *line) {
    int n = 1;
    bool quoted = false;
    for (const char *p = line; *p && *p != '\n'; p++) {
        if (*p == '"') quoted = !quoted;
        else if (*p == ',' && !quoted) n++;
    }
    return n;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The field `col` (0-based, no quotes inside) of the line starting at `line`. */
static double csv_field(const char *line, int col) {
    bool quoted = false;
    for (const char *p = line; *p && *p != '\n'; p++) {
        if (col == 0) return atof(p);
        if (*p == '"') quoted = !quoted;
        else if (*p == ',' && !quoted) col--;
    }
    return col == 0 ? 0.0 : NAN;
}

static const char *const results_header =
    "config,description,runs,diverged,final_test_acc_mean,final_test_acc_std,best_test_acc_mean,best_test_acc_std,"
    "best_epoch_mean,final_train_acc_mean,gap_mean,gap_std,target_acc,epochs_to_target_mean,runs_reaching_target,"
    "seconds_mean,seconds_std\n";
static const char *const runs_header =
    "config,seed,diverged,epochs,final_train_acc,final_test_acc,best_test_acc,best_epoch,gap,epochs_to_target,"
    "seconds\n";
static const char *const epochs_header = "config,seed,epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds\n";

/* Checks every output file of a study of `configs` (names in order) x
 * `seeds` seeds x `epochs` epochs in `dir`. */
static void check_outputs(const char *dir, const char *const *configs, int n_configs, int seeds, int epochs) {
    static char buf[1 << 17];
    char path[512];

    snprintf(path, sizeof path, "%s/results.csv", dir);
    slurp(path, buf, sizeof buf);
    CHECKF(starts_with(buf, results_header), "results.csv header: %.300s", buf);
    CHECKF(count_lines(buf) == 1 + n_configs, "results.csv has %d lines for %d configurations", count_lines(buf),
           n_configs);
    const char *line = strchr(buf, '\n');
    for (int c = 0; c < n_configs && line; c++) {
        line++;
        int want = csv_fields(results_header);
        CHECKF(csv_fields(line) == want, "results.csv row %d has %d fields, not %d: %.200s", c + 1, csv_fields(line),
               want, line);
        CHECKF(strncmp(line, configs[c], strlen(configs[c])) == 0 && line[strlen(configs[c])] == ',',
               "results.csv row %d is not %s: %.60s", c + 1, configs[c], line);
        CHECK(csv_field(line, 2) == seeds);
        double acc = csv_field(line, 4), best = csv_field(line, 6);
        CHECKF(acc > 0.0 && acc <= 1.0, "final accuracy %g is not a fraction", acc);
        CHECKF(best >= acc && best <= 1.0, "best accuracy %g < final %g", best, acc);
        line = strchr(line, '\n');
    }

    snprintf(path, sizeof path, "%s/runs.csv", dir);
    slurp(path, buf, sizeof buf);
    CHECKF(starts_with(buf, runs_header), "runs.csv header: %.200s", buf);
    CHECKF(count_lines(buf) == 1 + n_configs * seeds, "runs.csv has %d lines", count_lines(buf));

    snprintf(path, sizeof path, "%s/epochs.csv", dir);
    slurp(path, buf, sizeof buf);
    CHECKF(starts_with(buf, epochs_header), "epochs.csv header: %.200s", buf);
    CHECKF(count_lines(buf) == 1 + n_configs * seeds * epochs, "epochs.csv has %d lines", count_lines(buf));

    snprintf(path, sizeof path, "%s/results.md", dir);
    slurp(path, buf, sizeof buf);
    CHECK(strstr(buf, "| configuration | what changes | final test acc (%) | best test acc (%) | "
                      "train − test gap (pp) | epochs to ") != NULL);
    CHECK(strstr(buf, "seconds per run |") != NULL);
    CHECK(strstr(buf, "test_accuracy.png") != NULL && strstr(buf, "gap.png") != NULL);
    for (int c = 0; c < n_configs; c++) {
        char row[64];
        snprintf(row, sizeof row, "\n| %s | ", configs[c]);
        CHECKF(strstr(buf, row) != NULL, "results.md has no row for %s", configs[c]);
    }
    if (seeds > 1) CHECK(strstr(buf, " ± ") != NULL);

    const char *pngs[2] = {"test_accuracy.png", "gap.png"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, pngs[i]);
        char magic[8] = {0};
        slurp(path, magic, sizeof magic);
        CHECKF(memcmp(magic, "\x89PNG", 4) == 0, "%s is not a PNG", path);
        struct stat st;
        CHECKF(stat(path, &st) == 0 && st.st_size > 5000, "%s is missing or nearly empty", path);
    }
}

static void test_synthetic_study(void) {
    int rc = nn_experiment("--data %s --epochs 2 --hidden 32 --configs baseline,adamw,all --seeds 2 --threads 1 "
                           "--out %s",
                           synth(), tmp("study"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    const char *configs[] = {"baseline", "adamw", "all"};
    check_outputs(tmp("study"), configs, 3, 2, 2);
    /* the table on stdout, progress with run numbers and an ETA on stderr */
    CHECK(strstr(out_text, "| baseline | ") != NULL);
    CHECKF(strstr(err_text, "[1/6] baseline seed 1 epoch") != NULL, "%.400s", err_text);
    CHECK(strstr(err_text, "[6/6] all seed 2 epoch") != NULL);
    CHECK(strstr(err_text, "ETA") != NULL);
}

static void test_deterministic(void) {
    /* same flags, same numbers (the seconds columns aside) */
    static char a[1 << 16], b[1 << 16];
    const char *args = "--data %s --epochs 2 --hidden 16 --configs dropout,layernorm --seeds 1 --seed 7 "
                       "--threads 1 --out %s";
    CHECK(nn_experiment(args, synth(), tmp("det1")) == 0);
    CHECK(nn_experiment(args, synth(), tmp("det2")) == 0);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/epochs.csv", tmp("det1"));
    snprintf(p2, sizeof p2, "%s/epochs.csv", tmp("det2"));
    slurp(p1, a, sizeof a);
    slurp(p2, b, sizeof b);
    /* drop the last column (seconds) of every line before comparing */
    for (char *s = a; (s = strchr(s, ',')) != NULL;) {
        char *nl = strchr(s, '\n'), *last = s;
        for (char *q = s; q < nl; q++)
            if (*q == ',') last = q;
        memset(last, ' ', (size_t)(nl - last));
        s = nl + 1;
    }
    for (char *s = b; (s = strchr(s, ',')) != NULL;) {
        char *nl = strchr(s, '\n'), *last = s;
        for (char *q = s; q < nl; q++)
            if (*q == ',') last = q;
        memset(last, ' ', (size_t)(nl - last));
        s = nl + 1;
    }
    CHECK(strlen(a) > 100);
    CHECKF(strcmp(a, b) == 0, "two identical studies differ:\n%s\n---\n%s", a, b);
}

static void test_overfit_defaults(void) {
    int rc = nn_experiment("--overfit --data %s --train-limit 100 --epochs 3 --hidden 16 --configs baseline,dropout "
                           "--seeds 1 --threads 1 --out %s",
                           synth(), tmp("overfit"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    const char *configs[] = {"baseline", "dropout"};
    check_outputs(tmp("overfit"), configs, 2, 1, 3);
    CHECK(strstr(out_text, "over-fitting study") != NULL);
    CHECK(strstr(out_text, "epochs to 85% |") != NULL);
    CHECK(strstr(out_text, "100 training images") != NULL);
}

static void test_mnist_tiny(void) {
    if (!have_mnist()) return;
    int rc = nn_experiment("--train-limit 500 --epochs 2 --hidden 32 --configs baseline,adamw --seeds 1 "
                           "--threads 1 --out %s",
                           tmp("mnist"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    const char *configs[] = {"baseline", "adamw"};
    check_outputs(tmp("mnist"), configs, 2, 1, 2);
    CHECK(strstr(out_text, "500 training images") != NULL);
}

/* An MLP and CNNs in one study. */
static void test_mlp_and_cnn(void) {
    if (!have_mnist()) return;
    int rc = nn_experiment("--train-limit 500 --epochs 1 --hidden 32 --configs baseline,convnet,convnet-augment "
                           "--seeds 1 --threads 1 --out %s",
                           tmp("cnn"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    const char *configs[] = {"baseline", "convnet", "convnet-augment"};
    check_outputs(tmp("cnn"), configs, 3, 1, 1);
    CHECK(strstr(out_text, "and CNNs") != NULL);
}

static void test_help_and_usage_errors(void) {
    CHECK(nn_experiment("--help") == 0);
    const char *names[] = {"baseline", "momentum", "adam", "adamw", "dropout", "layernorm", "gelu", "all"};
    for (int i = 0; i < 8; i++) CHECKF(strstr(out_text, names[i]) != NULL, "--help does not list %s", names[i]);
    CHECK(strstr(out_text, "--overfit") != NULL && strstr(out_text, "--seeds") != NULL);
    static const char *const bad[] = {
        "--seeds 0", "--seeds x", "--epochs 0", "--epochs", "--hidden 32,,32", "--hidden 0", "--batch-size 0",
        "--train-limit -5", "--configs nope", "--configs baseline,baseline", "--configs ''", "--threads 0",
        "--target 101", "--dataset cifar", "--out ''", "--frobnicate", "stray",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = nn_experiment("%s --out %s", bad[i], tmp("never"));
        CHECKF(rc == 2, "'%s' exited %d, not 2", bad[i], rc);
        CHECKF(strncmp(err_text, "nn experiment: ", 15) == 0, "'%s': %s", bad[i], err_text);
    }
    struct stat st;
    CHECKF(stat(tmp("never"), &st) != 0, "a usage error created the output folder");
}

static void test_runtime_errors(void) {
    /* an output "folder" that is a file: exit 1 before any training */
    FILE *f = fopen(tmp("afile"), "w");
    fputs("x\n", f);
    fclose(f);
    char out[512];
    snprintf(out, sizeof out, "%s/sub", tmp("afile"));
    int rc = nn_experiment("--data %s --epochs 1 --hidden 8 --configs baseline --seeds 1 --out %s", synth(), out);
    CHECK(rc == 1);
    CHECKF(strncmp(err_text, "nn: error: ", 11) == 0 && strstr(err_text, "afile"), "%s", err_text);
    CHECK(strstr(err_text, "epoch") == NULL);
    /* missing data */
    rc = nn_experiment("--data %s --epochs 1 --configs baseline --out %s", tmp("nodata"), tmp("nd"));
    CHECK(rc == 1);
    CHECKF(strncmp(err_text, "nn: error: ", 11) == 0 && strstr(err_text, "nodata"), "%s", err_text);
}

TEST_MAIN(TEST(test_synthetic_study), TEST(test_deterministic), TEST(test_overfit_defaults), TEST(test_mnist_tiny),
          TEST(test_mlp_and_cnn), TEST(test_help_and_usage_errors), TEST(test_runtime_errors))
