/* nn linreg: linear regression by gradient descent through the autograd,
 * checked against the closed-form least squares (the work is nn/linreg.h's;
 * this file reads the flags and prints). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/linreg.h"
#include "plot/plot.h"
#include "core/util.h"

#define CMD "linreg"

typedef struct linreg_args {
    long n;
    int features;
    double noise;
    const char *csv, *x_cols, *y_col, *plot;
    nn_linreg_gd_config gd;
} linreg_args;

static const char *const usage_text =
    "usage: nn linreg [OPTIONS]\n"
    "\n"
    "Fits y = X w + b by gradient descent on the mean squared error, with the\n"
    "gradient computed by backpropagation through the computation graph, and\n"
    "checks the answer against the closed-form least-squares solution (LAPACK).\n"
    "\n";
static const char *const epilogue = "\nResults go to stdout, progress and warnings to stderr.\n";

FLAG_ENUM_FUNCS(optim, nn_optim_kind, nn_optim_parse, nn_optim_name)

/* The flag table, allocated (the caller frees it). */
static flag *make_table(linreg_args *a) {
    const flag table[] = {
        FLAG_SECTION("data (synthetic by default: x ~ N(0, 1), y = x w + b + noise):"),
        {"n", FLAG_LONG, &a->n, 1, NN_LINREG_MAX_EXAMPLES, .metavar = "N", .help = "examples"},
        {"features", FLAG_INT, &a->features, 1, NN_LINREG_MAX_FEATURES, .metavar = "D", .help = "features"},
        {"noise", FLAG_DOUBLE, &a->noise, 0, 1e6, .metavar = "S",
         .help = "standard deviation of the noise added to y"},
        {"csv", FLAG_STRING, &a->csv, .metavar = "FILE", .help = "read a CSV file with a header row instead"},
        {"y", FLAG_STRING, &a->y_col, .metavar = "COL",
         .help = "target column: header name or 0-based index (needed with --csv)"},
        {"x", FLAG_STRING, &a->x_cols, .metavar = "COL[,COL...]", .def = "every other column",
         .help = "feature columns"},
        {"standardize", FLAG_SWITCH, &a->gd.standardize,
         .help = "train on features scaled to mean 0 and variance 1;\n"
                 "the coefficients are still reported in the original units"},
        FLAG_SECTION("\ntraining:"),
        {"lr", FLAG_DOUBLE, &a->gd.lr, 1e-12, 1e6, .metavar = "LR", .help = "learning rate"},
        {"steps", FLAG_LONG, &a->gd.steps, 1, NN_LINREG_MAX_UPDATES, .metavar = "N",
         .help = "full-batch gradient-descent steps"},
        {"epochs", FLAG_LONG, &a->gd.epochs, 1, NN_LINREG_MAX_UPDATES, .metavar = "E", .def = "",
         .help = "mini-batch training instead: E passes over the shuffled data"},
        {"batch-size", FLAG_LONG, &a->gd.batch_size, 1, NN_LINREG_MAX_EXAMPLES, .metavar = "B",
         .help = "examples per mini-batch with --epochs"},
        {"opt", FLAG_CUSTOM, &a->gd.opt, .parse = parse_optim, .show = show_optim,
         .metavar = "sgd|momentum|nesterov|adam|adamw", .help = "optimiser"},
        {"seed", FLAG_U64, &a->gd.seed, 0, 2147483647, .metavar = "S",
         .help = "seed of the synthetic data, initial weights and shuffling"},
        FLAG_SECTION("\noutput:"),
        {"plot", FLAG_CUSTOM, &a->plot, .parse = flag_picture, .metavar = "FILE", .def = "",
         .help = ".png or .svg: the points and the fitted line (one feature)\n"
                 "or predicted against actual (several), and the loss per step"},
        {"graph", FLAG_STRING, &a->gd.graph_path, .metavar = "FILE",
         .help = "the computation graph of one MSE evaluation (Graphviz DOT;\n"
                 "render it with: dot -Tpng FILE -o graph.png)"},
    };
    return flags_append(NULL, table, sizeof table / sizeof *table);
}

