/* Linear regression (nn/linreg.h): the data, the closed form and gradient
 * descent through the autograd. */
#include "nn/linreg.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/core.h"
#include "nn/csv.h"
#include "nn/error.h"
#include "core/util.h"

/* LAPACK's least-squares solver, from OpenBLAS (Fortran calling convention). */
void dgelsd_(const int *m, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb,
             double *s, const double *rcond, int *rank, double *work, const int *lwork, int *iwork, int *info);

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(nn_xmalloc(n), s, n);
}

void nn_linreg_data_free(nn_linreg_data *ds) {
    if (ds->names)
        for (int j = 0; j < ds->d; j++) free(ds->names[j]);
    free(ds->names);
    free(ds->y_name);
    free(ds->x);
    free(ds->y);
    free(ds->true_w);
    memset(ds, 0, sizeof *ds);
}

void nn_linreg_fit_free(nn_linreg_fit *f) {
    free(f->w);
    memset(f, 0, sizeof *f);
}

int nn_linreg_synthetic(nn_linreg_data *ds, long n, int features, double noise, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    if (n < 1 || n > NN_LINREG_MAX_EXAMPLES || features < 1 || features > NN_LINREG_MAX_FEATURES ||
        n * features > NN_LINREG_MAX_VALUES)
        return nn_error("synthetic data of %ld examples x %d features is outside the bounds (%ld values at most)", n,
                        features, NN_LINREG_MAX_VALUES);
    nn_rng rng;
    nn_rng_seed(&rng, seed, 1);
    ds->synthetic = true;
    ds->n = n;
    ds->d = features;
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
        ds->y[i] = yi + noise * nn_rng_normal(&rng);
    }
    ds->names = nn_xmalloc((size_t)ds->d * sizeof(char *));
    for (int j = 0; j < ds->d; j++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", j);
        ds->names[j] = xstrdup(name);
    }
    ds->y_name = xstrdup("y");
    return 0;
}

/* The display name of CSV column j: its header, or its index if the header is empty. */
static char *column_name(const nn_csv *t, int j) {
    if (t->header[j][0]) return xstrdup(t->header[j]);
    char name[24];
    snprintf(name, sizeof name, "column %d", j);
    return xstrdup(name);
}

