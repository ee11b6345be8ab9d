/* nn linreg: linear regression, the first model of the course.
 *
 *   model     y_hat = X w^T + b          X [n, D], w [1, D] (nn.Linear's layout), b [1]
 *   loss      L = (1/n) sum_i (y_hat_i - y_i)^2
 *   gradient  dL/dw = (2/n) (y_hat - y)^T X,  dL/db = (2/n) sum_i (y_hat_i - y_i)
 *
 * The gradient is not written out here: the forward pass (nn_linear, nn_mse)
 * is recorded on the tape and nn_backward computes it, exactly as for an MLP.
 * The answer is then checked against the closed-form least-squares solution
 * of the same problem, computed in double precision by LAPACK (dgelsd, an
 * SVD, which also tells when the design matrix is rank-deficient). */
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "nn/core.h"
#include "nn/csv.h"
#include "nn/optim.h"
#include "nn/report.h"
#include "plot/plot.h"

#define CMD "linreg"

/* Upper bounds that keep memory use sane and loops finite. */
#define MAX_EXAMPLES 10000000L
#define MAX_FEATURES 1000L
#define MAX_VALUES 50000000L /* n * D */
#define MAX_UPDATES 10000000L

typedef struct linreg_args {
    long n, features;
    double noise;
    long steps, epochs, batch_size;
    double lr;
    nn_optim_kind opt;
    long seed;
    const char *csv, *x_cols, *y_col, *plot, *graph;
    bool standardize;
    bool steps_set, epochs_set, batch_set, synthetic_set;
} linreg_args;

/* The regression problem in the original units. */
typedef struct dataset {
    long n;
    int d;
    double *x;     /* [n, d] row-major */
    double *y;     /* [n] */
    char **names;  /* d feature names */
    char *y_name;
    bool synthetic;
    double *true_w; /* [d], synthetic data only */
    double true_b;
} dataset;

/* A fitted line in the original units: y_hat = x . w + b. */
typedef struct fit {
    double *w; /* [d] */
    double b;
    double mse, r2;
} fit;

static void print_help(void) {
    printf("usage: nn linreg [OPTIONS]\n"
           "\n"
           "Fits y = X w + b by gradient descent on the mean squared error, with the\n"
           "gradient computed by backpropagation through the computation graph, and\n"
           "checks the answer against the closed-form least-squares solution (LAPACK).\n"
           "\n"
           "data (synthetic by default: x ~ N(0, 1), y = x w + b + noise):\n"
           "  --n N              examples (default 200)\n"
           "  --features D       features (default 1)\n"
           "  --noise S          standard deviation of the noise added to y (default 0.5)\n"
           "  --csv FILE         read a CSV file with a header row instead\n"
           "  --y COL            target column: header name or 0-based index (needed with --csv)\n"
           "  --x COL[,COL...]   feature columns (default: every other column)\n"
           "  --standardize      train on features scaled to mean 0 and variance 1;\n"
           "                     the coefficients are still reported in the original units\n"
           "\n"
           "training:\n"
           "  --lr LR            learning rate (default 0.1)\n"
           "  --steps N          full-batch gradient-descent steps (default 2000)\n"
           "  --epochs E         mini-batch training instead: E passes over the shuffled data\n"
           "  --batch-size B     examples per mini-batch with --epochs (default 32)\n"
           "  --opt NAME         sgd, momentum, nesterov, adam or adamw (default sgd)\n"
           "  --seed S           seed of the synthetic data, initial weights and shuffling (default 1)\n"
           "\n"
           "output:\n"
           "  --plot FILE        .png or .svg: the points and the fitted line (one feature)\n"
           "                     or predicted against actual (several), and the loss per step\n"
           "  --graph FILE       the computation graph of one MSE evaluation (Graphviz DOT;\n"
           "                     render it with: dot -Tpng FILE -o graph.png)\n"
           "  --help             this text\n"
           "\n"
           "Results go to stdout, progress and warnings to stderr.\n");
}


