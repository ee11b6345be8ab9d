/* CNN training-speed benchmark (nn's side; bench/torch_cnn.py is PyTorch's):
 * the two reference CNNs of issue 12 and the layers of --preset cnn, batch
 * 128, Adam lr 1e-3, MNIST, no augmentation, through nn_train itself. Each
 * configuration trains one warm-up epoch and then timed epochs of STEPS
 * steps each (the first STEPS * 128 training images); the median epoch is
 * reported, with the work done per second against this machine's sgemm
 * peak (measured in the same run, 2 threads and 1), the evaluation time of
 * the 10,000 test images and the peak RSS of the configuration's process.
 * Prints one "key value" line per measurement.
 *
 *   build/bench/bench_conv [STEPS [EPOCHS]] [CONFIG...]
 *       STEPS per timed epoch (default 200), EPOCHS timed (default 3),
 *       CONFIG: keras, examples, preset (default keras examples)
 *
 * The FLOPs counted are those of the matrix-product layers: 2 per
 * multiply-add of the direct computation forward, and three products in
 * training (forward, weight gradient, input gradient) except that the first
 * layer's input needs no gradient. Layers that only move or compare data
 * count nothing. "done" counts the multiply-adds nn really does instead
 * (Winograd's are fewer; its transforms are not counted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "nn/train.h"
#include "core/util.h"
#include "ops/conv_internal.h" /* which layers run as Winograd */

#define BATCH 128

char *openblas_get_corename(void);

typedef struct config {
    const char *name, *spec;
} config;

static const config configs[] = {
    {"keras", "conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten dropout(0.5) linear(10)"},
    {"examples",
     "conv(32,3) relu conv(64,3) relu maxpool(2) dropout(0.25) flatten linear(128) relu dropout(0.5) linear(10)"},
    {"preset",
     "conv(32,3) batchnorm relu conv(32,3) batchnorm relu maxpool(2) conv(64,3) batchnorm relu conv(64,3) "
     "batchnorm relu maxpool(2) flatten linear(128) batchnorm relu dropout(0.3) linear(10)"},
};
#define N_CONFIGS (int)(sizeof configs / sizeof configs[0])

/* Training FLOPs per image of the model's conv and linear layers (see the
 * top), and in *done those nn really does: a 3x3 convolution that runs as
 * Winograd F(4x4, 3x3) multiplies 36 points per 4x4 output tile (partial
 * tiles included) instead of 9 taps per output. */
static double train_flops_per_image(const nn_model *m, double *forward, double *done) {
    double train = 0.0;
    *forward = *done = 0.0;
    bool first = true;
    for (int i = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        double mac, real;
        if (strcmp(nn_layer_kind_name(l->kind), "conv") == 0) {
            int C = l->in_shape[0], OH = l->out_shape[1], OW = l->out_shape[2];
            mac = real = (double)l->out * C * l->kernel * l->kernel * OH * OW;
            conv_geom g = {.B = BATCH, .C = C, .H = l->in_shape[1], .W = l->in_shape[2], .O = l->out, .KH = l->kernel,
                           .KW = l->kernel, .S = l->stride, .P = l->padding, .OH = OH, .OW = OW};
            g.K = C * l->kernel * l->kernel;
            g.L = OH * OW;
            if (conv_choose_algo(&g) == CONV_WINOGRAD) real = 36.0 * ((OH + 3) / 4) * ((OW + 3) / 4) * C * l->out;
        } else if (strcmp(nn_layer_kind_name(l->kind), "linear") == 0) {
            mac = real = (double)l->out * l->in_shape[0];
        } else {
            continue;
        }
        *forward += 2.0 * mac;
        train += 2.0 * mac * (first ? 2 : 3);
        *done += 2.0 * real * (first ? 2 : 3);
        first = false;
    }
    return train;
}

static int steps_arg = 200, epochs_arg = 3;

