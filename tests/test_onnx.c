/* nn export --onnx, checked by a real runtime and by ONNX's own checker.
 *
 * For each model the test exports the checkpoint with the nn binary, runs
 * the first 1000 MNIST test images (raw pixels in [0, 1]) through
 * onnxruntime (tests/onnx_run.mjs with the onnxruntime-node npm package) and
 * compares the logits with nn's own, computed here through the library in
 * evaluation mode: max |diff| <= 1e-4. It also runs ONNX's checker with
 * full_check (shape inference in strict mode) on the file. Models: an MLP
 * with LayerNorm, GELU and dropout and the default MLP (784-1024-1024-10,
 * ReLU), trained by nn; a CNN with BatchNorm trained by nn; a model built here with every layer kind and the
 * non-default arguments and made-up running statistics; one built here of
 * residual blocks (a ResNet block, repeated and nested blocks, one over
 * features: the blocks' layers, then an Add). Text models built
 * here (an LSTM language model, a GRU classifier, an RNN language model with
 * layernorm, a stack of all three, a language model of residual blocks): 300 random int64 token sequences of
 * several lengths through onnxruntime against nn_model_forward_tokens, max
 * |diff| <= 1e-4 of the largest |logit|, and the checker. Transformers
 * built here (two GPTs, two encoders, attention biases on and off) on the
 * committed text data: a GPT's logits of Tiny Shakespeare's validation
 * windows of the full context and shorter, an encoder's of 200 validation
 * names (nn: one padded batch with their lengths; onnxruntime: a batch per
 * length, the contract of docs/onnx.md) and of the longest names, the
 * context: max |diff| <= 1e-4; a GPT's graph refuses a sequence past its
 * context. Then the command's errors: usage, missing and corrupt
 * checkpoints, unwritable outputs.
 * Without node and onnxruntime-node (scripts/node_deps.sh), Debian's
 * python3-onnx, data/mnist (the image models only) or datasets/ (the
 * Transformers), those tests say skipped with the reason.
 * Runs the binary named by $NN (default build/nn). */
#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "perturb_model.h"
#include "run_nn.h"
#include "nn/core.h"
#include "nn/data.h"
#include "nn/model.h"
#include "nn/rng.h"
#include "nn/text.h"

#define PYTHON "/usr/bin/python3"
#define N_IMAGES 1000
#define TOLERANCE 1e-4

static const char *const cnn_spec = "conv(8,3,padding=1) batchnorm relu maxpool(2) conv(16,3) batchnorm relu "
                                    "avgpool(2) flatten linear(32) batchnorm leakyrelu dropout(0.2) linear(10)";
static const char *const every_spec = "conv(6,5,stride=2,padding=2) batchnorm tanh maxpool(3,stride=2) conv(4,2) "
                                      "sigmoid avgpool(2,stride=1) flatten linear(24) layernorm leakyrelu(0.2) "
                                      "dropout(0.3) linear(16) batchnorm gelu linear(12,bias=0) relu linear(10)";

/* Runs a shell command with stdout into out_path (or discarded) and stderr in
 * err_text; returns the exit status (128+N for signal N). */
static int shell(const char *out_path, const char *fmt, ...) {
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char err_path[256];
    snprintf(err_path, sizeof err_path, "%s", tmp("shell.err"));
    snprintf(cmd, sizeof cmd, "%s >%s 2>%s </dev/null", args, out_path ? out_path : "/dev/null", err_path);
    int status = system(cmd);
    slurp(err_path, err_text, sizeof err_text);
    if (!WIFEXITED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/* Whether onnxruntime can run here; if not, marks the test skipped and says
 * why and what installs it. */
static bool have_node_onnxruntime(void) {
    static int cached = -1;
    static char why[200];
    if (cached < 0) {
        if (shell(NULL, "command -v node") != 0) {
            snprintf(why, sizeof why, "node is not installed (apt-get install -y nodejs npm)");
            cached = 0;
        } else {
            const char *modules = getenv("NN_NODE_MODULES") ? getenv("NN_NODE_MODULES") : "./build-node/node_modules";
            snprintf(why, sizeof why, "onnxruntime-node is not in %s (scripts/node_deps.sh installs it)", modules);
            cached = shell(NULL, "node -e \"require('%s/onnxruntime-node')\"", modules) == 0;
        }
    }
    if (!cached) SKIP("%s; onnxruntime not run", why);
    return cached;
}

/* The same for the image models, which run MNIST's test images. */
static bool have_onnxruntime(void) { return have_mnist() && have_node_onnxruntime(); }

static bool have_onnx_checker(void) {
    static int cached = -1;
    if (cached < 0) cached = shell(NULL, PYTHON " -c 'import onnx'") == 0;
    if (!cached) SKIP("%s -c 'import onnx' fails (apt-get install -y python3-onnx); ONNX checker not run", PYTHON);
    return cached;
}

static const nn_dataset *test_set(void) {
    static nn_dataset test;
    static bool loaded;
    if (!loaded) {
        CHECKF(nn_dataset_load(&test, "data/mnist", "t10k") == 0, "%s", nn_last_error());
        loaded = true;
    }
    return &test;
}

/* The pixels of the first N_IMAGES test images in [0, 1], the graph's input. */
static float *pixels(void) {
    const nn_dataset *test = test_set();
    size_t n = (size_t)N_IMAGES * test->rows * test->cols;
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = test->images[i] / 255.0f;
    return p;
}

/* nn's logits of the pixels [N_IMAGES * classes], through the library in
 * evaluation mode with the model's normalisation; NULL if it cannot load. */
static float *nn_logits(const char *ckpt, const float *px, int *classes) {
    nn_model m;
    if (nn_model_load(&m, ckpt) != 0) {
        fprintf(stderr, "  nn_model_load(%s): %s\n", ckpt, nn_last_error());
        return NULL;
    }
    int c = m.in_shape[0], h = m.in_shape[1], w = m.in_shape[2];
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){N_IMAGES, c, h, w});
    for (size_t i = 0; i < x->size; i++) x->data[i] = (px[i] - m.input_mean) / m.input_std;
    nn_tensor *y = nn_model_forward(&m, ctx, x, NULL);
    float *out = malloc(y->size * sizeof *out);
    memcpy(out, y->data, y->size * sizeof *out);
    *classes = m.classes;
    nn_ctx_free(ctx);
    nn_model_free(&m);
    return out;
}