/* Returns 0 to go on, 1 after --help, 2 after a usage error. */
static int parse_args(int argc, char **argv, linreg_args *a) {
    *a = (linreg_args){.n = 200, .features = 1, .noise = 0.5, .steps = 2000, .batch_size = 32,
                       .lr = 0.1, .opt = NN_OPT_SGD, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help();
            return 1;
        }
        if (strcmp(arg, "--standardize") == 0) {
            a->standardize = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) return usage_error(CMD, "unexpected argument '%s'", arg);
        /* --flag VALUE or --flag=VALUE */
        char flag[32];
        const char *value;
        const char *eq = strchr(arg, '=');
        if (eq) {
            size_t len = (size_t)(eq - arg);
            if (len >= sizeof flag) return usage_error(CMD, "unknown option '%.*s'", (int)len, arg);
            memcpy(flag, arg, len);
            flag[len] = '\0';
            value = eq + 1;
        } else {
            if (strlen(arg) >= sizeof flag) return usage_error(CMD, "unknown option '%s'", arg);
            strcpy(flag, arg);
            value = i + 1 < argc ? argv[i + 1] : NULL;
        }
        static const char *const known[] = {"--n",     "--features", "--noise", "--steps", "--epochs",
                                            "--batch-size", "--lr",  "--opt",   "--seed",  "--csv",
                                            "--x",     "--y",        "--plot",  "--graph"};
        bool is_known = false;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) is_known |= strcmp(flag, known[k]) == 0;
        if (!is_known) return usage_error(CMD, "unknown option '%s'", flag);
        if (!value) return usage_error(CMD, "%s needs a value", flag);
        if (!eq) i++;

        double lr;
        if (strcmp(flag, "--n") == 0) {
            if (parse_int_flag(CMD, flag, value, 1, MAX_EXAMPLES, &a->n)) return EXIT_USAGE;
            a->synthetic_set = true;
        } else if (strcmp(flag, "--features") == 0) {
            if (parse_int_flag(CMD, flag, value, 1, MAX_FEATURES, &a->features)) return EXIT_USAGE;
            a->synthetic_set = true;
        } else if (strcmp(flag, "--noise") == 0) {
            if (parse_float_flag(CMD, flag, value, 0, 1e6, &a->noise)) return EXIT_USAGE;
            a->synthetic_set = true;
        } else if (strcmp(flag, "--steps") == 0) {
            if (parse_int_flag(CMD, flag, value, 1, MAX_UPDATES, &a->steps)) return EXIT_USAGE;
            a->steps_set = true;
        } else if (strcmp(flag, "--epochs") == 0) {
            if (parse_int_flag(CMD, flag, value, 1, MAX_UPDATES, &a->epochs)) return EXIT_USAGE;
            a->epochs_set = true;
        } else if (strcmp(flag, "--batch-size") == 0) {
            if (parse_int_flag(CMD, flag, value, 1, MAX_EXAMPLES, &a->batch_size)) return EXIT_USAGE;
            a->batch_set = true;
        } else if (strcmp(flag, "--lr") == 0) {
            if (parse_float_flag(CMD, flag, value, 0, 1e6, &lr)) return EXIT_USAGE;
            if (lr <= 0) return usage_error(CMD, "--lr: must be positive, got '%s'", value);
            a->lr = lr;
        } else if (strcmp(flag, "--opt") == 0) {
            if (nn_optim_parse(value, &a->opt) != 0)
                return usage_error(CMD, "--opt: unknown optimiser '%s' (sgd, momentum, nesterov, adam, adamw)",
                                   value);
        } else if (strcmp(flag, "--seed") == 0) {
            if (parse_int_flag(CMD, flag, value, 0, 2147483647L, &a->seed)) return EXIT_USAGE;
        } else if (strcmp(flag, "--csv") == 0) {
            a->csv = value;
        } else if (strcmp(flag, "--x") == 0) {
            a->x_cols = value;
        } else if (strcmp(flag, "--y") == 0) {
            a->y_col = value;
        } else if (strcmp(flag, "--plot") == 0) {
            if (!nn_is_picture_path(value))
                return usage_error(CMD, "--plot: '%s' must end in .png or .svg", value);
            a->plot = value;
        } else if (strcmp(flag, "--graph") == 0) {
            a->graph = value;
        }
    }
    if (a->steps_set && a->epochs_set) return usage_error(CMD, "--steps and --epochs exclude each other");
    if (a->batch_set && !a->epochs_set)
        return usage_error(CMD, "--batch-size is for mini-batch training: give --epochs too");
    if (a->csv) {
        if (a->synthetic_set) return usage_error(CMD, "--n, --features and --noise are for synthetic data, not --csv");
        if (!a->y_col) return usage_error(CMD, "--csv needs --y COLUMN (the target)");
    } else if (a->x_cols || a->y_col) {
        return usage_error(CMD, "--x and --y select columns of a --csv file");
    }
    if (!a->csv && a->n * a->features > MAX_VALUES)
        return usage_error(CMD, "--n x --features = %ld values, more than %ld", a->n * a->features, MAX_VALUES);
    return 0;
}