static int run_config(const config *c) {
    nn_train_data data;
    if (nn_train_data_load(&data, "data/mnist", steps_arg * BATCH, 0.0f) != 0) {
        fprintf(stderr, "bench_conv: %s (run make data)\n", nn_last_error());
        return 1;
    }
    nn_train_config cfg = {.spec = c->spec, .loss = NN_LOSS_CE, .batch_size = BATCH, .seed = 1,
                           .epochs = epochs_arg + 1, .label = c->name};
    cfg.opt = nn_optim_defaults(NN_OPT_ADAM);
    cfg.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 1e-3f};
    nn_model model;
    nn_history h;
    if (nn_train(&cfg, &data, &model, &h) < 0) {
        fprintf(stderr, "bench_conv: %s: %s\n", c->name, nn_last_error());
        return 1;
    }
    double ips[64];
    int n = 0;
    for (int e = 1; e < h.n && n < 64; e++) ips[n++] = h.epochs[e].images_per_sec;
    double fastest = 0.0;
    for (int e = 0; e < n; e++) fastest = ips[e] > fastest ? ips[e] : fastest;
    double images_per_sec = median(ips, n), forward, done;
    double flops = train_flops_per_image(&model, &forward, &done);

    nn_ctx *ctx = nn_ctx_new(0);
    double eval_s[3], acc = 0.0;
    for (int r = 0; r < 3; r++) {
        double t = nn_seconds();
        acc = nn_evaluate(&model, ctx, &data.test, NN_LOSS_CE, NULL, NULL);
        eval_s[r] = nn_seconds() - t;
    }
    printf("%s.images_per_sec %.0f\n", c->name, images_per_sec);
    printf("%s.fastest_images_per_sec %.0f\n", c->name, fastest);
    printf("%s.step_ms %.2f\n", c->name, 1e3 * BATCH / images_per_sec);
    printf("%s.forward_mflop_per_image %.2f\n", c->name, forward / 1e6);
    printf("%s.train_mflop_per_image %.2f\n", c->name, flops / 1e6);
    printf("%s.gflops %.1f\n", c->name, flops * images_per_sec / 1e9);
    printf("%s.done_mflop_per_image %.2f\n", c->name, done / 1e6);
    printf("%s.done_gflops %.1f\n", c->name, done * images_per_sec / 1e9);
    printf("%s.eval_seconds %.4f\n", c->name, median(eval_s, 3));
    printf("%s.test_acc %.4f\n", c->name, acc);
    fflush(stdout);
    nn_ctx_free(ctx);
    nn_history_free(&h);
    nn_model_free(&model);
    nn_train_data_free(&data);
    return 0;
}

static int peak_child(const void *threads) {
    int n = *(const int *)threads;
    printf("sgemm.peak_gflops%s %.1f\n", n == 1 ? "_1thread" : "", bench_sgemm_peak(n));
    if (n == 1) printf("sgemm.kernels %s\n", openblas_get_corename()); /* OPENBLAS_CORETYPE or OpenBLAS's own pick */
    fflush(stdout); /* the child leaves by _exit */
    return 0;
}

static int config_child(const void *c) { return run_config(c); }

int main(int argc, char **argv) {
    int a = 1;
    if (a < argc && atoi(argv[a]) > 0) steps_arg = atoi(argv[a++]);
    if (a < argc && atoi(argv[a]) > 0) epochs_arg = atoi(argv[a++]);
    const config *run[N_CONFIGS];
    int n_run = 0;
    for (; a < argc; a++) {
        int k = 0;
        while (k < N_CONFIGS && strcmp(argv[a], configs[k].name) != 0) k++;
        if (k == N_CONFIGS || n_run == N_CONFIGS) {
            fprintf(stderr, "usage: bench_conv [STEPS [EPOCHS]] [keras|examples|preset...]\n");
            return 2;
        }
        run[n_run++] = &configs[k];
    }
    if (n_run == 0) run[n_run++] = &configs[0], run[n_run++] = &configs[1];
    struct rusage ru;
    for (int threads = 2; threads >= 1; threads--)
        if (bench_in_child(peak_child, &threads, &ru) != 0) return 1;
    for (int c = 0; c < n_run; c++) {
        if (bench_in_child(config_child, run[c], &ru) != 0) {
            fprintf(stderr, "bench_conv: configuration %s failed\n", run[c]->name);
            return 1;
        }
        printf("%s.peak_rss_mb %.0f\n", run[c]->name, ru.ru_maxrss / 1024.0);
    }
    return 0;
}
