/* PyTorch interop of text models: checkpoints of embed, rnn, lstm, gru,
 * last and per-step linear/layernorm rebuilt in PyTorch from their metadata
 * alone (scripts/torch_model.py) give the same logits as nn, and models
 * written by PyTorch (save_model) give nn PyTorch's logits.
 *
 * Each model is built here through the C API with a seed (random weights,
 * scaled so that every layer matters), saved with nn_model_save and loaded
 * back; nn computes its logits in eval mode on real validation data -- for a
 * language model 200 windows of 64 characters of Tiny Shakespeare's
 * validation split (datasets/tinyshakespeare), V its vocabulary's size; for
 * a classifier 200 validation names of datasets/names-by-language, drawn
 * across the classes, as one padded batch with their lengths -- and writes
 * ids, lengths and logits as raw files for tests/interop_text_torch.py,
 * which rebuilds the model with strict=True and compares (max |diff| <= 1e-4
 * relative to the largest logit, every prediction the same).
 * Needs Debian's python3-torch (not MNIST); without it each test says
 * skipped (SKIP) with the reason, never passed. */
#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "run_nn.h"
#include "run_torch.h"
#include "nn/core.h"
#include "nn/model.h"
#include "nn/rng.h"
#include "nn/text.h"

#define SHAKESPEARE "datasets/tinyshakespeare"
#define NAMES "datasets/names-by-language"
#define N_SEQS 200
#define BLOCK 64

/* Whether the test can run (PyTorch and the committed text data); if not,
 * marks it skipped and says why. */
static inline bool can_run_text(const char *what) {
    if (!have_torch()) {
        SKIP("%s -c 'import torch' fails (is Debian's python3-torch installed?); %s not run", PYTHON, what);
        return false;
    }
    if (access(SHAKESPEARE "/input.txt", R_OK) != 0 || access(NAMES "/Arabic.txt", R_OK) != 0) {
        SKIP("%s or %s missing; %s not run", SHAKESPEARE, NAMES, what);
        return false;
    }
    return true;
}

static bool write_raw(const char *path, const void *data, size_t size, size_t n) {
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(data, size, n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    CHECKF(ok, "could not write %s", path);
    return ok;
}

/* Reads exactly n items of size bytes; false (and a failure) otherwise. */
static bool read_raw(const char *path, void *data, size_t size, size_t n) {
    FILE *f = fopen(path, "rb");
    bool ok = f && fread(data, size, n, f) == n && fgetc(f) == EOF;
    if (f) fclose(f);
    CHECKF(ok, "could not read %zu x %zu bytes from %s", n, size, path);
    return ok;
}

/* Makes every layer matter: linear, recurrent and attention weight matrices
 * times gain (PyTorch's initialisation keeps a recurrence's gates near their
 * linear range and shrinks the signal), the last layer's 4 times more
 * (logits well above the comparison's absolute floor of 1e-4), layer norms
 * off their identity start; learned positions, and an embedding that is the
 * output layer too (unembed), as large as an untied embedding's N(0, 1). */
static void perturb_text_model(nn_model *m, nn_rng *rng, float gain) {
    bool tied = strcmp(nn_layer_kind_name(m->layers[m->n_layers - 1].kind), "unembed") == 0;
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        const char *kind = nn_layer_kind_name(l->kind);
        const char *scaled[] = {"weight", "weight_ih_l0", "weight_hh_l0", "in_proj_weight", "out_proj.weight"};
        if (strcmp(kind, "posembed") == 0 || (tied && strcmp(kind, "embed") == 0)) {
            nn_tensor *w = nn_layer_tensor(l, "weight");
            for (size_t k = 0; k < w->size; k++) w->data[k] *= 50.0f;
            continue;
        }
        if (strcmp(kind, "embed") == 0) continue;
        if (strcmp(kind, "layernorm") == 0) {
            nn_tensor *w = nn_layer_tensor(l, "weight"), *b = nn_layer_tensor(l, "bias");
            for (size_t k = 0; k < w->size; k++) {
                w->data[k] = 0.5f + nn_rng_uniform(rng);
                b->data[k] = nn_rng_uniform(rng) - 0.5f;
            }
            continue;
        }
        for (size_t s = 0; s < sizeof scaled / sizeof *scaled; s++) {
            nn_tensor *w = nn_layer_tensor(l, scaled[s]);
            float g = i == m->n_layers - 1 ? 4.0f * gain : gain;
            for (size_t k = 0; w && k < w->size; k++) w->data[k] *= g;
        }
    }
}

/* Builds spec over vocab (taking at most context tokens when it has
 * learned positions) with the seed, perturbs it, saves it to tmp(name) and
 * loads it back into *m (what PyTorch reads is what nn runs). */