/* ---- data ------------------------------------------------------------------ */

static void dataset_free(dataset *ds) {
    if (ds->names)
        for (int j = 0; j < ds->d; j++) free(ds->names[j]);
    free(ds->names);
    free(ds->y_name);
    free(ds->x);
    free(ds->y);
    free(ds->true_w);
    memset(ds, 0, sizeof *ds);
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(nn_xmalloc(n), s, n);
}

/* x ~ N(0, 1) per feature, y = x . w + b + noise * N(0, 1), with w and b drawn
 * once (two decimals, so the printed truth is exact). */
static void make_synthetic(const linreg_args *a, dataset *ds) {
    nn_rng rng;
    nn_rng_seed(&rng, (uint64_t)a->seed, 1);
    ds->synthetic = true;
    ds->n = a->n;
    ds->d = (int)a->features;
    ds->true_w = nn_xmalloc((size_t)ds->d * sizeof(double));
    for (int j = 0; j < ds->d; j++) ds->true_w[j] = round(100.0 * (6.0 * nn_rng_uniform(&rng) - 3.0)) / 100.0;
    ds->true_b = round(100.0 * (4.0 * nn_rng_uniform(&rng) - 2.0)) / 100.0;
    ds->x = nn_xmalloc((size_t)ds->n * (size_t)ds->d * sizeof(double));
    ds->y = nn_xmalloc((size_t)ds->n * sizeof(double));
    for (long i = 0; i < ds->n; i++) {
        double yi = ds->true_b;
        for (int j = 0; j < ds->d; j++) {
            double v = nn_rng_normal(&rng);
            ds->x[(size_t)i * ds->d + j] = v;
            yi += ds->true_w[j] * v;
        }
        ds->y[i] = yi + a->noise * nn_rng_normal(&rng);
    }
    ds->names = nn_xmalloc((size_t)ds->d * sizeof(char *));
    for (int j = 0; j < ds->d; j++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", j);
        ds->names[j] = xstrdup(name);
    }
    ds->y_name = xstrdup("y");
}

/* The display name of CSV column j: its header, or its index if the header is empty. */
static char *column_name(const nn_csv *t, int j) {
    if (t->header[j][0]) return xstrdup(t->header[j]);
    char name[24];
    snprintf(name, sizeof name, "column %d", j);
    return xstrdup(name);
}