/* Exports ckpt to out with the nn binary; 0 on success. */
static int export(const char *ckpt, const char *out) {
    int rc = nn("export --model %s --onnx %s", ckpt, out);
    CHECKF(rc == 0, "export %s exited %d: %s", ckpt, rc, err_text);
    if (rc == 0) printf("  %s", out_text); /* the file's size and node count */
    return rc;
}

/* Runs the ONNX file in onnxruntime in batches of `batch` and compares its
 * logits with nn's; prints and returns the largest difference (-1 when it
 * could not compare). */
static double onnxruntime_diff(const char *ckpt, const char *onnx, int batch) {
    float *px = pixels();
    int classes = 0;
    float *expected = nn_logits(ckpt, px, &classes);
    double worst = -1;
    char images[256], logits[256];
    snprintf(images, sizeof images, "%s", tmp("images.f32"));
    snprintf(logits, sizeof logits, "%s", tmp("logits.txt"));
    FILE *f = fopen(images, "wb");
    size_t n_px = (size_t)N_IMAGES * 28 * 28;
    CHECK(f && fwrite(px, sizeof *px, n_px, f) == n_px);
    if (f) CHECK(fclose(f) == 0);
    int rc = expected ? shell(logits, "node tests/onnx_run.mjs %s %s %d %d", onnx, images, N_IMAGES, batch) : -1;
    CHECKF(rc == 0, "onnx_run.mjs exited %d: %s", rc, err_text);
    f = rc == 0 ? fopen(logits, "r") : NULL;
    if (rc == 0) CHECKF(f, "%s: %s", logits, strerror(errno));
    if (f) {
        char header[256] = "", want[256];
        snprintf(want, sizeof want, "image float32 [N,1,28,28] -> logits float32 [N,%d]\n", classes);
        CHECKF(fgets(header, sizeof header, f) && strcmp(header, want) == 0, "the session reports: %s", header);
        worst = 0;
        int agree = 0, read = 0;
        for (int i = 0; i < N_IMAGES; i++) {
            int best_nn = 0, best_ort = 0;
            float row[64];
            for (int k = 0; k < classes && fscanf(f, "%f", &row[k]) == 1; k++, read++) {
                double d = fabs((double)row[k] - expected[(size_t)i * classes + k]);
                if (!(d <= worst)) worst = d; /* NaN sticks */
                if (row[k] > row[best_ort]) best_ort = k;
                if (expected[(size_t)i * classes + k] > expected[(size_t)i * classes + best_nn]) best_nn = k;
            }
            agree += best_nn == best_ort;
        }
        CHECKF(read == N_IMAGES * classes, "read %d logits of %d", read, N_IMAGES * classes);
        CHECK(fscanf(f, "%*s") == EOF);
        fclose(f);
        double largest = 0;
        for (int i = 0; i < N_IMAGES * classes; i++) largest = fmax(largest, fabs(expected[i]));
        printf("  %s in onnxruntime, batches of %d: max |logit diff| %.3g (largest |logit| %.3g), %d/%d predictions "
               "the same\n", onnx, batch, worst, largest, agree, N_IMAGES);
        CHECKF(worst <= TOLERANCE, "max |diff| %g > %g", worst, TOLERANCE);
        /* Logits far above the tolerance, so the comparison means something. */
        CHECKF(largest > 1.0, "largest |logit| %g", largest);
    }
    free(expected);
    free(px);
    return worst;
}

static void check_model(const char *onnx) {
    int rc = shell(NULL, PYTHON " -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)' %s",
                   onnx);
    CHECKF(rc == 0, "onnx.checker rejects %s: %s", onnx, err_text);
}

/* Trains a model with the nn binary once per run and exports it; returns the
 * checkpoint's path (its ONNX file is PATH.onnx), or NULL. */
static const char *trained(char path[256], const char *name, const char *args) {
    char onnx[300];
    snprintf(path, 256, "%s", tmp(name)); /* tmp's buffers are reused */
    snprintf(onnx, sizeof onnx, "%s.onnx", path);
    if (access(onnx, R_OK) == 0) return path;
    int rc = nn("train --train-limit 3000 --epochs 1 --seed 2 %s --save %s", args, path);
    CHECKF(rc == 0, "train %s exited %d: %s", args, rc, err_text);
    return rc == 0 && export(path, onnx) == 0 ? path : NULL;
}

static const char *mlp(void) {
    static char path[256];
    return trained(path, "mlp.safetensors", "--hidden 64,32 --norm layer --act gelu --dropout 0.1 --input-dropout 0.1");
}

/* The default model of nn train: 784-1024-1024-10 with ReLU. */
static const char *default_mlp(void) {
    static char path[256];
    return trained(path, "default.safetensors", "");
}

static const char *cnn(void) {
    static char path[256];
    char args[512];
    snprintf(args, sizeof args, "--arch '%s'", cnn_spec);
    return trained(path, "cnn.safetensors", args);
}

/* Every layer kind and every non-default argument, with random weights and
 * made-up running statistics (a fresh BatchNorm's mean 0 / variance 1 would
 * hide a mix-up of the two), and a normalisation other than the identity. */
