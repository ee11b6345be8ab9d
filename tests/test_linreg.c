/* nn linreg end to end (cmd_linreg called in-process with stdout and stderr
 * captured), and the CSV reader it uses (nn_csv_*) on good and malformed input. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "commands.h"
#include "nn/csv.h"
#include "nn/error.h"
#include "nn/linreg.h"
#include "core/util.h"

#define STACKLOSS "tests/fixtures/linreg/stackloss.csv"

/* ---- running the command ---------------------------------------------------- */

typedef struct {
    int rc;
    char *out, *err;
} run_result;

static char *slurp(FILE *f) {
    fflush(f);
    long n = ftell(f);
    char *s = malloc((size_t)n + 1);
    rewind(f);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    return s;
}

/* Runs "nn linreg ARGS..." (a NULL-terminated list) with stdout and stderr
 * sent to temporary files, and returns the exit status and both texts. */
static run_result run(const char *first, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "linreg";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    FILE *out = tmpfile(), *err = tmpfile();
    if (!out || !err) {
        perror("tmpfile");
        exit(1);
    }
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(out), 1);
    dup2(fileno(err), 2);
    run_result r;
    r.rc = cmd_linreg(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    fseek(out, 0, SEEK_END);
    fseek(err, 0, SEEK_END);
    r.out = slurp(out);
    r.err = slurp(err);
    fclose(out);
    fclose(err);
    return r;
}

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

/* The number after `key` in `text`, or NAN. */
static double number_after(const char *text, const char *key) {
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

/* The gradient-descent and least-squares values of a result row such as
 * "w[AIRFLOW]   0.7156   0.7156   5e-07" (the true value comes first for
 * synthetic data, so `skip` numbers are passed over). */
static int row_values(const char *out, const char *label, int skip, double *gd, double *ls) {
    const char *p = out;
    size_t len = strlen(label);
    while ((p = strstr(p, label)) != NULL) {
        if ((p == out || p[-1] == '\n') && p[len] == ' ') break;
        p += len;
    }
    if (!p) return -1;
    char *end;
    p += len;
    for (int k = 0; k < skip; k++) {
        strtod(p, &end);
        p = end;
    }
    *gd = strtod(p, &end);
    *ls = strtod(end, NULL);
    return 0;
}

/* Writes `text` to a fresh temporary file and returns its path (static buffer). */
static const char *temp_csv(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/nn_linreg_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        perror("temp_csv");
        exit(1);
    }
    close(fd);
    return path;
}

static bool usage_error_shape(const run_result *r) {
    return r->rc == 2 && strncmp(r->err, "nn linreg: ", 11) == 0 && strstr(r->err, "try 'nn linreg --help'");
}

/* ---- the command ----------------------------------------------------------------- */

static void test_default_run_agrees_with_least_squares(void) {
    run_result r = run(NULL);
    CHECKF(r.rc == 0, "rc %d, stderr: %s", r.rc, r.err);
    CHECK(strstr(r.out, "data: synthetic, 200 examples, 1 feature"));
    CHECK(strstr(r.out, "true"));
    double diff = number_after(r.out, "max |difference|");
    CHECKF(diff <= 1e-3, "max |difference| %g in:\n%s", diff, r.out);
    CHECK(strstr(r.out, "agree within 1e-3"));
    double gd, ls, truth;
    CHECK(row_values(r.out, "w[x0]", 0, &truth, &gd) == 0);
    CHECK(row_values(r.out, "w[x0]", 1, &gd, &ls) == 0);
    CHECK_NEAR(gd, ls, 1e-3);
    CHECK_NEAR(gd, truth, 0.1); /* noise 0.5 over 200 examples: the truth is recovered closely */
    CHECK(row_values(r.out, "b", 1, &gd, &ls) == 0);
    CHECK_NEAR(gd, ls, 1e-3);
    double r2_gd, r2_ls;
    CHECK(row_values(r.out, "R^2", 0, &r2_gd, &r2_ls) == 0);
    CHECK(r2_gd > 0.8 && r2_gd <= 1.0);
    CHECK_NEAR(r2_gd, r2_ls, 1e-6);
    CHECK(strstr(r.err, "step 2000/2000"));
    run_free(&r);
}

static void test_same_seed_same_output(void) {
    run_result a = run("--features", "3", "--seed", "7", "--steps", "300", NULL);
    run_result b = run("--features", "3", "--seed", "7", "--steps", "300", NULL);
    run_result c = run("--features", "3", "--seed", "8", "--steps", "300", NULL);
    CHECK(a.rc == 0 && b.rc == 0 && c.rc == 0);
    CHECK(strcmp(a.out, b.out) == 0);
    CHECK(strcmp(a.out, c.out) != 0);
    run_free(&a);
    run_free(&b);
    run_free(&c);
}