/* Returns 0, -1 (runtime error set) or 2 (usage error printed). */
static int load_csv(const linreg_args *a, dataset *ds) {
    nn_csv t;
    if (nn_csv_load(&t, a->csv) != 0) return -1;
    int rc = -1;
    int *cols = NULL;
    int y = nn_csv_column(&t, a->y_col);
    if (y < 0) goto done;

    int d = 0;
    if (a->x_cols) {
        size_t len = strlen(a->x_cols);
        cols = nn_xmalloc((len / 2 + 1) * sizeof(int)); /* at most that many names */
        char *list = xstrdup(a->x_cols), *p = list;
        for (;;) {
            char *comma = strchr(p, ',');
            if (comma) *comma = '\0';
            if (*p == '\0') {
                free(list);
                rc = usage_error(CMD, "--x: empty column name in '%s'", a->x_cols);
                goto done;
            }
            int c = nn_csv_column(&t, p);
            if (c < 0) {
                free(list);
                goto done;
            }
            cols[d++] = c;
            if (!comma) break;
            p = comma + 1;
        }
        free(list);
    } else {
        if (t.n_cols < 2) {
            nn_error("%s: only one column, so no features besides the target '%s'", a->csv, a->y_col);
            goto done;
        }
        cols = nn_xmalloc((size_t)t.n_cols * sizeof(int));
        for (int j = 0; j < t.n_cols; j++)
            if (j != y) cols[d++] = j;
    }
    if (d > MAX_FEATURES) {
        nn_error("%s: %d feature columns, more than %ld", a->csv, d, MAX_FEATURES);
        goto done;
    }
    if (t.n_rows > MAX_EXAMPLES || t.n_rows * d > MAX_VALUES) {
        nn_error("%s: %ld rows x %d features is more than this command handles (%ld values)", a->csv, t.n_rows, d,
                 MAX_VALUES);
        goto done;
    }

    ds->n = t.n_rows;
    ds->d = d;
    ds->y = nn_xmalloc((size_t)ds->n * sizeof(double));
    ds->x = nn_xmalloc((size_t)ds->n * (size_t)d * sizeof(double));
    ds->names = nn_xcalloc((size_t)d, sizeof(char *));
    ds->y_name = column_name(&t, y);
    if (nn_csv_numbers(&t, y, ds->y) != 0) goto done;
    double *column = nn_xmalloc((size_t)ds->n * sizeof(double));
    for (int j = 0; j < d; j++) {
        ds->names[j] = column_name(&t, cols[j]);
        if (nn_csv_numbers(&t, cols[j], column) != 0) {
            free(column);
            goto done;
        }
        for (long i = 0; i < ds->n; i++) ds->x[(size_t)i * d + j] = column[i];
    }
    free(column);
    rc = 0;
done:
    free(cols);
    nn_csv_free(&t);
    return rc;
}

/* ---- the closed form --------------------------------------------------------- */

typedef struct lstsq {
    int rank, cols; /* rank of [X 1] and its number of columns */
    double cond;    /* condition number of [X 1] with unit-length columns */
} lstsq;

/* Minimises |[X 1] [w; b] - y|^2 by an SVD (LAPACK dgelsd). The columns are
 * first scaled to unit length, so that the rank decision does not depend on
 * the units of the features; singular values below eps * max(n, D+1) times the
 * largest count as zero (NumPy's lstsq default). With a rank-deficient design
 * this is the minimum-norm solution of the scaled problem. */
