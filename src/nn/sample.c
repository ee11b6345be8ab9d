/* Drawing the next token from a model's scores: greedy, or softmax with a
 * temperature, optionally restricted to the k most probable tokens. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "nn/model.h"

int nn_sample_token(const float *logits, int V, float temperature, int top_k, nn_rng *rng) {
    NN_CHECK(V >= 1 && temperature >= 0.0f && top_k >= 0, "nn_sample_token: V %d, temperature %g, top-k %d", V,
             temperature, top_k);
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (temperature == 0.0f || top_k == 1) return best;
    /* The k-th largest score is the threshold: ties with it stay in. */
    float threshold = -INFINITY;
    if (top_k > 0 && top_k < V) {
        float *sorted = nn_xmalloc((size_t)V * sizeof *sorted);
        memcpy(sorted, logits, (size_t)V * sizeof *sorted);
        for (int k = 0; k < top_k; k++) { /* partial selection: k passes, k is small */
            int m = k;
            for (int v = k + 1; v < V; v++)
                if (sorted[v] > sorted[m]) m = v;
            float t = sorted[k];
            sorted[k] = sorted[m];
            sorted[m] = t;
        }
        threshold = sorted[top_k - 1];
        free(sorted);
    }
    /* p_v = exp((z_v - z_max) / T) / sum, over the tokens kept */
    double total = 0.0;
    for (int v = 0; v < V; v++)
        if (logits[v] >= threshold) total += exp((double)(logits[v] - logits[best]) / temperature);
    double u = nn_rng_uniform(rng) * total, acc = 0.0;
    int last = best;
    for (int v = 0; v < V; v++) {
        if (logits[v] < threshold) continue;
        acc += exp((double)(logits[v] - logits[best]) / temperature);
        last = v;
        if (u < acc) return v;
    }
    return last; /* u rounded up to the total */
}
