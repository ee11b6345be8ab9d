/* PyTorch -> nn: models trained in PyTorch and written straight from their
 * state_dict() by scripts/torch_model.py's save_model (BatchNorm's
 * num_batches_tracked stays int64, as PyTorch has it) load in nn and compute
 * what PyTorch computes.
 *
 * tests/torch_import.py trains a BatchNorm CNN and an MLP (LayerNorm, GELU,
 * BatchNorm1d, fed flat input) in PyTorch, seeded, on 3000 MNIST training
 * images, saves them and writes PyTorch's logits of the first 1000 test
 * images and its count of right answers on all 10000. Here nn loads each file
 * through the C API (nn_model_load + nn_model_forward, eval mode) and its
 * logits must match PyTorch's within 1e-4 x max(1, max |logit|) with every
 * prediction the same; `nn eval` must count exactly as many right answers as
 * PyTorch; `nn predict` must run on it. Also: save_model refuses modules nn
 * cannot express, naming them; and, without PyTorch, a checkpoint whose
 * num_batches_tracked is rewritten as I64 loads (nn_model_load), and one
 * whose count is not exact in float32 is refused naming the tensor and the
 * value.
 * Needs data/mnist and Debian's python3-torch; without them each test says
 * skipped (SKIP) with the reason, never passed. Runs the binary named by $NN
 * (default build/nn). */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "run_nn.h"
#include "run_torch.h"
#include "nn/core.h"
#include "nn/data.h"
#include "nn/error.h"
#include "nn/model.h"
#include "nn/safetensors.h"

#define N_LOGITS 1000
#define TOLERANCE 1e-4

/* What tests/torch_import.py printed, once per run (tests may run alone with NN_TEST). */
static char torch_report[sizeof out_text];

static bool trained_in_torch(void) {
    static int state; /* 0: not run yet, 1: done, -1: failed */
    if (state == 0) {
        int rc = python("tests/torch_import.py %s data/mnist", tmpdir);
        CHECKF(rc == 0, "tests/torch_import.py exited %d: %s", rc, err_text);
        snprintf(torch_report, sizeof torch_report, "%s", out_text);
        state = rc == 0 ? 1 : -1;
    }
    return state == 1;
}

/* From the line "NAME: torch correct C of N; bn1.num_batches_tracked B; spec ...". */
static bool torch_numbers(const char *name, long *correct, long *n, long *tracked) {
    char key[64];
    snprintf(key, sizeof key, "%s: torch correct ", name);
    const char *p = strstr(torch_report, key);
    return p && sscanf(p + strlen(key), "%ld of %ld; bn1.num_batches_tracked %ld", correct, n, tracked) == 3;
}

/* "(C of N)" in nn eval's output. */
static bool eval_numbers(const char *text, long *correct, long *n) {
    const char *p = strstr(text, "test accuracy ");
    p = p ? strchr(p, '(') : NULL;
    return p && sscanf(p, "(%ld of %ld)", correct, n) == 2;
}

/* nn's logits of the first N_LOGITS test images through the C API against
 * PyTorch's (NAME.logits.f32). */