static int least_squares(const dataset *ds, fit *out, lstsq *info) {
    int m = (int)ds->n, n = ds->d + 1;
    int ldb = m > n ? m : n;
    double *A = nn_xmalloc((size_t)m * (size_t)n * sizeof(double)); /* column-major */
    double *rhs = nn_xcalloc((size_t)ldb, sizeof(double));
    double *scale = nn_xmalloc((size_t)n * sizeof(double));
    double *s = nn_xmalloc((size_t)(m < n ? m : n) * sizeof(double));
    for (int j = 0; j < n; j++) {
        double norm = 0;
        for (int i = 0; i < m; i++) {
            double v = j < ds->d ? ds->x[(size_t)i * ds->d + j] : 1.0;
            A[(size_t)j * m + i] = v;
            norm += v * v;
        }
        scale[j] = norm > 0 ? 1.0 / sqrt(norm) : 1.0;
        for (int i = 0; i < m; i++) A[(size_t)j * m + i] *= scale[j];
    }
    memcpy(rhs, ds->y, (size_t)m * sizeof(double));
    int rank = 0;
    double rcond = DBL_EPSILON * (double)ldb;
    lapack_int status = LAPACKE_dgelsd(LAPACK_COL_MAJOR, m, n, 1, A, m, rhs, ldb, s, rcond, &rank);
    int rc = 0;
    if (status != 0) {
        rc = nn_error("least squares: LAPACK dgelsd failed (info %d)", (int)status);
    } else {
        for (int j = 0; j < ds->d; j++) out->w[j] = rhs[j] * scale[j];
        out->b = rhs[ds->d] * scale[ds->d];
        info->rank = rank;
        info->cols = n;
        /* With fewer rows than columns some direction has no singular value at all. */
        double smin = m < n ? 0.0 : s[n - 1];
        info->cond = smin > 0 ? s[0] / smin : INFINITY;
    }
    free(A);
    free(rhs);
    free(scale);
    free(s);
    return rc;
}

/* Why the design is singular, when it is for an obvious reason: a constant
 * feature (it duplicates the intercept) or two identical columns. */
static void singular_hint(const dataset *ds, char *buf, size_t cap) {
    buf[0] = '\0';
    long n = ds->n;
    if (n < ds->d + 1) {
        snprintf(buf, cap, "; there are fewer examples (%ld) than unknowns (%d)", n, ds->d + 1);
        return;
    }
    for (int j = 0; j < ds->d; j++) {
        bool constant = true;
        for (long i = 1; i < n && constant; i++) constant = ds->x[(size_t)i * ds->d + j] == ds->x[j];
        if (constant) {
            snprintf(buf, cap, "; feature '%s' is constant, which duplicates the intercept b", ds->names[j]);
            return;
        }
    }
    for (int j = 0; j < ds->d; j++)
        for (int k = j + 1; k < ds->d; k++) {
            bool same = true;
            for (long i = 0; i < n && same; i++)
                same = ds->x[(size_t)i * ds->d + j] == ds->x[(size_t)i * ds->d + k];
            if (same) {
                snprintf(buf, cap, "; features '%s' and '%s' are identical", ds->names[j], ds->names[k]);
                return;
            }
        }
}

/* MSE and R^2 of a fit on the data, in double precision. */
static void evaluate(const dataset *ds, fit *f) {
    double mean = 0;
    for (long i = 0; i < ds->n; i++) mean += ds->y[i];
    mean /= (double)ds->n;
    double ss_res = 0, ss_tot = 0;
    for (long i = 0; i < ds->n; i++) {
        double pred = f->b;
        for (int j = 0; j < ds->d; j++) pred += ds->x[(size_t)i * ds->d + j] * f->w[j];
        ss_res += (pred - ds->y[i]) * (pred - ds->y[i]);
        ss_tot += (ds->y[i] - mean) * (ds->y[i] - mean);
    }
    f->mse = ss_res / (double)ds->n;
    f->r2 = ss_tot > 0 ? 1.0 - ss_res / ss_tot : NAN;
}

/* ---- gradient descent ---------------------------------------------------------- */

/* The training inputs: features in float32, standardised or as they are. */
typedef struct train_data {
    float *x, *y;       /* [n, d], [n] */
    double *mean, *std; /* x_train = (x - mean) / std; 0 and 1 without --standardize */
} train_data;

