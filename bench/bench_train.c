/* Training-speed benchmark: whole MNIST epochs of the basic and advanced
 * configurations, against the machine's own sgemm peak measured in the same
 * run. Prints one "key value" line per measurement (scripts/bench.sh turns
 * them and PyTorch's into the table of docs/PERFORMANCE.md).
 *
 *   build/bench/bench_train [EPOCHS] [CONFIG...]     (defaults: 3, basic advanced)
 *
 * CONFIG is basic or advanced, with -bf16 appended for the linear layers'
 * products in bf16 (nn/precision.h); on a CPU without AVX512_BF16 a bf16
 * configuration is skipped with a line on stderr and no keys.
 *
 * The sgemm peak and each configuration run in child processes: a child's
 * peak RSS is its own, and the parent never starts OpenMP threads (a child
 * forked after that would run on one thread).
 * The first epoch is a warm-up and is not counted; the median of the others
 * is reported. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "nn/precision.h"
#include "nn/train.h"
#include "ops/gemm_bf16.h"
#include "core/util.h"

void openblas_set_num_threads(int n);
char *openblas_get_corename(void);


/* Best-of-5 GFLOP/s of C[M,N] = A[M,K] B[N,K]^T, in fp32 (cblas_sgemm) or
 * with nn's bf16 GEMM (conversion of both operands included). */
static double gemm_gflops(int M, int N, int K, bool bf16) {
    float *a = nn_xmalloc((size_t)M * K * sizeof(float)), *b = nn_xmalloc((size_t)N * K * sizeof(float)),
          *c = nn_xmalloc((size_t)M * N * sizeof(float));
    void *scratch = bf16 ? aligned_alloc(64, (nn_gemm_bf16_scratch_bytes(M, N, K) + 63) / 64 * 64) : NULL;
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 1e-3f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 1e-3f;
    double best = 0.0;
    for (int r = 0; r < 6; r++) {
        double t = nn_seconds();
        int reps = 10;
        for (int i = 0; i < reps; i++) {
            if (bf16) nn_gemm_bf16(false, true, M, N, K, a, K, b, K, false, c, N, scratch);
            else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        }
        double g = 2.0 * M * N * K * reps / (nn_seconds() - t) / 1e9;
        if (r > 0 && g > best) best = g; /* r = 0 warms up */
    }
    free(a);
    free(b);
    free(c);
    free(scratch);
    return best;
}

/* The GEMMs of one training step of an MLP (forward, weight gradients, input
 * gradients except the first layer's), replayed alone: what the step would
 * cost if everything but GEMM were free. */
/* The benchmarked MLP's widths: 784-1024-1024-10. */
static const int sizes[] = {784, 1024, 1024, 10};
#define N_LINEAR 3

static double gemm_step_seconds(int B, int reps, bool bf16) {
    size_t max = 0;
    for (int i = 0; i <= N_LINEAR; i++) max = (size_t)sizes[i] > max ? (size_t)sizes[i] : max;
    float *x = nn_xcalloc(max * (size_t)B, sizeof(float)), *w = nn_xcalloc(max * max, sizeof(float)),
          *y = nn_xcalloc(max * (size_t)B, sizeof(float)), *dw = nn_xcalloc(max * max, sizeof(float));
    /* the largest of the step's products, as nn_linear sizes it */
    void *scratch = bf16 ? aligned_alloc(64, (nn_gemm_bf16_scratch_bytes((int)max, (int)max, (int)max) + 63) / 64 * 64)
                         : NULL;
    double t = nn_seconds();
    for (int r = 0; r < reps; r++)
        for (int l = 0; l < N_LINEAR; l++) {
            int in = sizes[l], out = sizes[l + 1];
            if (bf16) {
                nn_gemm_bf16(false, true, B, out, in, x, in, w, in, false, y, out, scratch);
                nn_gemm_bf16(true, false, out, in, B, y, out, x, in, true, dw, in, scratch);
                if (l > 0) nn_gemm_bf16(false, false, B, in, out, y, out, w, in, true, x, in, scratch);
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, B, 1.0f, y, out, x, in, 1.0f, dw, in);
            if (l > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in, out, 1.0f, y, out, w, in, 1.0f, x, in);
        }
    double s = (nn_seconds() - t) / reps;
    free(x);
    free(w);
    free(y);
    free(dw);
    free(scratch);
    return s;
}

