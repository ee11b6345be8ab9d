/* PyTorch interop: checkpoints written by nn rebuilt in PyTorch from their
 * metadata alone (scripts/torch_model.py) give the same logits as nn.
 *
 * For each model the test loads the checkpoint in C, computes the logits of
 * the first 1000 MNIST test images in eval mode, writes them as raw float32
 * and runs tests/interop_torch.py, which rebuilds the model in PyTorch, loads
 * the weights with strict=True and compares (max |diff| <= 1e-4 relative to
 * the largest logit, every prediction the same). Models: an MLP with
 * LayerNorm, GELU and dropout trained by nn; a CNN with BatchNorm trained by
 * nn; a model built here that uses every layer kind and the non-default
 * arguments (stride, padding, pool stride, leaky slope) with made-up running
 * statistics; one of residual blocks, repeated and nested; and the committed
 * checkpoint of an earlier release. Also runs
 * scripts/torch_model.py as a user would and checks its accuracy and errors.
 * Needs data/mnist and Debian's python3-torch; without them each test says
 * skipped (SKIP) with the reason, never passed. Runs the binary named by $NN (default build/nn). */
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "perturb_model.h"
#include "run_nn.h"
#include "run_torch.h"
#include "nn/core.h"
#include "nn/data.h"
#include "nn/model.h"
#include "nn/rng.h"
#include "nn/safetensors.h"

#define N_IMAGES 1000
#define LEGACY_FIXTURE "tests/fixtures/checkpoints/mlp-v1.safetensors"

static const char *const cnn_spec = "conv(8,3,padding=1) batchnorm relu maxpool(2) conv(16,3) batchnorm relu "
                                    "avgpool(2) flatten linear(32) batchnorm leakyrelu dropout(0.2) linear(10)";

/* Loads the checkpoint in C, writes nn's logits of the first N_IMAGES test
 * images (eval mode) and has tests/interop_torch.py compare PyTorch's with
 * them; returns its exit status (-1 when nn could not load the file). */
static int compare_with_torch(const char *path) {
    char ckpt[256]; /* path may be one of tmp's reused buffers */
    snprintf(ckpt, sizeof ckpt, "%s", path);
    nn_model m;
    if (nn_model_load(&m, ckpt) != 0) {
        fprintf(stderr, "  nn_model_load(%s): %s\n", ckpt, nn_last_error());
        return -1;
    }
    const nn_dataset *test = test_set();
    int c = m.in_shape[0], h = m.in_shape[1], w = m.in_shape[2];
    CHECKF(test->n >= N_IMAGES && c == 1 && h * w == test->rows * test->cols, "%s: input [%d, %d, %d] for %dx%d images",
           ckpt, c, h, w, test->rows, test->cols);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){N_IMAGES, c, h, w});
    for (size_t i = 0; i < x->size; i++) x->data[i] = (test->images[i] / 255.0f - m.input_mean) / m.input_std;
    nn_tensor *logits = nn_model_forward(&m, ctx, x, NULL);
    CHECK(logits->ndim == 2 && logits->shape[0] == N_IMAGES && logits->shape[1] == m.classes);
    FILE *f = fopen(tmp("logits.f32"), "wb");
    CHECK(f && fwrite(logits->data, sizeof(float), logits->size, f) == logits->size);
    if (f) CHECK(fclose(f) == 0);
    nn_ctx_free(ctx);
    nn_model_free(&m);
    int rc = python("tests/interop_torch.py %s %s data/mnist %d", ckpt, tmp("logits.f32"), N_IMAGES);
    printf("%s%s", out_text, err_text); /* the line with the numbers */
    return rc;
}

/* Trains a model with the nn binary once per run (tests may run alone with
 * NN_TEST); returns the checkpoint's path, or NULL if training failed. */
static const char *trained(char path[256], const char *name, const char *args) {
    snprintf(path, 256, "%s", tmp(name)); /* tmp's buffers are reused */
    if (access(path, R_OK) == 0) return path;
    int rc = nn("train --train-limit 3000 --epochs 1 --seed 2 %s --save %s", args, path);
    CHECKF(rc == 0, "train %s exited %d: %s", args, rc, err_text);
    return rc == 0 ? path : NULL;
}

static const char *mlp_checkpoint(void) {
    static char path[256];
    return trained(path, "mlp.safetensors", "--hidden 64,32 --norm layer --act gelu --dropout 0.1 --input-dropout 0.1");
}

static const char *cnn_checkpoint(void) {
    static char path[256];
    char args[512];
    snprintf(args, sizeof args, "--arch '%s'", cnn_spec);
    return trained(path, "cnn.safetensors", args);
}

static void test_mlp_layernorm(void) {
    if (!can_run("PyTorch interop of an MLP")) return;
    const char *ckpt = mlp_checkpoint();
    if (ckpt) CHECKF(compare_with_torch(ckpt) == 0, "PyTorch's MLP differs from nn's (see above)");
}