static const char *every(void) {
    static char path[256];
    snprintf(path, sizeof path, "%s", tmp("every.safetensors"));
    if (access(path, R_OK) == 0) return path;
    int failures = check_failures_;
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 7, 0);
    CHECKF(nn_model_init(&m, every_spec, (int[]){1, 28, 28}, 10, &rng) == 0, "%s", nn_last_error());
    if (check_failures_ != failures) return NULL;
    m.input_mean = 0.1307f;
    m.input_std = 0.3081f;
    perturb_model(&m, &rng);
    CHECKF(nn_model_save(&m, path) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    char onnx[300];
    snprintf(onnx, sizeof onnx, "%s.onnx", path);
    return check_failures_ != failures || export(path, onnx) != 0 ? NULL : path;
}

/* Residual blocks (a ResNet block, repeated and nested ones, one over
 * features) as their layers' nodes and an Add, with random weights and
 * made-up running statistics. */
static const char *const residual_spec =
    "conv(8,3,padding=1) batchnorm relu residual(conv(8,3,padding=1) batchnorm relu conv(8,3,padding=1) batchnorm) "
    "relu maxpool(2) repeat(2, residual(conv(8,3,padding=1) tanh residual(conv(8,3,padding=1) batchnorm))) "
    "avgpool(2) flatten linear(32) residual(layernorm linear(64) gelu dropout(0.2) linear(32)) relu linear(10)";

static const char *residual(void) {
    static char path[256];
    snprintf(path, sizeof path, "%s", tmp("residual.safetensors"));
    if (access(path, R_OK) == 0) return path;
    int failures = check_failures_;
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 13, 0);
    CHECKF(nn_model_init(&m, residual_spec, (int[]){1, 28, 28}, 10, &rng) == 0, "%s", nn_last_error());
    if (check_failures_ != failures) return NULL;
    m.input_mean = 0.1307f;
    m.input_std = 0.3081f;
    perturb_model(&m, &rng);
    CHECKF(nn_model_save(&m, path) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    char onnx[300];
    snprintf(onnx, sizeof onnx, "%s.onnx", path);
    return check_failures_ != failures || export(path, onnx) != 0 ? NULL : path;
}

static const char *onnx_of(const char *ckpt) {
    static char buf[300];
    snprintf(buf, sizeof buf, "%s.onnx", ckpt);
    return buf;
}

static void test_mlp_onnxruntime(void) {
    if (!have_onnxruntime()) return;
    const char *ckpt = mlp();
    if (!ckpt) return;
    onnxruntime_diff(ckpt, onnx_of(ckpt), N_IMAGES);
    /* The batch dimension is symbolic: batches of 7, the last one of 6. */
    onnxruntime_diff(ckpt, onnx_of(ckpt), 7);
}

static void test_default_mlp_onnxruntime(void) {
    if (!have_onnxruntime()) return;
    const char *ckpt = default_mlp();
    if (ckpt) onnxruntime_diff(ckpt, onnx_of(ckpt), N_IMAGES);
}

static void test_cnn_onnxruntime(void) {
    if (!have_onnxruntime()) return;
    const char *ckpt = cnn();
    if (ckpt) onnxruntime_diff(ckpt, onnx_of(ckpt), N_IMAGES);
}

static void test_every_layer_onnxruntime(void) {
    if (!have_onnxruntime()) return;
    const char *ckpt = every();
    if (ckpt) onnxruntime_diff(ckpt, onnx_of(ckpt), N_IMAGES);
}

static void test_residual_onnxruntime(void) {
    if (!have_onnxruntime()) return;
    const char *ckpt = residual();
    if (ckpt) onnxruntime_diff(ckpt, onnx_of(ckpt), 300);
}

static void test_onnx_checker(void) {
    if (!have_mnist() || !have_onnx_checker()) return;
    const char *ckpts[] = {mlp(), default_mlp(), cnn(), every(), residual()};
    for (int i = 0; i < 5; i++)
        if (ckpts[i]) check_model(onnx_of(ckpts[i]));
}

/* ---- text models: token ids in, the recurrent layers as ONNX's RNN, LSTM, GRU ---- */

#define N_SEQUENCES 300
#define TEXT_VOCAB 40

/* Text models built here through the C API with random weights: PyTorch's
 * initialisation, then perturb_model (linears scaled up, layernorms given
 * non-trivial scales) and the recurrent weights doubled so that their gates
 * leave the linear middle of the sigmoid and tanh. */
static const struct text_model {
    const char *name, *spec;
    int classes; /* 0: a language model, classes = vocab */
} text_models[] = {
    {"lstm_lm", "embed(16) lstm(32) linear(40)", 0},
    {"gru_classifier", "embed(16) gru(32) last linear(18)", 18},
    {"rnn_lm", "embed(12) rnn(24) layernorm tanh linear(40)", 0},
    {"stacked", "embed(16) linear(24) gelu lstm(32) dropout(0.1) gru(24) rnn(16) last layernorm linear(10)", 10},
    {"residual_lm", "embed(16) repeat(2, residual(layernorm linear(32,bias=0) gelu linear(16))) residual(lstm(16) tanh) "
                    "layernorm linear(40)", 0},
};
#define N_TEXT_MODELS (int)(sizeof text_models / sizeof text_models[0])

/* The checkpoint of text model i, written and exported once per run (its
 * ONNX file is PATH.onnx), or NULL. */