static void train_data_make(const dataset *ds, bool standardize, train_data *td) {
    size_t n = (size_t)ds->n, d = (size_t)ds->d;
    td->mean = nn_xcalloc(d, sizeof(double));
    td->std = nn_xmalloc(d * sizeof(double));
    for (size_t j = 0; j < d; j++) td->std[j] = 1.0;
    if (standardize) {
        for (size_t j = 0; j < d; j++) {
            double m = 0, v = 0;
            for (size_t i = 0; i < n; i++) m += ds->x[i * d + j];
            m /= (double)n;
            for (size_t i = 0; i < n; i++) v += (ds->x[i * d + j] - m) * (ds->x[i * d + j] - m);
            v /= (double)n;
            td->mean[j] = m;
            /* A constant feature is only centred (to zeros); the closed form reports the singularity. */
            td->std[j] = v > 0 ? sqrt(v) : 1.0;
        }
    }
    td->x = nn_xmalloc(n * d * sizeof(float));
    td->y = nn_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++) td->x[i * d + j] = (float)((ds->x[i * d + j] - td->mean[j]) / td->std[j]);
        td->y[i] = (float)ds->y[i];
    }
}

static void train_data_free(train_data *td) {
    free(td->x);
    free(td->y);
    free(td->mean);
    free(td->std);
}

/* The model and its loss on the examples rows[0..b) (all examples when rows
 * is NULL), recorded on the tape: X and y are inputs, w and b parameters. */
static nn_tensor *mse_loss(nn_ctx *ctx, const train_data *td, int d, const int *rows, int count, nn_tensor *w,
                           nn_tensor *b) {
    nn_tensor *X = nn_input(ctx, "X", 2, (int[]){count, d});
    nn_tensor *y = nn_input(ctx, "y", 2, (int[]){count, 1});
    for (int i = 0; i < count; i++) {
        size_t r = rows ? (size_t)rows[i] : (size_t)i;
        memcpy(X->data + (size_t)i * d, td->x + r * d, (size_t)d * sizeof(float));
        y->data[i] = td->y[r];
    }
    nn_tensor *y_hat = nn_linear(ctx, X, w, b); /* [count, 1] */
    return nn_mse(ctx, y_hat, y);               /* scalar */
}

/* Examples per update, and updates per pass over the data (1 for full batch). */
static long batch_size(const linreg_args *a, long n) {
    return a->epochs_set && a->batch_size < n ? a->batch_size : n;
}
static long batches_per_epoch(const linreg_args *a, long n) {
    long b = batch_size(a, n);
    return (n + b - 1) / b;
}

typedef struct training {
    double *loss; /* per update */
    long updates;
} training;