/* FLOPs of one epoch: 2*in*out per image for the forward product, the same
 * for the weight gradient, and for the input gradient of every layer but the
 * first (the images need no gradient). */
static double epoch_flops(int n_images) {
    double per_image = 0.0;
    for (int l = 0; l < N_LINEAR; l++) {
        double mac = 2.0 * sizes[l] * sizes[l + 1];
        per_image += mac * (l > 0 ? 3 : 2);
    }
    return per_image * n_images;
}

/* The configurations; *bf16 says whether the name ends in -bf16. Returns -1
 * for an unknown name. */
static int configure(const char *name, nn_train_config *cfg, bool *bf16) {
    size_t len = strlen(name);
    *bf16 = len > 5 && strcmp(name + len - 5, "-bf16") == 0;
    if (*bf16) len -= 5;
    bool basic = len == 5 && strncmp(name, "basic", 5) == 0;
    if (!basic && !(len == 8 && strncmp(name, "advanced", 8) == 0)) return -1;
    memset(cfg, 0, sizeof *cfg);
    nn_mlp_config mlp = {.n_hidden = N_LINEAR - 1, .hidden = sizes + 1, .classes = sizes[N_LINEAR]};
    nn_mlp_config *m = &mlp;
    m->act = NN_ACT_RELU;
    cfg->loss = NN_LOSS_CE;
    cfg->precision = *bf16 ? NN_PRECISION_BF16 : NN_PRECISION_FP32;
    cfg->batch_size = 256;
    cfg->seed = 1;
    if (basic) {
        cfg->opt = nn_optim_defaults(NN_OPT_SGD);
        cfg->sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 0.1f};
    } else {
        m->layer_norm = true;
        m->act = NN_ACT_GELU;
        m->dropout = 0.1f;
        cfg->opt = nn_optim_defaults(NN_OPT_ADAMW);
        cfg->sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 1e-3f};
    }
    cfg->spec = nn_mlp_spec(m); /* the process's to the end: children exit after one run */
    return 0;
}

/* Runs in the child: trains, reports, exits. */
static int run_config(const char *name, int epochs, const nn_train_data *data) {
    nn_train_config cfg;
    bool bf16;
    configure(name, &cfg, &bf16);
    cfg.epochs = epochs;
    cfg.label = name;
    nn_model model;
    nn_history h;
    if (nn_train(&cfg, data, &model, &h) < 0) {
        fprintf(stderr, "bench: %s\n", nn_last_error());
        return 1;
    }
    double secs[64];
    int n = 0;
    for (int e = 1; e < h.n && n < 64; e++) secs[n++] = data->train.n / h.epochs[e].images_per_sec;
    double epoch_s = median(secs, n);
    double flops = epoch_flops(data->train.n);
    int steps = (data->train.n + cfg.batch_size - 1) / cfg.batch_size;
    double gemm_s = gemm_step_seconds(cfg.batch_size, 20, bf16) * steps;

    nn_ctx *ctx = nn_ctx_new(0);
    double eval_s[5];
    for (int r = 0; r < 5; r++) {
        double t = nn_seconds();
        nn_evaluate(&model, ctx, &data->test, NN_LOSS_CE, NULL, NULL);
        eval_s[r] = nn_seconds() - t;
    }
    printf("%s.epoch_seconds %.3f\n", name, epoch_s);
    printf("%s.images_per_sec %.0f\n", name, data->train.n / epoch_s);
    /* the least disturbed epoch, for a machine shared with other jobs */
    printf("%s.fastest_images_per_sec %.0f\n", name, data->train.n / secs[0]); /* median() sorted secs */
    printf("%s.gflops %.1f\n", name, flops / epoch_s / 1e9);
    printf("%s.gemm_seconds %.3f\n", name, gemm_s);
    printf("%s.other_seconds %.3f\n", name, epoch_s - gemm_s);
    printf("%s.eval_seconds %.4f\n", name, median(eval_s, 5));
    printf("%s.test_acc %.4f\n", name, h.epochs[h.n - 1].test_acc);
    fflush(stdout);
    nn_ctx_free(ctx);
    nn_history_free(&h);
    nn_model_free(&model);
    return 0;
}

