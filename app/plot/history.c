/* A training run's curves: accuracy and loss per epoch. */
#include <stdlib.h>

#include "nn/error.h"
#include "plot/plot.h"
#include "core/util.h"

int nn_plot_history(const char *path, const nn_history *h) {
    bool has_val = h->has_val;
    int n = h->n;
    double *x = nn_xmalloc((size_t)n * 7 * sizeof(double));
    double *tr_acc = x + n, *te_acc = x + 2 * n, *tr_loss = x + 3 * n, *te_loss = x + 4 * n;
    for (int i = 0; i < n; i++) {
        x[i] = h->epochs[i].epoch;
        tr_acc[i] = 100.0 * h->epochs[i].train_acc;
        te_acc[i] = 100.0 * h->epochs[i].test_acc;
        tr_loss[i] = h->epochs[i].train_loss;
        te_loss[i] = h->epochs[i].test_loss;
    }
    nn_series acc[3] = {{"train", x, tr_acc, n, 0}, {"test", x, te_acc, n, 0}, {"validation", x, NULL, n, 0}};
    nn_series loss[3] = {{"train", x, tr_loss, n, 0}, {"test", x, te_loss, n, 0}, {"validation", x, NULL, n, 0}};
    if (has_val) {
        double *va = x + 5 * n, *vl = x + 6 * n;
        for (int i = 0; i < n; i++) va[i] = 100.0 * h->val_acc[i], vl[i] = h->val_loss[i];
        acc[2].y = va;
        loss[2].y = vl;
    }
    nn_panel panels[2] = {
        {"Accuracy per epoch", "epoch", "accuracy (%)", acc, has_val ? 3 : 2, 0, 0},
        {"Loss per epoch", "epoch", "loss", loss, has_val ? 3 : 2, 0, 0},
    };
    int rc = nn_plot(path, panels, 2);
    free(x);
    return rc;
}