/* About ten lines on stderr: the first update and every tenth of the run. */
static void log_step(void *user, long step, long updates, double loss) {
    (void)user;
    long every = updates >= 10 ? updates / 10 : 1;
    if (step == 1 || step % every == 0)
        fprintf(stderr, "step %*ld/%ld  loss %.6g\n", (int)snprintf(NULL, 0, "%ld", updates), step, updates, loss);
}

/* What the flags mean together: -1 to go on, else the exit status of a usage error. */
static int check_args(const linreg_args *a, const flag *table) {
    bool epochs = flag_given(table, "epochs");
    if (flag_given(table, "steps") && epochs) return usage_error(CMD, "--steps and --epochs exclude each other");
    if (flag_given(table, "batch-size") && !epochs)
        return usage_error(CMD, "--batch-size is for mini-batch training: give --epochs too");
    bool synthetic = flag_given(table, "n") || flag_given(table, "features") || flag_given(table, "noise");
    if (a->csv) {
        if (synthetic) return usage_error(CMD, "--n, --features and --noise are for synthetic data, not --csv");
        if (!a->y_col) return usage_error(CMD, "--csv needs --y COLUMN (the target)");
    } else if (a->x_cols || a->y_col) {
        return usage_error(CMD, "--x and --y select columns of a --csv file");
    }
    if (a->x_cols) {
        const char *x = a->x_cols;
        size_t len = strlen(x);
        if (len == 0 || x[0] == ',' || x[len - 1] == ',' || strstr(x, ",,"))
            return usage_error(CMD, "--x: empty column name in '%s'", x);
    }
    if (!a->csv && a->n * a->features > NN_LINREG_MAX_VALUES)
        return usage_error(CMD, "--n x --features = %ld values, more than %ld", a->n * a->features,
                           NN_LINREG_MAX_VALUES);
    return -1;
}

/* Returns -1 to go on, else the exit status (0 after --help). */
static int parse_args(int argc, char **argv, linreg_args *a) {
    *a = (linreg_args){.n = 200, .features = 1, .noise = 0.5,
                       .gd = {.opt = NN_OPT_SGD, .seed = 1, .steps = 2000, .batch_size = 32, .lr = 0.1,
                              .on_step = log_step}};
    flag *table = make_table(a);
    int rc = flags_parse(CMD, table, argc, argv, usage_text, epilogue, NULL);
    if (rc < 0) rc = check_args(a, table);
    free(table);
    return rc;
}

/* ---- report ---------------------------------------------------------------------- */