static void compare_logits(const char *name, const char *ckpt) {
    nn_model m;
    if (nn_model_load(&m, ckpt) != 0) {
        CHECKF(0, "nn_model_load(%s): %s", ckpt, nn_last_error());
        return;
    }
    const nn_dataset *test = test_set();
    int c = m.in_shape[0], h = m.in_shape[1], w = m.in_shape[2];
    CHECKF(c == 1 && h == test->rows && w == test->cols && m.classes == 10, "input [%d, %d, %d], %d classes", c, h,
           w, m.classes);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){N_LOGITS, c, h, w});
    for (size_t i = 0; i < x->size; i++) x->data[i] = (test->images[i] / 255.0f - m.input_mean) / m.input_std;
    nn_tensor *logits = nn_model_forward(&m, ctx, x, NULL);
    CHECK(logits->ndim == 2 && logits->shape[0] == N_LOGITS && logits->shape[1] == m.classes);

    char path[256];
    snprintf(path, sizeof path, "%s/%s.logits.f32", tmpdir, name);
    float *theirs = malloc(logits->size * sizeof *theirs);
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(theirs, sizeof *theirs, logits->size, f) : 0;
    if (f) fclose(f);
    CHECKF(got == logits->size, "%s: %zu floats, expected %zu", path, got, logits->size);
    if (got == logits->size) {
        double err = 0, scale = 1;
        int agree = 0;
        for (size_t i = 0; i < logits->size; i++) {
            err = fmax(err, fabs((double)logits->data[i] - theirs[i]));
            scale = fmax(scale, fabs((double)theirs[i]));
        }
        for (int r = 0; r < N_LOGITS; r++) {
            const float *a = logits->data + (size_t)r * m.classes, *b = theirs + (size_t)r * m.classes;
            int ia = 0, ib = 0;
            for (int k = 1; k < m.classes; k++) {
                if (a[k] > a[ia]) ia = k;
                if (b[k] > b[ib]) ib = k;
            }
            agree += ia == ib;
        }
        printf("%s: nn vs PyTorch on %d images: max |logit diff| %.2e (tolerance %.2e), predictions agree on %d\n",
               name, N_LOGITS, err, TOLERANCE * scale, agree);
        CHECKF(err <= TOLERANCE * scale, "%s: max |logit diff| %.3g", name, err);
        CHECKF(agree == N_LOGITS, "%s: predictions agree on %d of %d", name, agree, N_LOGITS);
    }
    free(theirs);
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

static void check_model_from_torch(const char *name) {
    if (!trained_in_torch()) return;
    long torch_correct, torch_n, tracked;
    if (!torch_numbers(name, &torch_correct, &torch_n, &tracked)) {
        CHECKF(0, "no line for %s in torch_import.py's output: %s", name, torch_report);
        return;
    }
    char ckpt[256];
    snprintf(ckpt, sizeof ckpt, "%s/%s.safetensors", tmpdir, name);

    /* The file is PyTorch's: the count is int64, and reads as the number of steps. */
    nn_safetensors st;
    CHECKF(nn_st_load(&st, ckpt) == 0, "%s", nn_last_error());
    const nn_st_tensor *t = nn_st_find(&st, "bn1.num_batches_tracked");
    CHECKF(t && t->ndim == 0 && strcmp(t->dtype, "I64") == 0, "bn1.num_batches_tracked is %s",
           t ? t->dtype : "missing");
    float count = -1;
    CHECKF(nn_st_read_f32(&st, "bn1.num_batches_tracked", 0, NULL, &count) == 0, "%s", nn_last_error());
    CHECKF(count == (float)tracked && tracked > 0, "num_batches_tracked %g, PyTorch says %ld", count, tracked);
    nn_st_free(&st);

    compare_logits(name, ckpt);

    int rc = nn("eval --model %s --data data/mnist", ckpt);
    CHECKF(rc == 0, "eval exited %d: %s", rc, err_text);
    long nn_correct = -1, nn_n = -1;
    CHECKF(eval_numbers(out_text, &nn_correct, &nn_n), "eval printed: %s", out_text);
    printf("%s: test accuracy PyTorch %.2f%% (%ld of %ld), nn eval %.2f%% (%ld of %ld)\n", name,
           100.0 * torch_correct / torch_n, torch_correct, torch_n, 100.0 * nn_correct / (nn_n > 0 ? nn_n : 1),
           nn_correct, nn_n);
    CHECKF(nn_correct == torch_correct && nn_n == torch_n, "%s: nn eval %ld of %ld, PyTorch %ld of %ld", name,
           nn_correct, nn_n, torch_correct, torch_n);
    CHECKF(torch_correct > torch_n / 2, "%s: PyTorch's model gets only %ld of %ld", name, torch_correct, torch_n);

    /* The fixture images are real MNIST test digits, named by their label. */
    rc = nn("predict --model %s tests/fixtures/images/*.png tests/fixtures/images/*.pgm", ckpt);
    CHECKF(rc == 0, "predict exited %d: %s", rc, err_text);
    int lines = 0, right = 0;
    for (char *line = strtok(out_text, "\n"); line; line = strtok(NULL, "\n")) {
        char *slash = strrchr(line, '/'), *colon = strstr(line, ": ");
        if (!slash || !colon) continue;
        lines++;
        right += slash[1] == colon[2];
    }
    printf("%s: nn predict got %d of %d fixture digits right\n", name, right, lines);
    CHECKF(lines == 8, "predict printed %d lines for 8 images", lines);
}