/* Returns 0, or -1 with the error set when the loss stops being finite. */
static int train(const linreg_args *a, const dataset *ds, const train_data *td, fit *gd, training *tr) {
    int d = ds->d, n = (int)ds->n;
    nn_params params;
    nn_params_init(&params);
    nn_tensor *w = nn_params_add(&params, "w", 2, (int[]){1, d}, true);
    nn_tensor *b = nn_params_add(&params, "b", 1, (int[]){1}, false);
    nn_rng rng;
    nn_rng_seed(&rng, (uint64_t)a->seed, 2);
    nn_init_uniform_fan_in(w, d, &rng);
    nn_init_uniform_fan_in(b, d, &rng);

    nn_optim_config cfg = nn_optim_defaults(a->opt);
    nn_optim opt;
    nn_optim_init(&opt, &params, &cfg);
    nn_ctx *ctx = nn_ctx_new(0);

    if (a->graph) {
        mse_loss(ctx, td, d, NULL, n, w, b);
        if (nn_graph_save_dot(ctx, a->graph) != 0) {
            nn_ctx_free(ctx);
            nn_optim_free(&opt);
            nn_params_free(&params);
            return -1;
        }
        fprintf(stderr, "wrote the graph of one MSE evaluation to %s\n", a->graph);
        nn_ctx_reset(ctx);
    }

    long batch = batch_size(a, n), per_epoch = batches_per_epoch(a, n);
    tr->updates = a->epochs_set ? a->epochs * per_epoch : a->steps;
    tr->loss = nn_xmalloc((size_t)tr->updates * sizeof(double));
    int *order = nn_xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) order[i] = i;
    nn_rng shuffle;
    nn_rng_seed(&shuffle, (uint64_t)a->seed, 3);
    long report_every = tr->updates >= 10 ? tr->updates / 10 : 1;

    int rc = 0;
    for (long step = 0; step < tr->updates; step++) {
        long in_epoch = step % per_epoch;
        if (a->epochs_set && in_epoch == 0) nn_rng_shuffle(&shuffle, order, n);
        long first = in_epoch * batch;
        int count = (int)(first + batch <= n ? batch : n - first);

        nn_ctx_reset(ctx);
        nn_tensor *loss = mse_loss(ctx, td, d, a->epochs_set ? order + first : NULL, count, w, b);
        double value = loss->data[0];
        if (!isfinite(value)) {
            rc = step + 1;
            break;
        }
        tr->loss[step] = value;
        nn_params_zero_grad(&params);
        nn_backward(ctx, loss);
        nn_optim_step(&opt, (float)a->lr);
        if ((step + 1) % report_every == 0 || step == 0)
            fprintf(stderr, "step %*ld/%ld  loss %.6g\n", (int)snprintf(NULL, 0, "%ld", tr->updates), step + 1,
                    tr->updates, value);
    }
    if (rc == 0)
        for (size_t k = 0; k < params.count; k++)
            if (!isfinite(params.data[k])) rc = (int)tr->updates + 1;
    if (rc != 0) {
        bool unscaled = false;
        for (int j = 0; j < d && !a->standardize; j++) {
            double m = 0, v = 0;
            for (int i = 0; i < n; i++) m += ds->x[(size_t)i * d + j];
            m /= n;
            for (int i = 0; i < n; i++) v += (ds->x[(size_t)i * d + j] - m) * (ds->x[(size_t)i * d + j] - m);
            v /= n;
            unscaled |= fabs(m) > 1 || v > 4 || v < 0.25;
        }
        nn_error("loss diverged at step %d (try a smaller --lr%s)", rc, unscaled ? ", or --standardize" : "");
        rc = -1;
    } else {
        /* Back to the original units: w_j x_std_j = (w_j / std_j) x_j - w_j mean_j / std_j. */
        gd->b = b->data[0];
        for (int j = 0; j < d; j++) {
            gd->w[j] = w->data[j] / td->std[j];
            gd->b -= gd->w[j] * td->mean[j];
        }
    }
    free(order);
    nn_ctx_free(ctx);
    nn_optim_free(&opt);
    nn_params_free(&params);
    return rc;
}

/* ---- report ---------------------------------------------------------------------- */

static int plot(const char *path, const dataset *ds, const fit *gd, const training *tr) {
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
    long settled = tr->updates;
    double final = tr->loss[tr->updates - 1];
    while (settled > 1 && fabs(tr->loss[settled - 2] - final) <= 1e-3 * fabs(final)) settled--;
    long shown = settled * 3 < 20 ? 20 : settled * 3;
    if (shown > tr->updates) shown = tr->updates;
    char loss_title[96];
    if (shown < tr->updates)
        snprintf(loss_title, sizeof loss_title, "Loss, first %ld of %ld steps (flat after)", shown, tr->updates);
    else
        snprintf(loss_title, sizeof loss_title, "Loss per step");
    double *steps = nn_xmalloc((size_t)shown * sizeof(double));
    for (long s = 0; s < shown; s++) steps[s] = (double)(s + 1);
    nn_series loss_series = {"training loss", steps, tr->loss, (int)shown, 0};
    panels[1] = (nn_panel){loss_title, "step", "MSE", &loss_series, 1, 0, 0};
    int rc = nn_plot(path, panels, 2);
    free(px);
    free(py);
    free(steps);
    return rc;
}