static int plot(const char *path, const nn_linreg_data *ds, const nn_linreg_fit *gd, const double *loss, long updates) {
    size_t n = (size_t)ds->n;
    double *px = nn_xmalloc(n * sizeof(double)), *py = nn_xmalloc(n * sizeof(double));
    double lx[2], ly[2];
    nn_series data_series[2];
    nn_panel panels[2];
    char fit_label[160];
    if (ds->d == 1) {
        lx[0] = lx[1] = ds->x[0];
        for (size_t i = 0; i < n; i++) {
            px[i] = ds->x[i];
            py[i] = ds->y[i];
            lx[0] = fmin(lx[0], px[i]);
            lx[1] = fmax(lx[1], px[i]);
        }
        for (int k = 0; k < 2; k++) ly[k] = gd->w[0] * lx[k] + gd->b;
        snprintf(fit_label, sizeof fit_label, "fit: %.40s = %.4g %.40s %c %.4g", ds->y_name, gd->w[0], ds->names[0],
                 gd->b < 0 ? '-' : '+', fabs(gd->b));
        data_series[0] = (nn_series){"data", px, py, (int)n, 1};
        data_series[1] = (nn_series){fit_label, lx, ly, 2, 0};
        panels[0] = (nn_panel){"Data and the fitted line", ds->names[0], ds->y_name, data_series, 2, 0, 0};
    } else {
        lx[0] = lx[1] = ds->y[0];
        for (size_t i = 0; i < n; i++) {
            double pred = gd->b;
            for (int j = 0; j < ds->d; j++) pred += ds->x[i * ds->d + j] * gd->w[j];
            px[i] = ds->y[i];
            py[i] = pred;
            lx[0] = fmin(lx[0], px[i]);
            lx[1] = fmax(lx[1], px[i]);
        }
        ly[0] = lx[0];
        ly[1] = lx[1];
        data_series[0] = (nn_series){"examples", px, py, (int)n, 1};
        data_series[1] = (nn_series){"predicted = actual", lx, ly, 2, 0};
        panels[0] = (nn_panel){"Predicted against actual", ds->y_name, "predicted", data_series, 2, 0, 0};
    }
    /* Full-batch descent on a well-conditioned problem settles in a few dozen
     * steps and then draws a flat line for the rest: show the part that moves. */
    long settled = updates;
    double final = loss[updates - 1];
    while (settled > 1 && fabs(loss[settled - 2] - final) <= 1e-3 * fabs(final)) settled--;
    long shown = settled * 3 < 20 ? 20 : settled * 3;
    if (shown > updates) shown = updates;
    char loss_title[96];
    if (shown < updates)
        snprintf(loss_title, sizeof loss_title, "Loss, first %ld of %ld steps (flat after)", shown, updates);
    else
        snprintf(loss_title, sizeof loss_title, "Loss per step");
    double *steps = nn_xmalloc((size_t)shown * sizeof(double));
    for (long s = 0; s < shown; s++) steps[s] = (double)(s + 1);
    nn_series loss_series = {"training loss", steps, loss, (int)shown, 0};
    panels[1] = (nn_panel){loss_title, "step", "MSE", &loss_series, 1, 0, 0};
    int rc = nn_plot(path, panels, 2);
    free(px);
    free(py);
    free(steps);
    return rc;
}

static void print_results(const linreg_args *a, const nn_linreg_data *ds, long updates, const nn_linreg_fit *gd,
                          const nn_linreg_fit *ls, const nn_lstsq_info *info, bool singular) {
    if (ds->synthetic) {
        printf("data: synthetic, %ld example%s, %d feature%s, noise %g (seed %llu)\n", ds->n, ds->n == 1 ? "" : "s",
               ds->d, ds->d == 1 ? "" : "s", a->noise, (unsigned long long)a->gd.seed);
    } else {
        printf("data: %s, %ld example%s, %d feature%s, target '%s'\n", a->csv, ds->n, ds->n == 1 ? "" : "s", ds->d,
               ds->d == 1 ? "" : "s", ds->y_name);
    }
    printf("gradient descent: %s", nn_optim_name(a->gd.opt));
    float decay = nn_optim_defaults(a->gd.opt).weight_decay;
    if (decay != 0) printf(" (weight decay %g pulls w towards 0)", decay);
    printf(", lr %g, ", a->gd.lr);
    if (a->gd.epochs > 0)
        printf("%ld epochs of mini-batches of %ld (%ld updates)", a->gd.epochs, nn_linreg_batch_size(&a->gd, ds->n),
               updates);
    else
        printf("%ld full-batch steps", a->gd.steps);
    printf("%s\n", a->gd.standardize ? ", standardized features" : "");
    printf("least squares: LAPACK dgelsd (SVD) in double precision, rank %d of %d, condition number %.3g\n",
           info->rank, info->cols, info->cond);
    if (a->gd.standardize) printf("coefficients in the original units of the data\n");
    printf("\n");

    int width = 9;
    for (int j = 0; j < ds->d; j++) {
        int len = (int)strlen(ds->names[j]) + 3;
        if (len > width) width = len;
    }
    if (width > 40) width = 40;
    printf("%-*s", width, "");
    if (ds->synthetic) printf(" %14s", "true");
    printf(" %16s %16s %13s\n", "gradient desc.", "least squares", "|difference|");
    double max_diff = 0;
    for (int j = 0; j <= ds->d; j++) {
        char label[48];
        if (j < ds->d)
            snprintf(label, sizeof label, "w[%.36s]", ds->names[j]);
        else
            snprintf(label, sizeof label, "b");
        double g = j < ds->d ? gd->w[j] : gd->b, l = j < ds->d ? ls->w[j] : ls->b;
        double diff = fabs(g - l);
        if (diff > max_diff) max_diff = diff;
        printf("%-*s", width, label);
        if (ds->synthetic) printf(" %14.6g", j < ds->d ? ds->true_w[j] : ds->true_b);
        printf(" %16.8g %16.8g %13.2e\n", g, l, diff);
    }
    printf("%-*s", width, "MSE");
    if (ds->synthetic) printf(" %14s", "");
    printf(" %16.8g %16.8g\n", gd->mse, ls->mse);
    printf("%-*s", width, "R^2");
    if (ds->synthetic) printf(" %14s", "");
    if (isnan(gd->r2))
        printf(" %16s %16s  (y is constant)\n", "n/a", "n/a");
    else
        printf(" %16.8f %16.8f\n", gd->r2, ls->r2);
    printf("\nmax |difference| %.3e", max_diff);
    if (singular)
        printf(" (the design is singular: least squares has no unique answer)\n");
    else
        printf(" (%s within 1e-3)\n", max_diff <= 1e-3 ? "agree" : "do NOT agree");
}