static const char *text_checkpoint(int i) {
    static char paths[N_TEXT_MODELS][256];
    static bool done[N_TEXT_MODELS];
    const struct text_model *t = &text_models[i];
    char *path = paths[i];
    if (done[i]) return *path ? path : NULL;
    done[i] = true;
    char name[64];
    snprintf(name, sizeof name, "%s.safetensors", t->name);
    snprintf(path, 256, "%s", tmp(name));
    int failures = check_failures_;
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 11 + (uint64_t)i, 0);
    int rc = nn_model_plan_text(&m, t->spec, TEXT_VOCAB, t->classes ? t->classes : TEXT_VOCAB);
    CHECKF(rc == 0, "%s: %s", t->spec, nn_last_error());
    if (rc != 0) return *path = 0, NULL;
    nn_model_build(&m, &rng);
    perturb_model(&m, &rng);
    for (int k = 0; k < m.n_layers; k++)
        for (int j = 0; nn_layer_tensor(&m.layers[k], "weight_ih_l0") && j < m.layers[k].n_tensors; j++) {
            nn_tensor *w = m.layers[k].tensors[j];
            for (size_t e = 0; e < w->size; e++) w->data[e] *= 2.0f;
        }
    CHECKF(nn_model_save(&m, path) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    char onnx[300];
    snprintf(onnx, sizeof onnx, "%s.onnx", path);
    if (check_failures_ != failures || export(path, onnx) != 0) *path = 0;
    return *path ? path : NULL;
}

/* N_SEQUENCES random sequences of T ids, the same for every model. */
static int *random_tokens(int T) {
    nn_rng rng;
    nn_rng_seed(&rng, 5, (uint64_t)T);
    int *ids = malloc((size_t)N_SEQUENCES * T * sizeof *ids);
    for (int i = 0; i < N_SEQUENCES * T; i++) ids[i] = (int)nn_rng_below(&rng, TEXT_VOCAB);
    return ids;
}

/* nn's logits of the sequences through the library in evaluation mode:
 * [N_SEQUENCES * per], per = classes or T * classes; NULL if it cannot load. */
static float *nn_text_logits(const char *ckpt, const int *ids, int T, int *per, int *out_ndim) {
    nn_model m;
    if (nn_model_load(&m, ckpt) != 0) {
        fprintf(stderr, "  nn_model_load(%s): %s\n", ckpt, nn_last_error());
        return NULL;
    }
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *y = nn_model_forward_tokens(&m, ctx, ids, N_SEQUENCES, T, NULL, NULL);
    float *out = malloc(y->size * sizeof *out);
    memcpy(out, y->data, y->size * sizeof *out);
    *per = (int)(y->size / N_SEQUENCES);
    *out_ndim = y->ndim;
    nn_ctx_free(ctx);
    nn_model_free(&m);
    return out;
}

/* Runs N_SEQUENCES random sequences of T tokens through the ONNX file of
 * text model i in onnxruntime, in batches of `batch`, and compares the
 * logits with nn's: max |diff| <= TOLERANCE * the largest |logit|. Returns
 * the largest difference relative to the largest |logit| (-1: not compared). */
static double text_onnxruntime_diff(int i, int T, int batch) {
    const char *ckpt = text_checkpoint(i);
    if (!ckpt) return -1;
    const char *onnx = onnx_of(ckpt);
    int *ids = random_tokens(T);
    int per = 0, ndim = 0;
    float *expected = nn_text_logits(ckpt, ids, T, &per, &ndim);
    char tokens[256], logits[256];
    snprintf(tokens, sizeof tokens, "%s", tmp("tokens.i64"));
    snprintf(logits, sizeof logits, "%s", tmp("text_logits.txt"));
    FILE *f = fopen(tokens, "wb");
    CHECK(f != NULL);
    for (int k = 0; f && k < N_SEQUENCES * T; k++) {
        int64_t id = ids[k];
        CHECK(fwrite(&id, sizeof id, 1, f) == 1);
    }
    if (f) CHECK(fclose(f) == 0);
    int rc = expected ? shell(logits, "node tests/onnx_run.mjs %s %s %d %d %d", onnx, tokens, N_SEQUENCES, batch, T)
                      : -1;
    CHECKF(rc == 0, "onnx_run.mjs exited %d: %s", rc, err_text);
    double rel = -1;
    f = rc == 0 ? fopen(logits, "r") : NULL;
    if (rc == 0) CHECKF(f, "%s: %s", logits, strerror(errno));
    if (f) {
        const struct text_model *t = &text_models[i];
        int classes = t->classes ? t->classes : TEXT_VOCAB;
        char header[256] = "", want[256];
        if (ndim == 3)
            snprintf(want, sizeof want, "tokens int64 [N,T] -> logits float32 [N,T,%d]\n", classes);
        else
            snprintf(want, sizeof want, "tokens int64 [N,T] -> logits float32 [N,%d]\n", classes);
        CHECKF(fgets(header, sizeof header, f) && strcmp(header, want) == 0, "the session reports: %s", header);
        double worst = 0, largest = 0;
        int read = 0;
        for (int k = 0; k < N_SEQUENCES * per; k++) {
            float v;
            if (fscanf(f, "%f", &v) != 1) break;
            read++;
            double d = fabs((double)v - expected[k]);
            if (!(d <= worst)) worst = d; /* NaN sticks */
            largest = fmax(largest, fabs(expected[k]));
        }
        CHECKF(read == N_SEQUENCES * per, "read %d logits of %d", read, N_SEQUENCES * per);
        CHECK(fscanf(f, "%*s") == EOF);
        fclose(f);
        rel = worst / largest;
        printf("  %s (%s), %d sequences of %d tokens in batches of %d: max |logit diff| %.3g (largest |logit| "
               "%.3g, relative %.3g)\n", t->name, t->spec, N_SEQUENCES, T, batch, worst, largest, rel);
        CHECKF(worst <= TOLERANCE * largest, "max |diff| %g > %g * %g", worst, TOLERANCE, largest);
        /* Logits far above the tolerance, so the comparison means something. */
        CHECKF(largest > 1.0, "largest |logit| %g", largest);
    }
    free(expected);
    free(ids);
    return rel;
}

static void test_text_onnxruntime(void) {
    if (!have_node_onnxruntime()) return;
    for (int i = 0; i < N_TEXT_MODELS; i++) {
        text_onnxruntime_diff(i, 24, 64); /* the last batch is 44 */
        /* T is symbolic too: other lengths, a single step among them. */
        text_onnxruntime_diff(i, 7, N_SEQUENCES);
        text_onnxruntime_diff(i, 1, 100);
    }
}