static void test_cnn_batchnorm(void) {
    if (!can_run("PyTorch interop of a CNN")) return;
    const char *ckpt = cnn_checkpoint();
    if (!ckpt) return;
    /* The file must really hold running statistics that moved. */
    nn_safetensors st;
    CHECKF(nn_st_load(&st, ckpt) == 0, "%s", nn_last_error());
    const nn_st_tensor *t = nn_st_find(&st, "bn1.num_batches_tracked");
    CHECKF(t && t->ndim == 0, "no scalar bn1.num_batches_tracked");
    float tracked = 0;
    CHECK(nn_st_read_f32(&st, "bn1.num_batches_tracked", 0, NULL, &tracked) == 0);
    CHECKF(tracked > 0, "bn1.num_batches_tracked = %g after training", tracked);
    nn_st_free(&st);
    CHECKF(compare_with_torch(ckpt) == 0, "PyTorch's CNN differs from nn's (see above)");
}

/* Every layer kind and every non-default argument, with random weights and
 * made-up running statistics (a freshly built BatchNorm's mean 0 / variance 1
 * would hide a mix-up of the two). */
static void test_every_layer(void) {
    if (!can_run("PyTorch interop of every layer kind")) return;
    const char *spec = "conv(6,5,stride=2,padding=2) batchnorm tanh maxpool(3,stride=2) conv(4,2) sigmoid "
                       "avgpool(2,stride=1) flatten linear(24) layernorm leakyrelu(0.2) dropout(0.3) linear(16) "
                       "batchnorm gelu linear(12) relu linear(10)";
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 7, 0);
    CHECKF(nn_model_init(&m, spec, (int[]){1, 28, 28}, 10, &rng) == 0, "%s", nn_last_error());
    if (check_failures_) return;
    m.input_mean = 0.1307f;
    m.input_std = 0.3081f;
    perturb_model(&m, &rng);
    CHECKF(nn_model_save(&m, tmp("every.safetensors")) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    CHECKF(compare_with_torch(tmp("every.safetensors")) == 0, "PyTorch's model differs from nn's (see above)");
}

/* Residual blocks and repeat: a ResNet block (conv batchnorm relu conv
 * batchnorm inside), blocks repeated and nested, and a residual over
 * features; PyTorch's torch_model.Residual holds each block's layers under
 * its name (res1.conv2.weight). Random weights, made-up running statistics. */
static void test_residual_blocks(void) {
    if (!can_run("PyTorch interop of residual blocks")) return;
    const char *spec = "conv(8,3,padding=1) batchnorm relu residual(conv(8,3,padding=1) batchnorm relu "
                       "conv(8,3,padding=1) batchnorm) relu maxpool(2) repeat(2, residual(conv(8,3,padding=1) tanh "
                       "residual(conv(8,3,padding=1) batchnorm))) avgpool(2) flatten linear(32) "
                       "residual(layernorm linear(64) gelu dropout(0.2) linear(32)) relu linear(10)";
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 13, 0);
    CHECKF(nn_model_init(&m, spec, (int[]){1, 28, 28}, 10, &rng) == 0, "%s", nn_last_error());
    if (check_failures_) return;
    m.input_mean = 0.1307f;
    m.input_std = 0.3081f;
    perturb_model(&m, &rng);
    CHECK(nn_params_find(&m.params, "res2.res3.conv5.weight") && nn_params_find(&m.params, "res4.res5.conv7.weight"));
    CHECKF(nn_model_save(&m, tmp("residual.safetensors")) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    CHECKF(compare_with_torch(tmp("residual.safetensors")) == 0, "PyTorch's residual model differs from nn's (see above)");
}

/* No caps: a 200-layer MLP and a model of 500 parameter tensors rebuild in
 * PyTorch with the same logits. */
static void test_deep_models(void) {
    if (!can_run("PyTorch interop of deep models")) return;
    /* Each weight scaled by a gain that keeps the signal's size from layer to
     * layer (PyTorch's initialisation shrinks it): sqrt(6) for ReLU; for
     * tanh one below the edge of chaos, where rounding differences die out. */
    const struct {
        const char *block;
        int blocks;
        float gain;
    } models[] = {{"linear(16) relu", 99, 2.45f}, {"linear(8) tanh", 249, 1.5f}};
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        size_t cap = 32 + (strlen(models[k].block) + 1) * (size_t)models[k].blocks, pos;
        char *spec = malloc(cap);
        pos = (size_t)snprintf(spec, cap, "flatten");
        for (int i = 0; i < models[k].blocks; i++) pos += (size_t)snprintf(spec + pos, cap - pos, " %s", models[k].block);
        snprintf(spec + pos, cap - pos, " linear(10)");
        nn_model m;
        nn_rng rng;
        nn_rng_seed(&rng, 11, 0);
        CHECKF(nn_model_init(&m, spec, (int[]){1, 28, 28}, 10, &rng) == 0, "%s", nn_last_error());
        free(spec);
        if (check_failures_) return;
        m.input_mean = 0.1307f;
        m.input_std = 0.3081f;
        for (int i = 0; i < m.params.n; i += 2) /* fcN.weight, fcN.bias */
            for (size_t j = 0; j < m.params.tensors[i]->size; j++) m.params.tensors[i]->data[j] *= models[k].gain;
        CHECKF(nn_model_save(&m, tmp("deep.safetensors")) == 0, "%s", nn_last_error());
        nn_model_free(&m);
        CHECKF(compare_with_torch(tmp("deep.safetensors")) == 0, "PyTorch's %s model differs from nn's (see above)",
               models[k].block);
    }
}

