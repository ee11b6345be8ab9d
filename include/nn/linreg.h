/* Linear regression, the first model of the course:
 *
 *   model     y_hat = X w^T + b          X [n, D], w [1, D] (nn.Linear's layout), b [1]
 *   loss      L = (1/n) sum_i (y_hat_i - y_i)^2
 *   gradient  dL/dw = (2/n) (y_hat - y)^T X,  dL/db = (2/n) sum_i (y_hat_i - y_i)
 *
 * nn_linreg_gd never writes the gradient out: the forward pass (nn_linear,
 * nn_mse) is recorded on the tape and nn_backward computes it, exactly as
 * for an MLP. nn_linreg_least_squares gives the closed-form answer of the
 * same problem in double precision (LAPACK's dgelsd, an SVD, which also tells
 * when the design is rank-deficient) to check it against. */
#ifndef NN_LINREG_H
#define NN_LINREG_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "nn/optim.h"
#include "nn/api.h"

NN_BEGIN_DECLS

/* Upper bounds that keep memory use sane and loops finite. */
#define NN_LINREG_MAX_EXAMPLES 10000000L
#define NN_LINREG_MAX_FEATURES 1000
#define NN_LINREG_MAX_VALUES 50000000L /* n * D */
#define NN_LINREG_MAX_UPDATES 10000000L

/* A regression problem in its original units. */
typedef struct nn_linreg_data {
    long n;
    int d;
    double *x;     /* [n, d] row-major */
    double *y;     /* [n] */
    char **names;  /* d feature names */
    char *y_name;
    bool synthetic;
    double *true_w; /* [d], synthetic data only */
    double true_b;
} nn_linreg_data;

/* x ~ N(0, 1) per feature, y = x . w + b + noise * N(0, 1), with w and b
 * drawn once from seed (two decimals, so the printed truth is exact).
 * -1 with the error for sizes outside the bounds above. */
int nn_linreg_synthetic(nn_linreg_data *ds, long n, int features, double noise, uint64_t seed);
/* Columns of a CSV file with a header row: the target y_col and the
 * features x_cols ("a,b,c"; NULL = every other column), each a header name
 * or a 0-based index. -1 with the error naming the file and the column. */
int nn_linreg_load_csv(nn_linreg_data *ds, const char *path, const char *y_col, const char *x_cols);
void nn_linreg_data_free(nn_linreg_data *ds);

/* A fitted line in the original units: y_hat = x . w + b. */
typedef struct nn_linreg_fit {
    double *w; /* [d], owned */
    double b;
    double mse, r2; /* on the data, from nn_linreg_evaluate; r2 is NaN when y is constant */
} nn_linreg_fit;

void nn_linreg_fit_free(nn_linreg_fit *f);
/* Fills f->mse and f->r2 on the data, in double precision. */
void nn_linreg_evaluate(const nn_linreg_data *ds, nn_linreg_fit *f);

/* How well-posed the closed form is. */
typedef struct nn_lstsq_info {
    int rank, cols; /* rank of [X 1] and its number of columns */
    double cond;    /* condition number of [X 1] with unit-length columns */
} nn_lstsq_info;

/* Minimises |[X 1] [w; b] - y|^2 by an SVD. The columns are first scaled to
 * unit length, so that the rank decision does not depend on the features'
 * units; singular values below eps * max(n, D+1) times the largest count as
 * zero (NumPy's lstsq default). With a rank-deficient design this is the
 * minimum-norm solution of the scaled problem. Allocates out->w. */
int nn_linreg_least_squares(const nn_linreg_data *ds, nn_linreg_fit *out, nn_lstsq_info *info);
/* Why the design is singular when the reason is plain (fewer examples than
 * unknowns, a constant feature, two identical features): "; feature 'x' is
 * constant, ..." into buf, else "". */
void nn_linreg_singular_reason(const nn_linreg_data *ds, char *buf, size_t cap);

/* Gradient descent through the autograd. */
typedef struct nn_linreg_gd_config {
    nn_optim_kind opt;
    double lr;
    long steps;      /* full-batch steps, when epochs is 0 */
    long epochs;     /* > 0: mini-batch passes over the shuffled data instead */
    long batch_size; /* with epochs */
    bool standardize; /* train on features scaled to mean 0, variance 1 (the fit is reported in original units) */
    uint64_t seed;    /* initial weights and shuffling */
    const char *graph_path; /* Graphviz DOT of one MSE evaluation; NULL = none */
    /* Called after every update with its number (1-based), the number of
     * updates in all and the update's loss; NULL = none. nn_linreg_gd
     * writes nothing to the terminal itself. */
    void (*on_step)(void *user, long step, long updates, double loss);
    void *user;
} nn_linreg_gd_config;

/* Examples per update and updates in all for cfg on n examples. */
long nn_linreg_batch_size(const nn_linreg_gd_config *cfg, long n);
long nn_linreg_updates(const nn_linreg_gd_config *cfg, long n);

/* Trains w and b; out gets the fit in original units (allocated), loss
 * (allocated, nn_linreg_updates values; may be NULL) the loss of every
 * update. -1 with the error when the loss stops being finite (saying
 * whether unscaled features are the likely reason) or the graph cannot be
 * written. */
int nn_linreg_gd(const nn_linreg_data *ds, const nn_linreg_gd_config *cfg, nn_linreg_fit *out, double **loss);

NN_END_DECLS

#endif