static void test_text_onnx_checker(void) {
    if (!have_onnx_checker()) return;
    for (int i = 0; i < N_TEXT_MODELS; i++) {
        const char *ckpt = text_checkpoint(i);
        if (ckpt) check_model(onnx_of(ckpt));
    }
}

/* ---- Transformers on real text: posembed, attention, unembed, mean ---- */

#define SHAKESPEARE "datasets/tinyshakespeare"
#define NAMES "datasets/names-by-language"
#define GPT_CONTEXT 64
#define N_NAMES 200

/* A GPT (causal attention, the output tied to the embedding) scores Tiny
 * Shakespeare's validation windows; an encoder (attention over every step,
 * mean) classifies validation names. Each with attention biases off and on;
 * %d is the classes or, for a GPT, unused. */
static const struct transformer {
    const char *name, *spec;
    bool names;
} transformers[] = {
    {"gpt", "embed(32) posembed repeat(2, residual(layernorm attention(4,bias=0)) residual(layernorm linear(64) gelu "
            "linear(32))) layernorm unembed", false},
    {"gpt_bias", "embed(32) posembed residual(layernorm attention(2)) residual(layernorm linear(64,bias=0) gelu "
                 "linear(32,bias=0)) layernorm unembed", false},
    {"encoder", "embed(32) posembed residual(layernorm attention(4,causal=0)) residual(layernorm linear(64) gelu "
                "linear(32)) mean linear(%d)", true},
    {"encoder_nobias", "embed(32) posembed repeat(2, residual(layernorm attention(8,causal=0,bias=0)) "
                       "residual(layernorm linear(64,bias=0) gelu linear(32,bias=0))) layernorm mean linear(%d)", true},
};
#define N_TRANSFORMERS (int)(sizeof transformers / sizeof transformers[0])

/* Whether the committed text data is there; if not, marks the test skipped. */
static bool have_text_data(void) {
    bool have = access(SHAKESPEARE "/input.txt", R_OK) == 0 && access(NAMES "/Arabic.txt", R_OK) == 0;
    if (!have) SKIP("%s or %s missing; the Transformers' ONNX export not checked", SHAKESPEARE, NAMES);
    return have;
}

/* The data set of a transformer, loaded once per run (names with seed 1). */
static const nn_text *text_data(bool names) {
    static nn_text data[2];
    static bool loaded[2];
    if (!loaded[names]) {
        CHECKF(nn_text_load(&data[names], names ? NAMES : SHAKESPEARE, NN_TEXT_AUTO, 1, NULL) == 0, "%s",
               nn_last_error());
        loaded[names] = true;
    }
    return &data[names];
}

/* Makes every weight matter: perturb_model (linears scaled up, layernorms
 * off their identity), then what it leaves alone: the learned positions and
 * a tied embedding from their N(0, 0.02) start to N(0, 1) (positions as
 * large as the tokens' vectors; logits well above the tolerance), the
 * attention's projections doubled (scores of a few units: softmaxes far
 * from uniform), its biases (0 at the start) drawn in [-0.5, 0.5). */
static void perturb_transformer(nn_model *m, nn_rng *rng) {
    perturb_model(m, rng);
    bool tied = strcmp(nn_layer_kind_name(m->layers[m->n_layers - 1].kind), "unembed") == 0;
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        const char *kind = nn_layer_kind_name(l->kind);
        for (int j = 0; j < l->n_tensors; j++) {
            nn_tensor *t = l->tensors[j];
            float gain = strcmp(kind, "posembed") == 0 || (tied && strcmp(kind, "embed") == 0) ? 50.0f
                         : strcmp(kind, "attention") == 0 && t->ndim == 2                      ? 2.0f
                                                                                              : 1.0f;
            for (size_t k = 0; k < t->size; k++)
                t->data[k] = strcmp(kind, "attention") == 0 && t->ndim == 1 ? nn_rng_uniform(rng) - 0.5f
                                                                           : t->data[k] * gain;
        }
    }
}

/* The checkpoint of transformer i, built, perturbed, saved and exported
 * once per run (its ONNX file is PATH.onnx), or NULL. */
static const char *transformer_checkpoint(int i) {
    static char paths[N_TRANSFORMERS][256];
    static bool done[N_TRANSFORMERS];
    const struct transformer *t = &transformers[i];
    char *path = paths[i];
    if (done[i]) return *path ? path : NULL;
    done[i] = true;
    *path = 0;
    const nn_text *data = text_data(t->names);
    int failures = check_failures_;
    if (data->vocab.size == 0) return NULL;
    char spec[512], name[64];
    snprintf(spec, sizeof spec, t->spec, data->n_classes);
    snprintf(name, sizeof name, "%s.safetensors", t->name);
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 21 + (uint64_t)i, 0);
    int classes = t->names ? data->n_classes : data->vocab.size;
    int context = t->names ? data->val.max_len : GPT_CONTEXT; /* the longest name: some are that long */
    int rc = nn_model_plan_text_context(&m, spec, data->vocab.size, classes, context);
    CHECKF(rc == 0, "%s: %s", spec, nn_last_error());
    if (rc != 0) return NULL;
    nn_model_build(&m, &rng);
    perturb_transformer(&m, &rng);
    snprintf(path, 256, "%s", tmp(name));
    CHECKF(nn_model_save(&m, path) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    char onnx[300];
    snprintf(onnx, sizeof onnx, "%s.onnx", path);
    if (check_failures_ != failures || export(path, onnx) != 0) *path = 0;
    return *path ? path : NULL;
}

/* Runs n sequences of T ids through onnx in onnxruntime in batches of
 * `batch` and reads the logits into out (count floats). Returns
 * onnx_run.mjs's exit status, or -1 when its output is not what was
 * expected (a failure is recorded then; not for a run that fails). */