/* Runs fn(arg) in a child process and waits; returns 0 if it exited 0 and
 * fills *ru with its resource usage. */
static int in_child(int (*fn)(const char *), const char *arg, struct rusage *ru) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(fn(arg));
    int status;
    if (pid < 0 || wait4(pid, &status, 0, ru) < 0 || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

static int epochs_arg = 3;

/* 1024^3 at all threads and at one: OpenBLAS's sgemm and, where the CPU
 * runs it, the bf16 GEMM. */
static int peak_child(const char *unused) {
    (void)unused;
    bool bf16 = nn_precision_supported(NN_PRECISION_BF16);
    printf("sgemm.kernels %s\n", openblas_get_corename()); /* OPENBLAS_CORETYPE or OpenBLAS's own pick */
    printf("sgemm.peak_gflops %.1f\n", gemm_gflops(1024, 1024, 1024, false));
    if (bf16) printf("bf16.kernel %s\n", nn_gemm_bf16_kernel(1024, 1024, 1024)); /* as bench_gemm says it */
    if (bf16) printf("bf16.peak_gflops %.1f\n", gemm_gflops(1024, 1024, 1024, true));
    omp_set_num_threads(1);
    openblas_set_num_threads(1);
    printf("sgemm.peak_gflops_1thread %.1f\n", gemm_gflops(1024, 1024, 1024, false));
    if (bf16) printf("bf16.peak_gflops_1thread %.1f\n", gemm_gflops(1024, 1024, 1024, true));
    fflush(stdout);
    return 0;
}

enum { SKIPPED = 3 }; /* a child's exit status: bf16 on a CPU without it */

static int config_child(const char *name) {
    nn_train_config cfg;
    bool bf16;
    if (configure(name, &cfg, &bf16) != 0) {
        fprintf(stderr, "bench: unknown configuration '%s' (basic, advanced, basic-bf16, advanced-bf16)\n", name);
        return 2;
    }
    if (bf16 && nn_set_precision(NN_PRECISION_BF16) != 0) {
        fprintf(stderr, "bench: %s skipped: %s\n", name, nn_last_error());
        return SKIPPED;
    }
    nn_train_data data;
    if (nn_train_data_load(&data, "data/mnist", 0, 0.0f) != 0) {
        fprintf(stderr, "bench: %s (run make data)\n", nn_last_error());
        return 1;
    }
    int rc = run_config(name, epochs_arg + 1, &data);
    nn_train_data_free(&data);
    return rc;
}

int main(int argc, char **argv) {
    epochs_arg = argc > 1 ? atoi(argv[1]) : 3;
    if (epochs_arg < 1) epochs_arg = 3;
    const char *defaults[] = {"basic", "advanced"};
    const char **configs = argc > 2 ? (const char **)argv + 2 : defaults;
    int n_configs = argc > 2 ? argc - 2 : 2;
    struct rusage ru;
    if (in_child(peak_child, NULL, &ru) != 0) return 1;
    for (int c = 0; c < n_configs; c++) {
        int rc = in_child(config_child, configs[c], &ru);
        if (rc == SKIPPED) continue;
        if (rc != 0) {
            fprintf(stderr, "bench: configuration %s failed\n", configs[c]);
            return rc == 2 ? 2 : 1;
        }
        printf("%s.peak_rss_mb %.0f\n", configs[c], ru.ru_maxrss / 1024.0);
    }
    return 0;
}