static void print_results(const linreg_args *a, const dataset *ds, const training *tr, const fit *gd, const fit *ls,
                          const lstsq *info, bool singular) {
    if (ds->synthetic) {
        printf("data: synthetic, %ld example%s, %d feature%s, noise %g (seed %ld)\n", ds->n, ds->n == 1 ? "" : "s",
               ds->d, ds->d == 1 ? "" : "s", a->noise, a->seed);
    } else {
        printf("data: %s, %ld example%s, %d feature%s, target '%s'\n", a->csv, ds->n, ds->n == 1 ? "" : "s", ds->d,
               ds->d == 1 ? "" : "s", ds->y_name);
    }
    printf("gradient descent: %s", nn_optim_name(a->opt));
    float decay = nn_optim_defaults(a->opt).weight_decay;
    if (decay != 0) printf(" (weight decay %g pulls w towards 0)", decay);
    printf(", lr %g, ", a->lr);
    if (a->epochs_set)
        printf("%ld epochs of mini-batches of %ld (%ld updates)", a->epochs, batch_size(a, ds->n), tr->updates);
    else
        printf("%ld full-batch steps", a->steps);
    printf("%s\n", a->standardize ? ", standardized features" : "");
    printf("least squares: LAPACK dgelsd (SVD) in double precision, rank %d of %d, condition number %.3g\n",
           info->rank, info->cols, info->cond);
    if (a->standardize) printf("coefficients in the original units of the data\n");
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
    if (rc == 1) return 0;
    if (rc != 0) return rc;

    dataset ds = {0};
    train_data td = {0};
    training tr = {0};
    fit gd = {0}, ls = {0};
    lstsq info = {0};
    if (a.csv) {
        rc = load_csv(&a, &ds);
        if (rc == EXIT_USAGE) goto done;
        if (rc != 0) goto runtime;
    } else {
        make_synthetic(&a, &ds);
    }
    if (a.epochs_set && a.epochs > MAX_UPDATES / batches_per_epoch(&a, ds.n)) {
        rc = usage_error(CMD, "--epochs %ld with %ld batches each is more than %ld updates", a.epochs,
                         batches_per_epoch(&a, ds.n), MAX_UPDATES);
        goto done;
    }

    gd.w = nn_xcalloc((size_t)ds.d, sizeof(double));
    ls.w = nn_xcalloc((size_t)ds.d, sizeof(double));
    if (least_squares(&ds, &ls, &info) != 0) goto runtime;
    bool singular = info.rank < info.cols;
    if (singular) {
        char hint[200];
        singular_hint(&ds, hint, sizeof hint);
        fprintf(stderr,
                "nn: warning: the design matrix [X 1] is singular (rank %d of %d columns)%s; least squares has "
                "no unique solution (the minimum-norm one is shown) and gradient descent's answer depends on "
                "where it starts\n",
                info.rank, info.cols, hint);
    } else if (info.cond > 1e6) {
        fprintf(stderr,
                "nn: warning: the design matrix [X 1] is ill-conditioned (condition number %.3g): gradient "
                "descent converges slowly%s\n",
                info.cond, a.standardize ? "" : "; try --standardize");
    }

    train_data_make(&ds, a.standardize, &td);
    if (train(&a, &ds, &td, &gd, &tr) != 0) goto runtime;
    evaluate(&ds, &gd);
    evaluate(&ds, &ls);
    print_results(&a, &ds, &tr, &gd, &ls, &info, singular);
    fflush(stdout);
    if (a.plot) {
        if (plot(a.plot, &ds, &gd, &tr) != 0) goto runtime;
        fprintf(stderr, "wrote the plot to %s\n", a.plot);
    }
    rc = 0;
    goto done;

runtime:
    rc = runtime_error();
done:
    free(gd.w);
    free(ls.w);
    free(tr.loss);
    train_data_free(&td);
    dataset_free(&ds);
    return rc;
}