static bool build_saved(nn_model *m, const char *name, const char *spec, int vocab, int classes, int context,
                        uint64_t seed, float gain) {
    int failures = check_failures_;
    nn_model built;
    nn_rng rng;
    nn_rng_seed(&rng, seed, 0);
    CHECKF(nn_model_plan_text_context(&built, spec, vocab, classes, context) == 0, "'%s': %s", spec, nn_last_error());
    if (check_failures_ != failures) return false;
    nn_model_build(&built, &rng);
    perturb_text_model(&built, &rng, gain);
    char path[256];
    snprintf(path, sizeof path, "%s", tmp(name));
    CHECKF(nn_model_save(&built, path) == 0, "%s", nn_last_error());
    nn_model_free(&built);
    CHECKF(nn_model_load(m, path) == 0, "nn_model_load(%s): %s", path, nn_last_error());
    return check_failures_ == failures;
}

/* nn's logits of ids [n, T] (lengths or NULL) written with the ids and
 * lengths; then tests/interop_text_torch.py compares PyTorch's with them.
 * Returns its exit status (-1 when nn failed). */
static int compare_with_torch(nn_model *m, const char *name, const int *ids, int n, int T, const int *lengths) {
    int failures = check_failures_;
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *y = nn_model_forward_tokens(m, ctx, ids, n, T, lengths, NULL);
    size_t want = (size_t)n * (lengths || y->ndim == 2 ? 1 : (size_t)T) * (size_t)m->classes;
    CHECKF(y->size == want && y->shape[0] == n, "logits of %zu floats, expected %zu", y->size, want);
    char ckpt[256], logits[256], ids_path[256], len_path[256] = "-";
    snprintf(ckpt, sizeof ckpt, "%s", tmp(name));
    snprintf(logits, sizeof logits, "%s", tmp("logits.f32"));
    snprintf(ids_path, sizeof ids_path, "%s", tmp("ids.i32"));
    bool ok = check_failures_ == failures && write_raw(logits, y->data, sizeof(float), y->size) &&
              write_raw(ids_path, ids, sizeof(int), (size_t)n * (size_t)T);
    if (ok && lengths) {
        snprintf(len_path, sizeof len_path, "%s", tmp("lengths.i32"));
        ok = write_raw(len_path, lengths, sizeof(int), (size_t)n);
    }
    nn_ctx_free(ctx);
    if (!ok) return -1;
    int rc = python("tests/interop_text_torch.py compare %s %s %s %s %d %d", ckpt, logits, ids_path, len_path, n, T);
    printf("%s%s", out_text, err_text); /* the line with the numbers */
    return rc;
}

/* A language model per spec on N_SEQS windows of BLOCK characters of Tiny
 * Shakespeare's validation split, V = its vocabulary's size. */
static void check_language_model(const char *name, const char *spec_fmt, uint64_t seed, float gain) {
    int failures = check_failures_;
    nn_text t;
    CHECKF(nn_text_load(&t, SHAKESPEARE, NN_TEXT_AUTO, 1, NULL) == 0, "%s", nn_last_error());
    if (check_failures_ != failures) return;
    CHECK(t.kind == NN_TEXT_STREAM && t.vocab.size == 65);
    nn_text_windows w;
    CHECKF(nn_text_windows_init(&w, &t.val, BLOCK, N_SEQS) == 0, "%s", nn_last_error());
    int *x = malloc(sizeof(int) * N_SEQS * BLOCK), *y = malloc(sizeof(int) * N_SEQS * BLOCK);
    CHECK(w.count == N_SEQS && nn_text_windows_batch(&w, 0, N_SEQS, x, y) == N_SEQS);
    char spec[256];
    snprintf(spec, sizeof spec, spec_fmt, t.vocab.size);
    nn_model m;
    if (check_failures_ == failures && build_saved(&m, name, spec, t.vocab.size, t.vocab.size, BLOCK, seed, gain)) {
        CHECKF(compare_with_torch(&m, name, x, N_SEQS, BLOCK, NULL) == 0, "PyTorch's '%s' differs from nn's (see above)",
               spec);
        nn_model_free(&m);
    }
    free(x);
    free(y);
    nn_text_windows_free(&w);
    nn_text_free(&t);
}

/* A classifier per spec on N_SEQS validation names of names-by-language,
 * drawn across the classes (a seeded shuffle), as one padded batch. */