int cmd_linreg(int argc, char **argv) {
    linreg_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;

    nn_linreg_data ds = {0};
    nn_linreg_fit gd = {0}, ls = {0};
    nn_lstsq_info info = {0};
    double *loss = NULL;
    if (a.csv ? nn_linreg_load_csv(&ds, a.csv, a.y_col, a.x_cols) : nn_linreg_synthetic(&ds, a.n, a.features, a.noise,
                                                                                        a.gd.seed))
        goto runtime;
    long updates = nn_linreg_updates(&a.gd, ds.n);
    if (updates > NN_LINREG_MAX_UPDATES) {
        rc = usage_error(CMD, "--epochs %ld with %ld batches each is more than %ld updates", a.gd.epochs,
                         updates / a.gd.epochs, NN_LINREG_MAX_UPDATES);
        goto done;
    }
    if (nn_linreg_least_squares(&ds, &ls, &info) != 0) goto runtime;
    bool singular = info.rank < info.cols;
    if (singular) {
        char hint[200];
        nn_linreg_singular_reason(&ds, hint, sizeof hint);
        fprintf(stderr,
                "nn: warning: the design matrix [X 1] is singular (rank %d of %d columns)%s; least squares has "
                "no unique solution (the minimum-norm one is shown) and gradient descent's answer depends on "
                "where it starts\n",
                info.rank, info.cols, hint);
    } else if (info.cond > 1e6) {
        fprintf(stderr,
                "nn: warning: the design matrix [X 1] is ill-conditioned (condition number %.3g): gradient "
                "descent converges slowly%s\n",
                info.cond, a.gd.standardize ? "" : "; try --standardize");
    }
    if (nn_linreg_gd(&ds, &a.gd, &gd, &loss) != 0) goto runtime;
    if (a.gd.graph_path) fprintf(stderr, "wrote the graph of one MSE evaluation to %s\n", a.gd.graph_path);
    nn_linreg_evaluate(&ds, &gd);
    nn_linreg_evaluate(&ds, &ls);
    print_results(&a, &ds, updates, &gd, &ls, &info, singular);
    fflush(stdout);
    if (a.plot) {
        if (plot(a.plot, &ds, &gd, loss, updates) != 0) goto runtime;
        fprintf(stderr, "wrote the plot to %s\n", a.plot);
    }
    rc = 0;
    goto done;

runtime:
    rc = runtime_error();
done:
    nn_linreg_fit_free(&gd);
    nn_linreg_fit_free(&ls);
    free(loss);
    nn_linreg_data_free(&ds);
    return rc;
}