static void test_cnn_trained_in_torch(void) {
    if (!can_run("a BatchNorm CNN trained in PyTorch")) return;
    check_model_from_torch("cnn");
}

static void test_mlp_trained_in_torch(void) {
    if (!can_run("an MLP trained in PyTorch")) return;
    check_model_from_torch("mlp");
}

static void test_save_model_refuses(void) {
    if (!can_run("save_model's refusals")) return;
    int rc = python("tests/torch_import.py --refuse %s", tmpdir);
    CHECKF(rc == 0, "torch_import.py --refuse exited %d: %s", rc, err_text);
    const char *want[] = {
        "refused: layer '0' (Conv2d(1, 4, kernel_size=(3, 5)",
        "nn's conv has a square kernel",
        "dilation=(2, 2))): nn's conv has dilation 1",
        "refused: layer '2' (Softmax(dim=1)): nn has no such layer",
        "bias=False)): nn's conv has dilation 1, groups 1, zero padding and a bias",
        "in_features 700, but 784 features reach it",
        "(GELU(approximate='tanh')): nn's gelu is the exact erf form",
        "eps 0.001; nn's batchnorm uses 1e-05",
        "the model ends in [4, 26, 26], not in class scores",
        "save_model needs a torch.nn.Sequential, not Linear",
        "input_std 0.0 is not a positive number",
        "nothing written",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECKF(strstr(out_text, want[i]), "no '%s' in: %s", want[i], out_text);
    CHECKF(!strstr(out_text, "accepted"), "save_model accepted a module nn cannot express: %s", out_text);
}

/* ---- without PyTorch: an I64 count in a checkpoint written by nn ---- */

/* Copies the safetensors file src to dst with every *.num_batches_tracked
 * rewritten as an I64 scalar holding `count`, as PyTorch writes it; the
 * other tensors and the metadata as they are. */
static int rewrite_counts_as_i64(const char *src, const char *dst, int64_t count) {
    nn_safetensors st;
    if (nn_st_load(&st, src) != 0) return -1;
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; i < st.n_meta; i++) cJSON_AddStringToObject(meta, st.meta_keys[i], st.meta_values[i]);
    unsigned char *data = malloc(st.data_len + 8 * (size_t)st.n_tensors + 1);
    size_t pos = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const nn_st_tensor *t = &st.tensors[i];
        const char *suffix = strrchr(t->name, '.');
        bool is_count = suffix && strcmp(suffix, ".num_batches_tracked") == 0;
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", is_count ? "I64" : t->dtype);
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        size_t n = is_count ? 8 : t->nbytes;
        if (is_count)
            for (int b = 0; b < 8; b++) data[pos + b] = (unsigned char)((uint64_t)count >> (8 * b));
        else
            memcpy(data + pos, st.data + t->offset, n);
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)pos));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(pos + n)));
        pos += n;
    }
    char *json = cJSON_PrintUnformatted(root);
    size_t hlen = strlen(json);
    unsigned char len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (unsigned char)(hlen >> (8 * b));
    FILE *f = fopen(dst, "wb");
    int rc = f && fwrite(len8, 1, 8, f) == 8 && fwrite(json, 1, hlen, f) == hlen && fwrite(data, 1, pos, f) == pos
                 ? 0
                 : -1;
    if (f && fclose(f) != 0) rc = -1;
    cJSON_free(json);
    cJSON_Delete(root);
    free(data);
    nn_st_free(&st);
    return rc;
}