static int run_onnx_tokens(const char *onnx, const int *ids, int n, int T, int batch, const char *header, float *out,
                           size_t count) {
    char tokens[256], logits[256];
    snprintf(tokens, sizeof tokens, "%s", tmp("tokens.i64"));
    snprintf(logits, sizeof logits, "%s", tmp("transformer_logits.txt"));
    FILE *f = fopen(tokens, "wb");
    CHECK(f != NULL);
    for (int k = 0; f && k < n * T; k++) {
        int64_t id = ids[k];
        CHECK(fwrite(&id, sizeof id, 1, f) == 1);
    }
    if (f) CHECK(fclose(f) == 0);
    int rc = shell(logits, "node tests/onnx_run.mjs %s %s %d %d %d", onnx, tokens, n, batch, T);
    if (rc != 0) return rc;
    f = fopen(logits, "r");
    CHECKF(f, "%s: %s", logits, strerror(errno));
    if (!f) return -1;
    char line[256] = "";
    bool ok = fgets(line, sizeof line, f) && strcmp(line, header) == 0;
    CHECKF(ok, "the session reports: %s, expected %s", line, header);
    size_t read = 0;
    while (ok && read < count && fscanf(f, "%f", &out[read]) == 1) read++;
    CHECKF(!ok || read == count, "read %zu logits of %zu", read, count);
    ok = ok && read == count && fscanf(f, "%*s") == EOF;
    fclose(f);
    return ok ? 0 : -1;
}

/* The largest |onnxruntime - nn| of count logits (NaN if any is NaN); the
 * largest |nn logit| into *largest. */
static double max_diff(const float *ort, const float *want, size_t count, double *largest) {
    double worst = 0;
    *largest = 0;
    for (size_t k = 0; k < count; k++) {
        double d = fabs((double)ort[k] - want[k]);
        if (!(d <= worst)) worst = d; /* NaN sticks */
        *largest = fmax(*largest, fabs(want[k]));
    }
    return worst;
}

/* At most TOLERANCE, with logits far above it (every layer matters). */
static void check_diff(const char *what, double worst, double largest) {
    CHECKF(worst <= TOLERANCE, "%s: max |diff| %g > %g", what, worst, TOLERANCE);
    CHECKF(largest > 1.0, "%s: largest |logit| %g", what, largest);
}

/* Loads ckpt into *m with an evaluation context in *ctx; false (and a
 * failure) when it cannot. */
static bool load_for_eval(const char *ckpt, nn_model *m, nn_ctx **ctx) {
    if (nn_model_load(m, ckpt) != 0) {
        CHECKF(false, "nn_model_load(%s): %s", ckpt, nn_last_error());
        return false;
    }
    *ctx = nn_ctx_new(0);
    nn_set_training(*ctx, false);
    nn_set_grad_enabled(*ctx, false);
    return true;
}

/* A GPT on n validation windows of T characters of Tiny Shakespeare, in
 * batches of `batch`: logits [n, T, V] from onnxruntime against
 * nn_model_forward_tokens'. */
static void gpt_windows(int i, int T, int n, int batch) {
    const char *ckpt = transformer_checkpoint(i);
    const nn_text *data = text_data(false);
    if (!ckpt) return;
    nn_text_windows w;
    if (nn_text_windows_init(&w, &data->val, T, n) != 0) {
        CHECKF(false, "%s", nn_last_error());
        return;
    }
    int *x = malloc(sizeof(int) * (size_t)n * T), *y = malloc(sizeof(int) * (size_t)n * T);
    CHECK(w.count == n && nn_text_windows_batch(&w, 0, n, x, y) == n);
    nn_model m;
    nn_ctx *ctx;
    if (!load_for_eval(ckpt, &m, &ctx)) {
        free(x);
        free(y);
        nn_text_windows_free(&w);
        return;
    }
    nn_tensor *want = nn_model_forward_tokens(&m, ctx, x, n, T, NULL, NULL);
    size_t count = (size_t)n * T * m.classes;
    CHECK(want->size == count);
    float *got = malloc(count * sizeof *got);
    char header[128], what[256];
    snprintf(header, sizeof header, "tokens int64 [N,T] -> logits float32 [N,T,%d]\n", m.classes);
    int rc = run_onnx_tokens(onnx_of(ckpt), x, n, T, batch, header, got, count);
    CHECKF(rc == 0, "onnx_run.mjs exited %d: %s", rc, err_text);
    snprintf(what, sizeof what, "%s (%s), %d validation windows of %d in batches of %d", transformers[i].name,
             nn_model_spec(&m), n, T, batch);
    if (rc == 0) {
        double largest, worst = max_diff(got, want->data, count, &largest);
        printf("  %s: max |logit diff| %.3g (largest |logit| %.3g)\n", what, worst, largest);
        check_diff(what, worst, largest);
    }
    free(got);
    nn_ctx_free(ctx);
    nn_model_free(&m);
    free(x);
    free(y);
    nn_text_windows_free(&w);
}

static void test_gpt_onnxruntime(void) {
    if (!have_text_data() || !have_node_onnxruntime()) return;
    for (int i = 0; i < N_TRANSFORMERS; i++) {
        if (transformers[i].names) continue;
        gpt_windows(i, GPT_CONTEXT, 200, 64); /* the full context; the last batch is 8 */
        gpt_windows(i, 23, 100, 100);         /* T is symbolic: shorter windows, one step among them */
        gpt_windows(i, 1, 100, 30);
        /* Past the context the graph has no positions: onnxruntime refuses
         * the run (the Add's shapes), it does not make up an answer. */
        const char *ckpt = transformer_checkpoint(i);
        if (!ckpt) continue;
        int ids[GPT_CONTEXT + 1] = {0};
        float out[1];
        int rc = run_onnx_tokens(onnx_of(ckpt), ids, 1, GPT_CONTEXT + 1, 1, "", out, 1);
        CHECKF(rc == 1 && strstr(err_text, "layer2_posembed"), "%d tokens (context %d): exit %d, %s", GPT_CONTEXT + 1,
               GPT_CONTEXT, rc, err_text);
    }
}