/* Brownlee's stack-loss data; the least-squares coefficients are the textbook
 * ones (e.g. R's lm(stack.loss ~ ., stackloss)). */
static void check_stackloss(const run_result *r) {
    CHECKF(r->rc == 0, "rc %d, stderr: %s", r->rc, r->err);
    double gd, ls;
    static const struct {
        const char *row;
        double value;
    } expected[] = {{"w[AIRFLOW]", 0.7156402}, {"w[WATERTEMP]", 1.2952861}, {"w[ACIDCONC]", -0.1521225},
                    {"b", -39.9196744}};
    for (int k = 0; k < 4; k++) {
        CHECKF(row_values(r->out, expected[k].row, 0, &gd, &ls) == 0, "no row %s in:\n%s", expected[k].row, r->out);
        CHECK_NEAR(ls, expected[k].value, 1e-6);
        CHECK_NEAR(gd, expected[k].value, 1e-3);
    }
    CHECK(row_values(r->out, "R^2", 0, &gd, &ls) == 0);
    CHECK_NEAR(ls, 0.9135769, 1e-6);
    CHECK(number_after(r->out, "max |difference|") <= 1e-3);
}

static void test_csv_stackloss_by_name_and_index(void) {
    run_result r = run("--csv", STACKLOSS, "--y", "STACKLOSS", "--x", "AIRFLOW,WATERTEMP,ACIDCONC", "--standardize",
                       NULL);
    check_stackloss(&r);
    CHECK(strstr(r.out, "21 examples, 3 features, target 'STACKLOSS'"));
    run_free(&r);
    r = run("--csv", STACKLOSS, "--y", "0", "--x", "1,2,3", "--standardize", NULL);
    check_stackloss(&r);
    run_free(&r);
    r = run("--csv=" STACKLOSS, "--y=STACKLOSS", "--standardize", NULL); /* --x defaults to the other columns */
    check_stackloss(&r);
    run_free(&r);
}

static void test_unscaled_csv_diverges_and_says_so(void) {
    run_result r = run("--csv", STACKLOSS, "--y", "STACKLOSS", NULL);
    CHECK(r.rc == 1);
    CHECKF(strstr(r.err, "nn: error: loss diverged at step ") && strstr(r.err, "try a smaller learning rate, or standardised features"),
           "stderr: %s", r.err);
    run_free(&r);
}

static void test_divergence_with_huge_lr(void) {
    run_result r = run("--lr", "100", NULL);
    CHECK(r.rc == 1);
    CHECKF(strstr(r.err, "nn: error: loss diverged at step ") && strstr(r.err, "(try a smaller learning rate)"), "stderr: %s",
           r.err);
    CHECK(strstr(r.out, "max |difference|") == NULL);
    run_free(&r);
}

static void test_every_optimiser_runs(void) {
    static const char *const opts[] = {"sgd", "momentum", "nesterov", "adam", "adamw"};
    for (int k = 0; k < 5; k++) {
        run_result r = run("--opt", opts[k], "--features", "2", NULL);
        CHECKF(r.rc == 0, "--opt %s: rc %d: %s", opts[k], r.rc, r.err);
        CHECK(strstr(r.out, opts[k]));
        /* adamw's decoupled weight decay moves the answer off least squares */
        if (k < 4) CHECKF(number_after(r.out, "max |difference|") <= 1e-3, "--opt %s:\n%s", opts[k], r.out);
        run_free(&r);
    }
}

static void test_minibatch(void) {
    run_result r = run("--epochs", "20", "--batch-size", "50", "--lr", "0.05", NULL);
    CHECKF(r.rc == 0, "%s", r.err);
    CHECK(strstr(r.out, "20 epochs of mini-batches of 50 (80 updates)"));
    /* noisy, but close */
    CHECK(number_after(r.out, "max |difference|") < 0.1);
    run_free(&r);
}

