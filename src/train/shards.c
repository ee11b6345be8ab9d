/* Shards of a batch (shards.h): the replicas, the cut, the weighted sum. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "nn/replica.h"
#include "train/shards.h"

int shards_count(const nn_model *m, int batch) {
    if (!replica_pays(m)) return 1;
    int n = omp_get_max_threads();
    return n < batch ? n : batch;
}

void shards_init(shards *sh, nn_model *m, nn_ctx *ctx, int n) {
    sh->n = n;
    sh->s = nn_xcalloc((size_t)n, sizeof *sh->s);
    sh->s[0].model = m;
    sh->s[0].ctx = ctx;
    for (int k = 1; k < n; k++) {
        shard *s = &sh->s[k];
        s->grad = nn_xcalloc(m->params.count ? m->params.count : 1, sizeof *s->grad);
        replica_init(&s->replica, m, s->grad);
        s->model = &s->replica;
        s->ctx = nn_ctx_new(0);
    }
}

void shards_free(shards *sh) {
    for (int k = 1; k < sh->n; k++) {
        replica_free(&sh->s[k].replica);
        free(sh->s[k].grad);
        nn_ctx_free(sh->s[k].ctx);
    }
    free(sh->s);
    memset(sh, 0, sizeof *sh);
}

void shards_cut(shards *sh, int batch) {
    for (int k = 0, first = 0; k < sh->n; k++) {
        sh->s[k].first = first;
        sh->s[k].n = batch / sh->n + (k < batch % sh->n);
        first += sh->s[k].n;
    }
}

double shards_weigh(shards *sh) {
    long total = 0;
    for (int k = 0; k < sh->n; k++) total += sh->s[k].counted;
    double loss = 0.0;
    for (int k = 0; k < sh->n; k++) {
        sh->s[k].weight = total > 0 ? (double)sh->s[k].counted / (double)total : 0.0;
        loss += sh->s[k].weight * sh->s[k].loss->data[0];
    }
    return loss;
}

void shards_sum_grads(shards *sh) {
    enum { CHUNK = 4096 }; /* floats per task: 16 KiB of each buffer, in L1 while the shards are added */
    nn_params *p = &sh->s[0].model->params;
    long count = (long)p->count, chunks = (count + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
    for (long c = 0; c < chunks; c++) {
        long at = c * CHUNK, len = count - at < CHUNK ? count - at : CHUNK;
        float *g = p->grad + at, w0 = (float)sh->s[0].weight;
        for (long i = 0; i < len; i++) g[i] *= w0;
        for (int k = 1; k < sh->n; k++) {
            const float *gk = sh->s[k].grad + at;
            float w = (float)sh->s[k].weight;
            for (long i = 0; i < len; i++) g[i] += w * gk[i];
        }
    }
}