static void check_classifier(const char *name, const char *spec_fmt, uint64_t seed, float gain) {
    int failures = check_failures_;
    nn_text t;
    CHECKF(nn_text_load(&t, NAMES, NN_TEXT_AUTO, 1, NULL) == 0, "%s", nn_last_error());
    if (check_failures_ != failures) return;
    CHECK(t.kind == NN_TEXT_CLASSES && t.n_classes == 18 && t.val.n_seqs >= N_SEQS);
    nn_text_batcher b;
    CHECKF(nn_text_batcher_init(&b, &t.val, N_SEQS, true, 5) == 0, "%s", nn_last_error());
    nn_text_batcher_start_epoch(&b);
    int *ids = malloc(sizeof(int) * N_SEQS * (size_t)t.val.max_len), lengths[N_SEQS], labels[N_SEQS], width = 0;
    CHECK(nn_text_batcher_next(&b, ids, lengths, labels, &width) == N_SEQS);
    /* Really padded, and from more than one class. */
    int shortest = width, first_label_count = 0;
    for (int i = 0; i < N_SEQS; i++) {
        if (lengths[i] < shortest) shortest = lengths[i];
        first_label_count += labels[i] == labels[0];
    }
    CHECKF(shortest < width && first_label_count < N_SEQS, "lengths %d..%d, %d of one class", shortest, width,
           first_label_count);
    char spec[256];
    snprintf(spec, sizeof spec, spec_fmt, t.n_classes);
    nn_model m;
    if (check_failures_ == failures && build_saved(&m, name, spec, t.vocab.size, t.n_classes, t.val.max_len, seed, gain)) {
        CHECKF(compare_with_torch(&m, name, ids, N_SEQS, width, lengths) == 0,
               "PyTorch's '%s' differs from nn's (see above)", spec);
        nn_model_free(&m);
    }
    free(ids);
    nn_text_batcher_free(&b);
    nn_text_free(&t);
}

static void test_lstm_language_model(void) {
    if (!can_run_text("PyTorch interop of an LSTM language model")) return;
    check_language_model("lstm_lm.safetensors", "embed(16) lstm(32) linear(%d)", 1, 2.0f);
}

static void test_gru_classifier(void) {
    if (!can_run_text("PyTorch interop of a GRU classifier")) return;
    check_classifier("gru_classifier.safetensors", "embed(16) gru(32) last linear(%d)", 2, 2.0f);
}

static void test_rnn(void) {
    if (!can_run_text("PyTorch interop of rnn")) return;
    check_language_model("rnn_lm.safetensors", "embed(16) rnn(32) linear(%d)", 3, 1.5f);
    check_classifier("rnn_classifier.safetensors", "embed(16) rnn(32) last linear(%d)", 4, 1.5f);
}

/* Recurrent layers stacked, with linear, layernorm, activations and dropout
 * acting per step on [T, F] between them, and after last. */
static void test_stacked(void) {
    if (!can_run_text("PyTorch interop of stacked text models")) return;
    check_language_model("stacked_lm.safetensors",
                         "embed(24) gru(32) lstm(32) layernorm linear(24) gelu dropout(0.2) rnn(20) tanh linear(%d)",
                         5, 1.5f);
    check_classifier("stacked_classifier.safetensors",
                     "embed(8) lstm(24) layernorm gru(16) last linear(16) layernorm relu dropout(0.3) linear(%d)", 6,
                     1.5f);
}

/* A GPT (positions, pre-LayerNorm blocks of causal attention and an MLP,
 * linear layers without biases, the output tied to the embedding) and an
 * encoder that classifies padded names (attention over every real
 * position, the mean of the real steps). */
static void test_transformer(void) {
    if (!can_run_text("PyTorch interop of a GPT and an encoder")) return;
    check_language_model("gpt.safetensors",
                         "embed(32) posembed repeat(2, residual(layernorm attention(4,bias=0)) residual(layernorm "
                         "linear(128,bias=0) gelu linear(32,bias=0))) layernorm unembed",
                         7, 1.0f);
    check_classifier("encoder.safetensors",
                     "embed(32) posembed residual(layernorm attention(4,causal=0)) residual(layernorm linear(64) gelu "
                     "linear(32)) layernorm mean linear(%d)",
                     8, 1.0f);
}

/* The other direction: text models written by PyTorch with save_model give
 * nn PyTorch's logits. */