static void test_bad_csv_inputs(void) {
    static const struct {
        const char *text, *y, *message;
    } cases[] = {
        {"", "b", ": empty (no header row)"},
        {"\n\n", "b", ": empty (no header row)"},
        {"a,b\n", "b", ": no data rows after the header"},
        {"a,b\n1,2\n3\n", "b", ": row 2 (line 3): 1 field, expected 2 as in the header"},
        {"a,b\n1,2\n3,4,5\n", "b", ": row 2 (line 3): 3 fields, expected 2 as in the header"},
        {"a,b\n1,2\n3,x1\n", "b", ": row 2 (line 3), column 'b': 'x1' is not a number"},
        {"a,b\n1,2\nabc,4\n", "b", ": row 2 (line 3), column 'a': 'abc' is not a number"},
        {"a,b\n1,2\n\n3,\n", "b", ": row 2 (line 4), column 'b': empty cell"},
        {"a,b\n1,2\n3,nan\n", "b", ": row 2 (line 3), column 'b': 'nan' is not a finite number"},
        {"a,b\n1,2\n3,1e999\n", "b", ": row 2 (line 3), column 'b': '1e999' is not a finite number"},
        {"a,b\n1,2\n3,4\n", "zz", ": no column 'zz' (columns: a, b)"},
        {"a,b\n1,2\n3,4\n", "2", ": column index 2 out of range (the file has 2 columns, 0 to 1)"},
        {"a,\"b\n1,2\n", "b", ": line 1: unterminated quoted field"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const char *path = temp_csv(cases[k].text);
        run_result r = run("--csv", path, "--y", cases[k].y, "--standardize", NULL);
        char expected[256];
        snprintf(expected, sizeof expected, "nn: error: %s%s\n", path, cases[k].message);
        CHECKF(r.rc == 1 && strstr(r.err, expected), "case %zu: rc %d, stderr '%s', expected '%s'", k, r.rc, r.err,
               expected);
        CHECK(r.out[0] == '\0');
        run_free(&r);
        unlink(path);
    }
    run_result r = run("--csv", "/nonexistent/x.csv", "--y", "a", NULL);
    CHECK(r.rc == 1 && strstr(r.err, "nn: error: /nonexistent/x.csv: No such file"));
    run_free(&r);
    /* a missing feature column */
    r = run("--csv", STACKLOSS, "--y", "STACKLOSS", "--x", "AIRFLOW,WIND", NULL);
    CHECKF(r.rc == 1 && strstr(r.err, "no column 'WIND' (columns: STACKLOSS, AIRFLOW, WATERTEMP, ACIDCONC)"), "%s",
           r.err);
    run_free(&r);
}

static void test_singular_design_warns_and_still_reports(void) {
    const char *path = temp_csv("a,b,c\n1,1,2\n2,2,4.1\n3,3,5.9\n4,4,8.2\n5,5,9.8\n");
    run_result r = run("--csv", path, "--y", "c", "--standardize", NULL);
    CHECKF(r.rc == 0, "rc %d: %s", r.rc, r.err);
    CHECKF(strstr(r.err, "nn: warning: the design matrix [X 1] is singular (rank 2 of 3 columns)") &&
               strstr(r.err, "features 'a' and 'b' are identical"),
           "stderr: %s", r.err);
    CHECK(strstr(r.out, "rank 2 of 3"));
    CHECK(strstr(r.out, "the design is singular"));
    /* both answers fit equally well: w[a] + w[b] is what the data determine */
    double gd_a, ls_a, gd_b, ls_b, r2_gd, r2_ls;
    CHECK(row_values(r.out, "w[a]", 0, &gd_a, &ls_a) == 0);
    CHECK(row_values(r.out, "w[b]", 0, &gd_b, &ls_b) == 0);
    CHECK_NEAR(gd_a + gd_b, ls_a + ls_b, 1e-3);
    CHECK(row_values(r.out, "R^2", 0, &r2_gd, &r2_ls) == 0);
    CHECK_NEAR(r2_gd, r2_ls, 1e-6);
    run_free(&r);

    /* a constant feature duplicates the intercept */
    unlink(path);
    path = temp_csv("a,k,y\n1,7,2\n2,7,4.1\n3,7,5.9\n4,7,8.2\n");
    r = run("--csv", path, "--y", "y", "--standardize", NULL);
    CHECK(r.rc == 0);
    CHECKF(strstr(r.err, "feature 'k' is constant"), "%s", r.err);
    run_free(&r);
    unlink(path);
}

static void test_usage_errors(void) {
    static const char *const cases[][7] = {
        {"--bogus", NULL},
        {"stray", NULL},
        {"--steps", "10", "--epochs", "2", NULL},
        {"--batch-size", "8", NULL},
        {"--lr", "abc", NULL},
        {"--lr", "0", NULL},
        {"--lr", NULL},
        {"--steps", "0", NULL},
        {"--n", "-5", NULL},
        {"--opt", "rmsprop", NULL},
        {"--plot", "out.jpg", NULL},
        {"--x", "a", NULL},
        {"--csv", STACKLOSS, NULL},
        {"--csv", STACKLOSS, "--y", "STACKLOSS", "--n", "5", NULL},
        {"--csv", STACKLOSS, "--y", "STACKLOSS", "--x", "AIRFLOW,", NULL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const char *const *c = cases[k];
        run_result r = run(c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
        CHECKF(usage_error_shape(&r), "case %zu (%s): rc %d, stderr '%s'", k, c[0], r.rc, r.err);
        run_free(&r);
    }
    run_result r = run("--help", NULL);
    CHECK(r.rc == 0 && strncmp(r.out, "usage: nn linreg", 16) == 0 && r.err[0] == '\0');
    run_free(&r);
}

static void test_graph_and_plot_files(void) {
    char dot[] = "/tmp/nn_linreg_graph_XXXXXX", png[64];
    int fd = mkstemp(dot);
    close(fd);
    snprintf(png, sizeof png, "%s.png", dot);
    run_result r = run("--csv", STACKLOSS, "--y", "STACKLOSS", "--x", "AIRFLOW", "--standardize", "--graph", dot,
                       "--plot", png, NULL);
    CHECKF(r.rc == 0, "%s", r.err);
    size_t len = 0;
    char *text = (char *)nn_read_file(dot, &len, 0);
    CHECK(text != NULL);
    if (text) {
        CHECK(strncmp(text, "digraph", 7) == 0);
        CHECK(strstr(text, "label=\"X\\n[21, 1]\""));
        CHECK(strstr(text, "label=\"y\\n[21, 1]\""));
        CHECK(strstr(text, "label=\"param w\\n[1, 1]\""));
        CHECK(strstr(text, "label=\"param b\\n[1]\""));
        CHECK(strstr(text, "linear") && strstr(text, "mse"));
        free(text);
    }
    unsigned char *img = nn_read_file(png, &len, 0);
    CHECK(img && len > 1000 && memcmp(img, "\x89PNG", 4) == 0);
    free(img);
    run_free(&r);
    unlink(dot);
    unlink(png);

    r = run("--steps", "5", "--graph", "/nonexistent/dir/g.dot", NULL);
    CHECK(r.rc == 1 && strstr(r.err, "nn: error: /nonexistent/dir/g.dot"));
    run_free(&r);
}

/* ---- the CSV reader ------------------------------------------------------------ */

static int parse(nn_csv *t, const char *text) { return nn_csv_parse(t, text, strlen(text), "t.csv"); }

static void test_csv_quotes_bom_crlf_blank_lines(void) {
    nn_csv t;
    const char *text = "\xEF\xBB\xBF\"name\",\"x, y\" , z\r\n"
                       "\"say \"\"hi\"\"\",  1.5 ,-2e3\r\n"
                       "\r\n"
                       "  \n"
                       "\"multi\nline\",0x10,  7\n";
    CHECKF(parse(&t, text) == 0, "%s", nn_last_error());
    CHECK(t.n_cols == 3 && t.n_rows == 2);
    if (t.n_rows == 2) {
        CHECK(strcmp(t.header[0], "name") == 0 && strcmp(t.header[1], "x, y") == 0 && strcmp(t.header[2], "z") == 0);
        CHECK(strcmp(t.cells[0], "say \"hi\"") == 0);
        CHECK(strcmp(t.cells[3], "multi\nline") == 0);
        CHECK(t.line[0] == 2 && t.line[1] == 5);
        CHECK(nn_csv_column(&t, "x, y") == 1 && nn_csv_column(&t, "2") == 2);
        double v[2];
        CHECK(nn_csv_numbers(&t, 1, v) == 0 && v[0] == 1.5 && v[1] == 16.0);
        CHECK(nn_csv_numbers(&t, 2, v) == 0 && v[0] == -2000.0 && v[1] == 7.0);
        CHECK(nn_csv_numbers(&t, 0, v) == -1);
        CHECKF(strcmp(nn_last_error(), "t.csv: row 1 (line 2), column 'name': 'say \"hi\"' is not a number") == 0,
               "%s", nn_last_error());
    }
    nn_csv_free(&t);
    /* no newline at the end, an empty last field */
    CHECK(parse(&t, "a,b\n1,") == 0 && t.n_rows == 1 && strcmp(t.cells[1], "") == 0);
    nn_csv_free(&t);
}

static void test_csv_malformed(void) {
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"", "t.csv: empty (no header row)"},
        {" \r\n\t\n", "t.csv: empty (no header row)"},
        {"a,b", "t.csv: no data rows after the header"},
        {"a,b\n1,2,3\n", "t.csv: row 1 (line 2): 3 fields, expected 2 as in the header"},
        {"a,b\n1\n", "t.csv: row 1 (line 2): 1 field, expected 2 as in the header"},
        {"a,\"b\n1,2\n", "t.csv: line 1: unterminated quoted field"},
        {"a,\"b\"x\n1,2\n", "t.csv: line 1: unexpected character after a closing quote"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        nn_csv t;
        int rc = parse(&t, cases[k].text);
        CHECKF(rc == -1 && strcmp(nn_last_error(), cases[k].message) == 0, "case %zu: rc %d, '%s'", k, rc,
               nn_last_error());
        CHECK(t.cells == NULL && t.n_rows == 0);
    }
    nn_csv t;
    CHECK(nn_csv_parse(&t, "a,b\n1,\0002\n", 9, "t.csv") == -1);
    CHECK(strcmp(nn_last_error(), "t.csv: line 2: contains a NUL byte (not a text file?)") == 0);

    CHECK(parse(&t, "x,y,x\n1,2,3\n") == 0);
    CHECK(nn_csv_column(&t, "x") == -1);
    CHECK(strstr(nn_last_error(), "column name 'x' appears 2 times in the header (use its index)"));
    CHECK(nn_csv_column(&t, "y") == 1 && nn_csv_column(&t, "0") == 0);
    CHECK(nn_csv_column(&t, "99999999999") == -1 && strstr(nn_last_error(), "out of range"));
    CHECK(nn_csv_column(&t, "-1") == -1 && strstr(nn_last_error(), "no column '-1'"));
    nn_csv_free(&t);
}

/* The library without the command: a noiseless line y = 2 x0 - 3 x1 + 0.5
 * is recovered exactly by least squares, and closely by Adam. */
static void test_library_recovers_a_known_line(void) {
    nn_linreg_data ds = {.n = 50, .d = 2};
    ds.x = malloc(100 * sizeof(double));
    ds.y = malloc(50 * sizeof(double));
    for (int i = 0; i < 50; i++) {
        ds.x[2 * i] = (i % 7) - 3.0;
        ds.x[2 * i + 1] = ((i * 5) % 11) / 4.0 - 1.0;
        ds.y[i] = 2 * ds.x[2 * i] - 3 * ds.x[2 * i + 1] + 0.5;
    }
    nn_linreg_fit ls = {0}, gd = {0};
    nn_lstsq_info info;
    CHECK(nn_linreg_least_squares(&ds, &ls, &info) == 0);
    CHECK(info.rank == 3 && info.cols == 3);
    CHECK_NEAR(ls.w[0], 2.0, 1e-9);
    CHECK_NEAR(ls.w[1], -3.0, 1e-9);
    CHECK_NEAR(ls.b, 0.5, 1e-9);
    nn_linreg_evaluate(&ds, &ls);
    CHECK_NEAR(ls.r2, 1.0, 1e-12);
    nn_linreg_gd_config cfg = {.opt = NN_OPT_ADAM, .lr = 0.05, .steps = 3000, .seed = 1};
    double *loss = NULL;
    CHECKF(nn_linreg_gd(&ds, &cfg, &gd, &loss) == 0, "%s", nn_last_error());
    CHECK(loss && loss[2999] < 1e-6 && loss[2999] < loss[0]);
    CHECK(gd.w && fabs(gd.w[0] - 2.0) < 1e-3 && fabs(gd.w[1] + 3.0) < 1e-3 && fabs(gd.b - 0.5) < 1e-3);
    /* A learning rate far too big is refused with the reason. */
    nn_linreg_fit bad = {0};
    cfg = (nn_linreg_gd_config){.opt = NN_OPT_SGD, .lr = 100, .steps = 100, .seed = 1};
    CHECK(nn_linreg_gd(&ds, &cfg, &bad, NULL) == -1 && strstr(nn_last_error(), "diverged") && bad.w == NULL);
    free(ds.x);
    free(ds.y);
    nn_linreg_data none;
    CHECK(nn_linreg_synthetic(&none, 0, 1, 0.1, 1) == -1 && none.x == NULL);
    free(loss);
    nn_linreg_fit_free(&ls);
    nn_linreg_fit_free(&gd);
}

TEST_MAIN(TEST(test_library_recovers_a_known_line), TEST(test_default_run_agrees_with_least_squares), TEST(test_same_seed_same_output),
          TEST(test_csv_stackloss_by_name_and_index), TEST(test_unscaled_csv_diverges_and_says_so),
          TEST(test_divergence_with_huge_lr), TEST(test_every_optimiser_runs), TEST(test_minibatch),
          TEST(test_bad_csv_inputs), TEST(test_singular_design_warns_and_still_reports), TEST(test_usage_errors),
          TEST(test_graph_and_plot_files), TEST(test_csv_quotes_bom_crlf_blank_lines), TEST(test_csv_malformed))
