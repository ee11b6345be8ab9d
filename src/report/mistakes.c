/* The examples a model gets wrong with the most confidence: what `nn eval
 * --errors` draws. An evaluation pass like nn_evaluate's, keeping a short
 * list sorted by the probability of the wrong prediction. */
#include <math.h>

#include "nn/error.h"
#include "nn/report.h"

/* Whether mistake a goes before b: more confident first, then by index. */
static int before(const nn_mistake *a, const nn_mistake *b) {
    return a->confidence > b->confidence || (a->confidence == b->confidence && a->index < b->index);
}

/* Inserts e into the sorted list top[0..*n), which keeps at most max. */
static void keep(nn_mistake *top, int *n, int max, nn_mistake e) {
    if (*n == max && !before(&e, &top[max - 1])) return;
    int i = *n < max ? (*n)++ : max - 1;
    for (; i > 0 && before(&e, &top[i - 1]); i--) top[i] = top[i - 1];
    top[i] = e;
}

int nn_find_mistakes(nn_model *m, nn_ctx *ctx, const nn_dataset *ds, nn_mistake *out, int max, int *n_wrong) {
    enum { BATCH = 1000 };
    if (max < 1) return nn_error("nn_find_mistakes: room for %d mistakes", max);
    if (m->in_shape[0] != 1 || m->in_shape[1] != ds->rows || m->in_shape[2] != ds->cols)
        return nn_error("the model takes [%d, %d, %d] images, the dataset has %dx%d images", m->in_shape[0],
                        m->in_shape[1], m->in_shape[2], ds->rows, ds->cols);
    bool grad = nn_set_grad_enabled(ctx, false), training = nn_set_training(ctx, false);
    int C = m->classes, kept = 0, wrong = 0;
    nn_loader l;
    nn_loader_init(&l, ds, BATCH, 0, 0, m->input_mean, m->input_std);
    nn_loader_start_epoch(&l);
    int labels[BATCH];
    for (int first = 0; first < ds->n; first += BATCH) {
        int B = ds->n - first < BATCH ? ds->n - first : BATCH;
        nn_ctx_reset(ctx);
        nn_tensor *x = nn_input(ctx, "x", 4, (int[]){B, 1, ds->rows, ds->cols});
        nn_loader_next(&l, x->data, labels);
        const float *logits = nn_model_forward(m, ctx, x, NULL)->data;
        for (int i = 0; i < B; i++) {
            const float *z = logits + (size_t)i * C;
            int pred = 0;
            for (int k = 1; k < C; k++)
                if (z[k] > z[pred]) pred = k;
            if (pred == labels[i]) continue;
            wrong++;
            /* softmax(z)[pred] = 1 / sum_k exp(z_k - z_pred), each term <= 1 */
            double sum = 0.0;
            for (int k = 0; k < C; k++) sum += exp((double)z[k] - z[pred]);
            keep(out, &kept, max, (nn_mistake){first + i, labels[i], pred, (float)(1.0 / sum)});
        }
    }
    nn_ctx_reset(ctx);
    nn_loader_free(&l);
    nn_set_grad_enabled(ctx, grad);
    nn_set_training(ctx, training);
    if (n_wrong) *n_wrong = wrong;
    return kept;
}