static void test_torch_saved(void) {
    if (!can_run_text("PyTorch -> nn text models")) return;
    enum { V = 30 };
    int failures = check_failures_;
    int rc = python("tests/interop_text_torch.py save %s %d", tmpdir, V);
    CHECKF(rc == 0, "interop_text_torch.py save exited %d: %s%s", rc, out_text, err_text);
    if (rc != 0) return;
    char lines[sizeof out_text];
    snprintf(lines, sizeof lines, "%s", out_text);
    int models = 0;
    for (char *line = strtok(lines, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        int n, T, classes, used = 0;
        CHECKF(sscanf(line, "%63s %d %d %d %n", name, &n, &T, &classes, &used) == 4 && used > 0, "line '%s'", line);
        if (check_failures_ != failures) return;
        const char *spec = line + used;
        char path[256];
        snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, name);
        nn_model m;
        CHECKF(nn_model_load(&m, path) == 0, "nn_model_load(%s): %s", path, nn_last_error());
        if (check_failures_ != failures) return;
        CHECKF(strcmp(nn_model_spec(&m), spec) == 0 && m.vocab == V && m.classes == classes, "%s: '%s' V %d", name,
               nn_model_spec(&m), m.vocab);
        int *ids = malloc(sizeof(int) * (size_t)n * (size_t)T), *lengths = malloc(sizeof(int) * (size_t)n);
        size_t per = strstr(spec, " last ") ? 1 : (size_t)T;
        float *want = malloc(sizeof(float) * (size_t)n * per * (size_t)classes);
        snprintf(path, sizeof path, "%s/%s.ids.i32", tmpdir, name);
        bool ok = read_raw(path, ids, sizeof(int), (size_t)n * (size_t)T);
        snprintf(path, sizeof path, "%s/%s.lengths.i32", tmpdir, name);
        ok = ok && read_raw(path, lengths, sizeof(int), (size_t)n);
        snprintf(path, sizeof path, "%s/%s.logits.f32", tmpdir, name);
        ok = ok && read_raw(path, want, sizeof(float), (size_t)n * per * (size_t)classes);
        if (ok) {
            nn_ctx *ctx = nn_ctx_new(0);
            nn_set_training(ctx, false);
            nn_set_grad_enabled(ctx, false);
            nn_tensor *y = nn_model_forward_tokens(&m, ctx, ids, n, T, lengths, NULL);
            CHECK(y->size == (size_t)n * per * (size_t)classes);
            float err = 0, scale = 1;
            int disagree = 0;
            for (size_t r = 0; r < (size_t)n * per && check_failures_ == failures; r++) {
                int a = 0, b = 0;
                for (int k = 0; k < classes; k++) {
                    size_t i = r * (size_t)classes + (size_t)k;
                    err = fmaxf(err, fabsf(y->data[i] - want[i]));
                    scale = fmaxf(scale, fabsf(want[i]));
                    if (y->data[i] > y->data[r * (size_t)classes + (size_t)a]) a = k;
                    if (want[i] > want[r * (size_t)classes + (size_t)b]) b = k;
                }
                disagree += a != b;
            }
            printf("interop: %s: '%s': nn vs PyTorch's logits: max |diff| %.2e (tolerance %.2e), %d predictions "
                   "differ\n",
                   name, spec, err, 1e-4 * scale, disagree);
            CHECKF(err <= 1e-4f * scale && disagree == 0, "%s: max |diff| %g, scale %g, %d predictions differ", name,
                   err, scale, disagree);
            nn_ctx_free(ctx);
        }
        free(ids);
        free(lengths);
        free(want);
        nn_model_free(&m);
        models++;
    }
    CHECKF(models == 2, "%d models from interop_text_torch.py save", models);
}

/* A failure of torch_model.py: exit status 1 and one line on stderr naming the problem. */
static bool one_line_torch_error(int rc, const char *must_contain) {
    const char *nl = strchr(err_text, '\n');
    return rc == 1 && strncmp(err_text, "torch_model.py: error: ", 23) == 0 && nl && nl[1] == 0 &&
           strstr(err_text, must_contain) != NULL;
}

/* torch_model.py's command line evaluates image models on MNIST: a text
 * model gets a one-line refusal that says how to use it from Python. */
static void test_cli_refuses_text(void) {
    if (!can_run_text("scripts/torch_model.py on a text model")) return;
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 1, 0);
    if (nn_model_plan_text(&m, "embed(4) gru(8) last linear(3)", 10, 3) != 0) {
        CHECKF(false, "%s", nn_last_error());
        return;
    }
    nn_model_build(&m, &rng);
    CHECKF(nn_model_save(&m, tmp("small.safetensors")) == 0, "%s", nn_last_error());
    nn_model_free(&m);
    int rc = python("scripts/torch_model.py %s --data data/mnist", tmp("small.safetensors"));
    CHECKF(one_line_torch_error(rc, "a text model") && strstr(err_text, "tokens(10)") && strstr(err_text, "load_model"),
           "text model: %d %s", rc, err_text);
}

TEST_MAIN(TEST(test_lstm_language_model), TEST(test_gru_classifier), TEST(test_rnn), TEST(test_stacked),
          TEST(test_transformer),
          TEST(test_torch_saved), TEST(test_cli_refuses_text))