/* An encoder on N_NAMES validation names drawn across the classes: nn
 * classifies them as one padded batch with their lengths (as nn eval does);
 * the exported graph takes sequences of one length (docs/onnx.md), so
 * onnxruntime gets the names of each length as a batch of their own, from
 * the batch's longest down to its shortest. The same logits. */
static void encoder_names(int i) {
    const char *ckpt = transformer_checkpoint(i);
    const nn_text *data = text_data(true);
    if (!ckpt) return;
    nn_text_batcher b;
    if (nn_text_batcher_init(&b, &data->val, N_NAMES, true, 5) != 0) {
        CHECKF(false, "%s", nn_last_error());
        return;
    }
    nn_text_batcher_start_epoch(&b);
    int width = 0, lengths[N_NAMES], labels[N_NAMES];
    int *ids = malloc(sizeof(int) * N_NAMES * (size_t)data->val.max_len);
    CHECK(nn_text_batcher_next(&b, ids, lengths, labels, &width) == N_NAMES);
    nn_model m;
    nn_ctx *ctx;
    if (!load_for_eval(ckpt, &m, &ctx)) {
        free(ids);
        nn_text_batcher_free(&b);
        return;
    }
    nn_tensor *want = nn_model_forward_tokens(&m, ctx, ids, N_NAMES, width, lengths, NULL);
    int C = m.classes;
    CHECK(want->size == (size_t)N_NAMES * C);
    float *got = malloc(sizeof(float) * N_NAMES * C), *want_l = malloc(sizeof(float) * N_NAMES * C);
    int *group = malloc(sizeof(int) * N_NAMES * (size_t)width), groups = 0, compared = 0, shortest = width;
    double worst = 0, largest = 0;
    char header[128], what[256];
    snprintf(header, sizeof header, "tokens int64 [N,T] -> logits float32 [N,%d]\n", C);
    for (int L = width; L >= 1; L--) {
        int n = 0;
        for (int k = 0; k < N_NAMES; k++)
            if (lengths[k] == L) {
                memcpy(group + (size_t)n * L, ids + (size_t)k * width, sizeof(int) * (size_t)L);
                memcpy(want_l + (size_t)n * C, want->data + (size_t)k * C, sizeof(float) * (size_t)C);
                n++;
            }
        if (n == 0) continue;
        int rc = run_onnx_tokens(onnx_of(ckpt), group, n, L, n, header, got, (size_t)n * C);
        CHECKF(rc == 0, "onnx_run.mjs exited %d: %s", rc, err_text);
        if (rc != 0) break;
        double big, d = max_diff(got, want_l, (size_t)n * C, &big);
        snprintf(what, sizeof what, "%s, %d names of %d characters", transformers[i].name, n, L);
        check_diff(what, d, big);
        worst = !(d <= worst) ? d : worst;
        largest = fmax(largest, big);
        groups++;
        compared += n;
        shortest = L;
    }
    printf("  %s (%s), %d validation names, a batch per length (%d to %d characters): max |logit diff| %.3g "
           "(largest |logit| %.3g)\n", transformers[i].name, nn_model_spec(&m), compared, shortest, width, worst,
           largest);
    CHECKF(compared == N_NAMES && groups >= 5, "%d names compared in %d lengths", compared, groups);
    free(group);
    free(want_l);
    free(got);
    nn_ctx_free(ctx);
    nn_model_free(&m);
    free(ids);
    nn_text_batcher_free(&b);
}

/* The names as long as the context: the longest of the validation split. */
static void encoder_full_context(int i) {
    const char *ckpt = transformer_checkpoint(i);
    const nn_text_split *val = &text_data(true)->val;
    if (!ckpt) return;
    int T = val->max_len, n = 0;
    int *ids = malloc(sizeof(int) * (size_t)val->n_seqs * T);
    for (int k = 0; k < val->n_seqs; k++)
        if (val->lengths[k] == T) memcpy(ids + (size_t)n++ * T, val->ids + val->offsets[k], sizeof(int) * (size_t)T);
    CHECKF(n >= 1, "no validation name of %d characters", T);
    nn_model m;
    nn_ctx *ctx;
    if (!load_for_eval(ckpt, &m, &ctx)) {
        free(ids);
        return;
    }
    nn_tensor *want = nn_model_forward_tokens(&m, ctx, ids, n, T, NULL, NULL);
    float *got = malloc(want->size * sizeof *got);
    char header[128], what[256];
    snprintf(header, sizeof header, "tokens int64 [N,T] -> logits float32 [N,%d]\n", m.classes);
    int rc = run_onnx_tokens(onnx_of(ckpt), ids, n, T, n, header, got, want->size);
    CHECKF(rc == 0, "onnx_run.mjs exited %d: %s", rc, err_text);
    snprintf(what, sizeof what, "%s, the %d validation name(s) of %d characters (the context)", transformers[i].name, n,
             T);
    if (rc == 0) {
        double largest, worst = max_diff(got, want->data, want->size, &largest);
        printf("  %s: max |logit diff| %.3g (largest |logit| %.3g)\n", what, worst, largest);
        check_diff(what, worst, largest);
    }
    free(got);
    nn_ctx_free(ctx);
    nn_model_free(&m);
    free(ids);
}

static void test_encoder_onnxruntime(void) {
    if (!have_text_data() || !have_node_onnxruntime()) return;
    for (int i = 0; i < N_TRANSFORMERS; i++)
        if (transformers[i].names) {
            encoder_names(i);
            encoder_full_context(i);
        }
}