/* A checkpoint of an earlier release: no nn.spec, an MLP in nn.layers/nn.act/nn.norm/nn.dropout. */
static void test_legacy_checkpoint(void) {
    if (!can_run("PyTorch interop of a legacy checkpoint")) return;
    CHECKF(access(LEGACY_FIXTURE, R_OK) == 0, "%s is missing", LEGACY_FIXTURE);
    CHECKF(compare_with_torch(LEGACY_FIXTURE) == 0, "PyTorch's legacy MLP differs from nn's (see above)");
}

/* The test accuracy after "test accuracy " in text, or -1. */
static double accuracy_in(const char *text) {
    const char *p = strstr(text, "test accuracy ");
    return p ? atof(p + 14) : -1.0;
}

/* A failure of torch_model.py: exit status 1 and one line on stderr naming the problem. */
static bool one_line_torch_error(int rc, const char *must_contain) {
    const char *nl = strchr(err_text, '\n');
    return rc == 1 && strncmp(err_text, "torch_model.py: error: ", 23) == 0 && nl && nl[1] == 0 &&
           strstr(err_text, must_contain) != NULL;
}

static void test_torch_model_cli(void) {
    if (!can_run("scripts/torch_model.py")) return;
    const char *ckpt = cnn_checkpoint();
    if (!ckpt) return;
    int rc = python("scripts/torch_model.py %s --data data/mnist", ckpt);
    CHECKF(rc == 0, "torch_model.py exited %d: %s", rc, err_text);
    CHECKF(strncmp(out_text, "test accuracy ", 14) == 0, "torch_model.py printed: %s", out_text);
    double torch_acc = accuracy_in(out_text);
    rc = nn("eval --model %s --data data/mnist", ckpt);
    CHECKF(rc == 0, "eval exited %d: %s", rc, err_text);
    double nn_acc = accuracy_in(out_text);
    printf("torch_model.py: test accuracy %.2f%%, nn eval: %.2f%%\n", torch_acc, nn_acc);
    CHECKF(torch_acc > 50.0 && fabs(torch_acc - nn_acc) <= 0.01 + 1e-9, "PyTorch %.2f%% vs nn eval %.2f%%", torch_acc,
           nn_acc);

    rc = python("scripts/torch_model.py --help");
    CHECKF(rc == 0 && strstr(out_text, "usage: torch_model.py") && strstr(out_text, "--data"), "--help: %d %s", rc,
           out_text);

    /* A file that is not there, one that is not safetensors, a safetensors
     * file without nn's metadata, a spec layer PyTorch is not told about, a
     * missing data folder. */
    rc = python("scripts/torch_model.py %s --data data/mnist", tmp("nope.safetensors"));
    CHECKF(one_line_torch_error(rc, "nope.safetensors"), "missing file: %d %s", rc, err_text);
    rc = python("scripts/torch_model.py Makefile --data data/mnist");
    CHECKF(one_line_torch_error(rc, "not a safetensors file"), "Makefile: %d %s", rc, err_text);

    float w[10] = {0};
    int64_t shape[1] = {10};
    nn_st_entry e = {.name = "fc1.bias", .ndim = 1, .shape = shape, .data = w};
    CHECK(nn_st_save(tmp("plain.safetensors"), &e, 1, NULL, NULL, 0) == 0);
    rc = python("scripts/torch_model.py %s --data data/mnist", tmp("plain.safetensors"));
    CHECKF(one_line_torch_error(rc, "missing metadata"), "no metadata: %d %s", rc, err_text);

    const char *keys[] = {"nn.arch", "nn.spec", "nn.input_shape", "nn.input_mean", "nn.input_std"};
    const char *values[] = {"mlp", "flatten swish linear(10)", "1,28,28", "0.13", "0.31"};
    CHECK(nn_st_save(tmp("swish.safetensors"), &e, 1, keys, values, 5) == 0);
    rc = python("scripts/torch_model.py %s --data data/mnist", tmp("swish.safetensors"));
    CHECKF(one_line_torch_error(rc, "unknown layer 'swish'"), "unknown layer: %d %s", rc, err_text);

    rc = python("scripts/torch_model.py %s --data %s", ckpt, tmp("no-such-dir"));
    CHECKF(one_line_torch_error(rc, "no-such-dir"), "missing data folder: %d %s", rc, err_text);
}

TEST_MAIN(TEST(test_mlp_layernorm), TEST(test_cnn_batchnorm), TEST(test_every_layer), TEST(test_residual_blocks),
          TEST(test_deep_models), TEST(test_legacy_checkpoint), TEST(test_torch_model_cli))