/* A small model checkpoint as nn writes it (every tensor F32), made with
 * the safetensors writer alone: flatten linear(4) batchnorm linear(3) on [1, 1, 2]. */
static int write_f32_checkpoint(const char *path) {
    static const float w1[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b1[4] = {0.1f, 0.2f, 0.3f, 0.4f}, ones[4] = {1, 1, 1, 1},
                       zeros[4] = {0}, count = 3, w2[12] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0}, b2[3] = {0};
    static const int64_t s_w1[] = {4, 2}, s4[] = {4}, s_w2[] = {3, 4}, s3[] = {3};
    const nn_st_entry e[] = {{"fc1.weight", 2, s_w1, w1},     {"fc1.bias", 1, s4, b1},
                             {"bn1.weight", 1, s4, ones},     {"bn1.bias", 1, s4, zeros},
                             {"bn1.running_mean", 1, s4, zeros}, {"bn1.running_var", 1, s4, ones},
                             {"bn1.num_batches_tracked", 0, NULL, &count},
                             {"fc2.weight", 2, s_w2, w2},     {"fc2.bias", 1, s3, b2}};
    const char *keys[] = {"nn.arch", "nn.spec", "nn.input_shape", "nn.input_mean", "nn.input_std"};
    const char *values[] = {"mlp", "flatten linear(4) batchnorm linear(3)", "1,1,2", "0", "1"};
    return nn_st_save(path, e, (int)(sizeof e / sizeof e[0]), keys, values, 5);
}

/* The count a loaded model holds for bn1, or -1. */
static float loaded_count(nn_model *m) {
    nn_tensor *t = nn_params_find(&m->state, "bn1.num_batches_tracked");
    return t && t->size == 1 ? t->data[0] : -1.0f;
}

static void test_int64_count_loads(void) {
    CHECKF(write_f32_checkpoint(tmp("f32.safetensors")) == 0, "%s", nn_last_error());
    nn_model m;
    int rc = nn_model_load(&m, tmp("f32.safetensors"));
    CHECKF(rc == 0, "the F32 checkpoint itself: %s", nn_last_error());
    if (rc != 0) return;
    CHECK(loaded_count(&m) == 3.0f);
    nn_model_free(&m);

    CHECK(rewrite_counts_as_i64(tmp("f32.safetensors"), tmp("i64.safetensors"), 16777216) == 0); /* 2^24: exact */
    nn_safetensors st;
    CHECKF(nn_st_load(&st, tmp("i64.safetensors")) == 0, "%s", nn_last_error());
    const nn_st_tensor *t = nn_st_find(&st, "bn1.num_batches_tracked");
    CHECK(t && strcmp(t->dtype, "I64") == 0 && t->nbytes == 8 && t->ndim == 0);
    nn_st_free(&st);
    rc = nn_model_load(&m, tmp("i64.safetensors"));
    CHECKF(rc == 0, "%s", nn_last_error());
    if (rc == 0) {
        CHECKF(loaded_count(&m) == 16777216.0f, "bn1.num_batches_tracked = %g", loaded_count(&m));
        nn_model_free(&m);
    }

    /* One more step and float32 could not say it: refused, naming the tensor and the value. */
    CHECK(rewrite_counts_as_i64(tmp("f32.safetensors"), tmp("big.safetensors"), 16777217) == 0);
    rc = nn_model_load(&m, tmp("big.safetensors"));
    CHECK(rc == -1);
    if (rc == 0) nn_model_free(&m);
    CHECKF(strstr(nn_last_error(), "big.safetensors: tensor 'bn1.num_batches_tracked' holds I64 value 16777217"),
           "%s", nn_last_error());
    CHECK(strchr(nn_last_error(), '\n') == NULL);
}

TEST_MAIN(TEST(test_int64_count_loads), TEST(test_cnn_trained_in_torch), TEST(test_mlp_trained_in_torch),
          TEST(test_save_model_refuses))