static void test_transformer_onnx_checker(void) {
    if (!have_text_data() || !have_onnx_checker()) return;
    for (int i = 0; i < N_TRANSFORMERS; i++) {
        const char *ckpt = transformer_checkpoint(i);
        if (ckpt) check_model(onnx_of(ckpt));
    }
}

/* An error: exit status 1 and one line "nn: error: ..." naming what. */
static bool one_line(int rc, const char *must_contain) {
    const char *nl = strchr(err_text, '\n');
    return rc == 1 && one_line_error(must_contain) && nl && nl[1] == 0;
}

static bool usage(int rc, const char *must_contain) {
    return rc == 2 && strncmp(err_text, "nn export: ", 11) == 0 && strstr(err_text, must_contain);
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* No temporary file left next to where out was to be written. */
static bool no_leftovers(const char *dir) {
    return shell(NULL, "ls -A %s | grep -q '\\.tmp\\.'", dir) != 0;
}

static void test_errors(void) {
    int rc = nn("export --help");
    CHECKF(rc == 0 && strstr(out_text, "usage: nn export") && strstr(out_text, "--onnx"), "--help: %d %s", rc, out_text);
    rc = nn("export");
    CHECKF(usage(rc, "--model FILE is required"), "no flags: %d %s", rc, err_text);
    rc = nn("export --model x.safetensors");
    CHECKF(usage(rc, "--onnx OUT.onnx is required"), "no --onnx: %d %s", rc, err_text);
    rc = nn("export --model x.safetensors --onnx");
    CHECKF(usage(rc, "--onnx needs a value"), "--onnx without value: %d %s", rc, err_text);
    rc = nn("export --model x.safetensors --onnx ''");
    CHECKF(usage(rc, "empty"), "empty --onnx: %d %s", rc, err_text);
    rc = nn("export --model x.safetensors --onnx y.onnx --format tf");
    CHECKF(usage(rc, "unknown option '--format'"), "unknown option: %d %s", rc, err_text);
    rc = nn("export --model x.safetensors --onnx y.onnx stray");
    CHECKF(usage(rc, "unexpected argument 'stray'"), "stray argument: %d %s", rc, err_text);

    /* Checkpoints that are missing, not safetensors, or truncated. */
    char out[256], good[256], big[256]; /* tmp's buffers are reused */
    snprintf(out, sizeof out, "%s", tmp("out.onnx"));
    rc = nn("export --model %s --onnx %s", tmp("nope.safetensors"), out);
    CHECKF(one_line(rc, "nope.safetensors"), "missing checkpoint: %d %s", rc, err_text);
    rc = nn("export --model Makefile --onnx %s", out);
    CHECKF(one_line(rc, "Makefile"), "Makefile as checkpoint: %d %s", rc, err_text);
    CHECK(access(out, F_OK) != 0);

    /* A small real checkpoint, then the same cut short. */
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 1, 0);
    CHECKF(nn_model_init(&m, "flatten linear(10)", (int[]){1, 28, 28}, 10, &rng) == 0, "%s", nn_last_error());
    snprintf(good, sizeof good, "%s", tmp("good.safetensors"));
    CHECKF(nn_model_save(&m, good) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    CHECK(shell(NULL, "head -c %ld %s > %s", file_size(good) / 2, good, tmp("cut.safetensors")) == 0);
    rc = nn("export --model %s --onnx %s", tmp("cut.safetensors"), out);
    CHECKF(one_line(rc, "cut.safetensors"), "truncated checkpoint: %d %s", rc, err_text);

    /* Outputs that cannot be written: a missing folder, a folder that is a
     * file, a folder itself; nothing is left behind. */
    rc = nn("export --model %s --onnx %s", good, tmp("no-such-dir/out.onnx"));
    CHECKF(one_line(rc, "no-such-dir/out.onnx"), "missing folder: %d %s", rc, err_text);
    rc = nn("export --model %s --onnx %s", good, tmp("good.safetensors/out.onnx"));
    CHECKF(one_line(rc, "good.safetensors/out.onnx: Not a directory"), "file as folder: %d %s", rc, err_text);
    CHECK(mkdir(tmp("a-dir"), 0755) == 0);
    rc = nn("export --model %s --onnx %s", good, tmp("a-dir"));
    CHECKF(one_line(rc, "a-dir: Is a directory"), "folder as output: %d %s", rc, err_text);
    CHECK(no_leftovers(tmpdir));

    /* A write that fails half-way (the file-size limit) leaves the previous
     * file whole under the final name. */
    rc = nn("export --model %s --onnx %s", good, out);
    CHECKF(rc == 0, "export: %d %s", rc, err_text);
    long before = file_size(out);
    CHECK(before > 4096);
    CHECK(shell(NULL, "cp %s %s", out, tmp("out.before")) == 0);
    CHECKF(nn_model_init(&m, "flatten linear(256) relu linear(10)", (int[]){1, 28, 28}, 10, &rng) == 0, "%s",
           nn_last_error());
    snprintf(big, sizeof big, "%s", tmp("big.safetensors"));
    CHECKF(nn_model_save(&m, big) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    rc = nn_limited("trap '' XFSZ; ulimit -f 64;", "export --model %s --onnx %s", big, out);
    CHECKF(one_line(rc, "File too large"), "over the size limit: %d %s", rc, err_text);
    CHECK(file_size(out) == before);
    CHECK(shell(NULL, "cmp -s %s %s", out, tmp("out.before")) == 0);
    CHECK(no_leftovers(tmpdir));
}

TEST_MAIN(TEST(test_mlp_onnxruntime), TEST(test_default_mlp_onnxruntime), TEST(test_cnn_onnxruntime), TEST(test_every_layer_onnxruntime),
          TEST(test_residual_onnxruntime), TEST(test_onnx_checker), TEST(test_text_onnxruntime), TEST(test_text_onnx_checker),
          TEST(test_gpt_onnxruntime), TEST(test_encoder_onnxruntime), TEST(test_transformer_onnx_checker),
          TEST(test_errors))