int nn_linreg_load_csv(nn_linreg_data *ds, const char *path, const char *y_col, const char *x_cols) {
    memset(ds, 0, sizeof *ds);
    nn_csv t;
    if (nn_csv_load(&t, path) != 0) return -1;
    int rc = -1;
    int *cols = NULL;
    int y = nn_csv_column(&t, y_col);
    if (y < 0) goto done;

    int d = 0;
    if (x_cols) {
        size_t len = strlen(x_cols);
        cols = nn_xmalloc((len / 2 + 1) * sizeof(int)); /* at most that many names */
        char *list = xstrdup(x_cols), *p = list;
        for (;;) {
            char *comma = strchr(p, ',');
            if (comma) *comma = '\0';
            if (*p == '\0') {
                free(list);
                nn_error("empty column name in '%s'", x_cols);
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
            nn_error("%s: only one column, so no features besides the target '%s'", path, y_col);
            goto done;
        }
        cols = nn_xmalloc((size_t)t.n_cols * sizeof(int));
        for (int j = 0; j < t.n_cols; j++)
            if (j != y) cols[d++] = j;
    }
    if (d > NN_LINREG_MAX_FEATURES) {
        nn_error("%s: %d feature columns, more than %d", path, d, NN_LINREG_MAX_FEATURES);
        goto done;
    }
    if (t.n_rows > NN_LINREG_MAX_EXAMPLES || t.n_rows * d > NN_LINREG_MAX_VALUES) {
        nn_error("%s: %ld rows x %d features is more than linear regression here handles (%ld values)", path,
                 t.n_rows, d, NN_LINREG_MAX_VALUES);
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
    if (rc != 0) nn_linreg_data_free(ds);
    return rc;
}

/* ---- the closed form --------------------------------------------------------- */

int nn_linreg_least_squares(const nn_linreg_data *ds, nn_linreg_fit *out, nn_lstsq_info *info) {
    int m = (int)ds->n, n = ds->d + 1, nrhs = 1;
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
    int rank = 0, status = 0, lwork = -1, liwork = 1;
    double rcond = DBL_EPSILON * (double)ldb, query = 0;
    /* A workspace query first: LAPACK says how much it needs. */
    dgelsd_(&m, &n, &nrhs, A, &m, rhs, &ldb, s, &rcond, &rank, &query, &lwork, &liwork, &status);
    double *work = NULL;
    int *iwork = NULL;
    if (status == 0) {
        lwork = (int)query + 1;
        work = nn_xmalloc((size_t)lwork * sizeof(double));
        iwork = nn_xmalloc((size_t)(liwork > 1 ? liwork : 1) * sizeof(int));
        dgelsd_(&m, &n, &nrhs, A, &m, rhs, &ldb, s, &rcond, &rank, work, &lwork, iwork, &status);
    }
    int rc = 0;
    if (status != 0) {
        rc = nn_error("least squares: LAPACK dgelsd failed (info %d)", status);
    } else {
        out->w = nn_xcalloc((size_t)ds->d, sizeof(double));
        for (int j = 0; j < ds->d; j++) out->w[j] = rhs[j] * scale[j];
        out->b = rhs[ds->d] * scale[ds->d];
        info->rank = rank;
        info->cols = n;
        /* With fewer rows than columns some direction has no singular value at all. */
        double smin = m < n ? 0.0 : s[n - 1];
        info->cond = smin > 0 ? s[0] / smin : INFINITY;
    }
    free(work);
    free(iwork);
    free(A);
    free(rhs);
    free(scale);
    free(s);
    return rc;
}

void nn_linreg_singular_reason(const nn_linreg_data *ds, char *buf, size_t cap) {
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

void nn_linreg_evaluate(const nn_linreg_data *ds, nn_linreg_fit *f) {
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
    double *mean, *std; /* x_train = (x - mean) / std; 0 and 1 without standardising */
} train_data;

static void train_data_make(const nn_linreg_data *ds, bool standardize, train_data *td) {
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

/* The model and its loss on the examples rows[0..count) (the first count
 * when rows is NULL), recorded on the tape: X and y are inputs, w and b
 * parameters. */
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

long nn_linreg_batch_size(const nn_linreg_gd_config *cfg, long n) {
    return cfg->epochs > 0 && cfg->batch_size > 0 && cfg->batch_size < n ? cfg->batch_size : n;
}

long nn_linreg_updates(const nn_linreg_gd_config *cfg, long n) {
    long b = nn_linreg_batch_size(cfg, n);
    return cfg->epochs > 0 ? cfg->epochs * ((n + b - 1) / b) : cfg->steps;
}

/* Whether a feature is far from mean 0, variance 1: unscaled features are
 * the usual reason plain gradient descent diverges. */
static bool unscaled(const nn_linreg_data *ds) {
    for (int j = 0; j < ds->d; j++) {
        double m = 0, v = 0;
        for (long i = 0; i < ds->n; i++) m += ds->x[(size_t)i * ds->d + j];
        m /= (double)ds->n;
        for (long i = 0; i < ds->n; i++) v += (ds->x[(size_t)i * ds->d + j] - m) * (ds->x[(size_t)i * ds->d + j] - m);
        v /= (double)ds->n;
        if (fabs(m) > 1 || v > 4 || v < 0.25) return true;
    }
    return false;
}

int nn_linreg_gd(const nn_linreg_data *ds, const nn_linreg_gd_config *cfg, nn_linreg_fit *out, double **loss_out) {
    int d = ds->d, n = (int)ds->n;
    long updates = nn_linreg_updates(cfg, n);
    if (updates < 1 || updates > NN_LINREG_MAX_UPDATES)
        return nn_error("%ld updates is outside 1..%ld", updates, NN_LINREG_MAX_UPDATES);
    train_data td;
    train_data_make(ds, cfg->standardize, &td);
    nn_params params;
    nn_params_init(&params);
    nn_tensor *w = nn_params_add(&params, "w", 2, (int[]){1, d}, true);
    nn_tensor *b = nn_params_add(&params, "b", 1, (int[]){1}, false);
    nn_rng rng;
    nn_rng_seed(&rng, cfg->seed, 2);
    nn_init_uniform_fan_in(w, d, &rng);
    nn_init_uniform_fan_in(b, d, &rng);

    nn_optim_config ocfg = nn_optim_defaults(cfg->opt);
    nn_optim opt;
    nn_optim_init(&opt, &params, &ocfg);
    nn_ctx *ctx = nn_ctx_new(0);
    double *loss = nn_xmalloc((size_t)updates * sizeof(double));
    int *order = nn_xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) order[i] = i;
    int rc = 0;

    if (cfg->graph_path) {
        mse_loss(ctx, &td, d, NULL, n, w, b);
        rc = nn_graph_save_dot(ctx, cfg->graph_path);
        nn_ctx_reset(ctx);
    }
    bool mini_batch = cfg->epochs > 0;
    long batch = nn_linreg_batch_size(cfg, n), per_epoch = (n + batch - 1) / batch;
    nn_rng shuffle;
    nn_rng_seed(&shuffle, cfg->seed, 3);
    long diverged = 0;
    for (long step = 0; rc == 0 && step < updates; step++) {
        long in_epoch = step % per_epoch;
        if (mini_batch && in_epoch == 0) nn_rng_shuffle(&shuffle, order, n);
        long first = in_epoch * batch;
        int count = (int)(first + batch <= n ? batch : n - first);

        nn_ctx_reset(ctx);
        nn_tensor *l = mse_loss(ctx, &td, d, mini_batch ? order + first : NULL, count, w, b);
        double value = l->data[0];
        if (!isfinite(value)) {
            diverged = step + 1;
            break;
        }
        loss[step] = value;
        nn_params_zero_grad(&params);
        nn_backward(ctx, l);
        nn_optim_step(&opt, (float)cfg->lr);
        if (cfg->on_step) cfg->on_step(cfg->user, step + 1, updates, value);
    }
    if (rc == 0 && !diverged)
        for (size_t k = 0; k < params.count; k++)
            if (!isfinite(params.data[k])) diverged = updates + 1;
    if (rc == 0 && diverged) {
        rc = nn_error("loss diverged at step %ld (try a smaller learning rate%s)", diverged,
                      !cfg->standardize && unscaled(ds) ? ", or standardised features" : "");
    } else if (rc == 0) {
        /* Back to the original units: w_j x_std_j = (w_j / std_j) x_j - w_j mean_j / std_j. */
        out->w = nn_xmalloc((size_t)d * sizeof(double));
        out->b = b->data[0];
        for (int j = 0; j < d; j++) {
            out->w[j] = w->data[j] / td.std[j];
            out->b -= out->w[j] * td.mean[j];
        }
    }
    if (rc == 0 && loss_out) *loss_out = loss;
    else free(loss);
    free(order);
    nn_ctx_free(ctx);
    nn_optim_free(&opt);
    nn_params_free(&params);
    train_data_free(&td);
    return rc;
}
