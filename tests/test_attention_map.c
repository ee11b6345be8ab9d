/* Attention weights for learners to look at (nn_model_attention_maps, nn
 * generate --attention):
 *  - the weights of a model's first attention layer against a
 *    double-precision recompute here from the model's tensors (its input is
 *    the embeddings plus the positions): a causal GPT with and without
 *    learned positions, an encoder (causal=0);
 *  - every layer of two-block pre-LayerNorm GPTs (with and without biases)
 *    and of an encoder against torch.nn.MultiheadAttention's own weights
 *    (need_weights=True, average_attn_weights=False), when python3-torch is
 *    there;
 *  - rows sum to 1, masked entries are exactly 0;
 *  - errors: a sequence past the context, an id out of range, a model
 *    without attention, an image model;
 *  - nn generate --attention writes a PNG of plausible size (and an SVG)
 *    and still writes the same text; past the context it draws the last
 *    `context` characters and says so; it refuses a missing --prompt, a
 *    model without attention and a file that is not .png/.svg with usage
 *    errors, and a folder that is not there with a one-line error. */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "run_nn.h"
#include "run_torch.h"
#include "nn/core.h"
#include "nn/model.h"

enum { V = 13 };

/* A planned and built text model whose weights are all N(0, 0.5^2): the fresh
 * model's near-zero positions and scores would give near-uniform weights,
 * which agree with anything. classes 0: a language model (classes = V). */
static bool text_model(nn_model *out, const char *spec, int classes, int context) {
    nn_model m;
    bool planned = nn_model_plan_text_context(&m, spec, V, classes ? classes : V, context) == 0;
    CHECKF(planned, "'%s': %s", spec, nn_last_error());
    if (!planned) return false;
    nn_rng rng;
    nn_rng_seed(&rng, 77, 0);
    nn_model_build(&m, &rng);
    for (size_t k = 0; k < m.params.count; k++) m.params.data[k] = 0.5f * nn_rng_normal(&rng);
    *out = m;
    return true;
}

static void random_ids(int *ids, int T, uint64_t seed) {
    nn_rng rng;
    nn_rng_seed(&rng, seed, 1);
    for (int t = 0; t < T; t++) ids[t] = (int)nn_rng_below(&rng, V);
}

static const nn_layer *layer_of_kind(const nn_model *m, const char *kind) {
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(nn_layer_kind_name(m->layers[i].kind), kind) == 0) return &m->layers[i];
    return NULL;
}

/* Rows sum to 1, masked entries are exactly 0, and the
 * weights are far from uniform (or any mistake could hide in them). */
static void check_rows(const nn_attention_map *a) {
    int bad_sum = 0, bad_mask = 0;
    double from_uniform = 0.0;
    for (int h = 0; h < a->heads; h++)
        for (int i = 0; i < a->T; i++) {
            const float *row = a->weights + ((size_t)h * a->T + i) * a->T;
            double sum = 0.0;
            for (int j = 0; j < a->T; j++) {
                sum += row[j];
                bool masked = a->causal && j > i;
                bad_mask += masked && row[j] != 0.0f;
                if (!masked) from_uniform = fmax(from_uniform, fabs(row[j] - 1.0 / (a->causal ? i + 1 : a->T)));
            }
            bad_sum += fabs(sum - 1.0) > 1e-5;
        }
    CHECKF(bad_sum == 0 && bad_mask == 0, "%s: %d rows do not sum to 1, %d masked entries not 0", a->name,
           bad_sum, bad_mask);
    CHECKF(from_uniform > 0.05, "%s: every weight within %.3f of uniform attention", a->name, from_uniform);
}

/* The first attention layer's weights recomputed in double: its input is
 * row ids[t] of the embedding plus (with posembed) row t of the positions. */
static double worst_vs_recompute(nn_model *m, const int *ids, int T) {
    nn_attention_map *maps;
    int n = nn_model_attention_maps(m, ids, T, &maps);
    CHECKF(n >= 1, "%d maps: %s", n, n < 0 ? nn_last_error() : "");
    if (n < 1) return INFINITY;
    const nn_layer *attn = layer_of_kind(m, "attention"), *pos = layer_of_kind(m, "posembed");
    CHECK(maps[0].layer == attn - m->layers && maps[0].T == T && maps[0].heads == attn->heads);
    CHECK(maps[0].causal == (attn->causal != 0) && strcmp(maps[0].name, attn->name) == 0);
    int D = attn->in_shape[1], H = attn->heads, hd = D / H;
    const float *E = nn_layer_tensor(&m->layers[0], "weight")->data, *P = pos ? nn_layer_tensor(pos, "weight")->data : NULL;
    const float *W = nn_layer_tensor(attn, "in_proj_weight")->data;
    const nn_tensor *b = nn_layer_tensor(attn, "in_proj_bias");
    double *q = calloc((size_t)T * D, sizeof *q), *k = calloc((size_t)T * D, sizeof *k);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < D; c++) {
            double sq = b ? b->data[c] : 0, sk = b ? b->data[D + c] : 0;
            for (int d = 0; d < D; d++) {
                double x = (double)E[ids[t] * D + d] + (P ? P[t * D + d] : 0.0);
                sq += W[c * D + d] * x;
                sk += W[(D + c) * D + d] * x;
            }
            q[t * D + c] = sq, k[t * D + c] = sk;
        }
    double worst = 0.0;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
            int seen = attn->causal ? i + 1 : T;
            double s[64], max = -INFINITY, total = 0;
            for (int j = 0; j < seen; j++) {
                s[j] = 0;
                for (int e = 0; e < hd; e++) s[j] += q[i * D + h * hd + e] * k[j * D + h * hd + e];
                s[j] /= sqrt(hd);
                max = fmax(max, s[j]);
            }
            for (int j = 0; j < seen; j++) total += s[j] = exp(s[j] - max);
            for (int j = 0; j < T; j++)
                worst = fmax(worst, fabs(maps[0].weights[((size_t)h * T + i) * T + j] - (j < seen ? s[j] / total : 0)));
        }
    for (int a = 0; a < n; a++) check_rows(&maps[a]);
    free(q);
    free(k);
    nn_attention_maps_free(maps, n);
    return worst;
}

static void test_against_recompute(void) {
    static const struct {
        const char *spec;
        int classes, context, T;
    } cases[] = {
        {"embed(12) posembed attention(3) layernorm unembed", 0, 10, 10},
        {"embed(12) posembed attention(3) layernorm unembed", 0, 10, 7},
        {"embed(12) posembed attention(2,bias=0) residual(layernorm attention(4)) unembed", 0, 16, 16},
        {"embed(12) attention(4) linear(13)", 0, 0, 40}, /* no context: any length */
        {"embed(12) attention(4,causal=0) mean linear(5)", 5, 0, 9},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        nn_model m;
        if (!text_model(&m, cases[c].spec, cases[c].classes, cases[c].context)) continue;
        int ids[64];
        random_ids(ids, cases[c].T, c);
        double worst = worst_vs_recompute(&m, ids, cases[c].T);
        CHECKF(worst <= 1e-6, "'%s' over %d tokens: weights differ by %.3g", cases[c].spec, cases[c].T, worst);
        nn_model_free(&m);
    }
}

/* Every layer against PyTorch's MultiheadAttention on the same input. */
static void test_against_torch(void) {
    if (!have_torch()) {
        SKIP("%s -c 'import torch' fails (is Debian's python3-torch installed?)", PYTHON);
        return;
    }
    static const struct {
        const char *spec;
        int classes, context, T;
    } cases[] = {
        {"embed(16) posembed repeat(2, residual(layernorm attention(4)) residual(layernorm linear(32) gelu "
         "linear(16))) layernorm unembed", 0, 12, 12},
        {"embed(16) posembed repeat(2, residual(layernorm attention(2,bias=0)) residual(layernorm linear(32,bias=0) "
         "gelu linear(16,bias=0))) layernorm unembed", 0, 12, 9},
        {"embed(16) residual(layernorm attention(2,causal=0)) residual(layernorm attention(4,causal=0)) mean "
         "linear(3)", 3, 0, 11},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        nn_model m;
        if (!text_model(&m, cases[c].spec, cases[c].classes, cases[c].context)) continue;
        int T = cases[c].T, ids[64];
        random_ids(ids, T, 100 + c);
        const char *ckpt = tmp("torch.safetensors"), *ids_path = tmp("ids.i32"), *out = tmp("weights.f32");
        CHECKF(nn_model_save(&m, ckpt) == 0, "%s", nn_last_error());
        FILE *f = fopen(ids_path, "wb");
        fwrite(ids, sizeof *ids, (size_t)T, f);
        fclose(f);
        int rc = python("tests/attention_map_torch.py %s %s %s", ckpt, ids_path, out);
        CHECKF(rc == 0, "PyTorch failed: %s", err_text);
        nn_attention_map *maps;
        int n = nn_model_attention_maps(&m, ids, T, &maps);
        int layers = 0, heads = 0, torch_T = 0;
        CHECKF(rc == 0 && sscanf(out_text, "%d %d %d", &layers, &heads, &torch_T) == 3 && layers == n &&
                   torch_T == T,
               "'%s': PyTorch says '%s', nn has %d attention layers", cases[c].spec, out_text, n);
        size_t total = 0;
        for (int a = 0; a < n; a++) total += (size_t)maps[a].heads * T * T;
        float *want = calloc(total, sizeof *want);
        f = fopen(out, "rb");
        size_t got = f ? fread(want, sizeof *want, total, f) : 0;
        if (f) fclose(f);
        CHECKF(got == total, "%s: %zu floats, expected %zu", out, got, total);
        double worst = 0.0;
        for (int a = 0, at = 0; a < n && got == total; a++) {
            for (size_t e = 0; e < (size_t)maps[a].heads * T * T; e++)
                worst = fmax(worst, fabs(maps[a].weights[e] - want[at + e]));
            at += maps[a].heads * T * T;
            check_rows(&maps[a]);
        }
        CHECKF(worst <= 1e-5, "'%s': nn's weights differ from PyTorch's by %.3g", cases[c].spec, worst);
        printf("  '%s', %d tokens: %d layers, max |nn - PyTorch| %.2e\n", cases[c].spec, T, n, worst);
        free(want);
        nn_attention_maps_free(maps, n);
        nn_model_free(&m);
    }
}

static void test_errors(void) {
    nn_model m;
    int ids[20] = {0};
    nn_attention_map *maps = (nn_attention_map *)&m; /* must come back NULL */
    if (text_model(&m, "embed(8) posembed attention(2) unembed", 0, 8)) {
        CHECK(nn_model_attention_maps(&m, ids, 9, &maps) == -1 && maps == NULL &&
              strstr(nn_last_error(), "at most 8 (its context)"));
        ids[3] = V;
        CHECK(nn_model_attention_maps(&m, ids, 8, &maps) == -1 && strstr(nn_last_error(), "token id 13"));
        ids[3] = 0;
        CHECK(nn_model_attention_maps(&m, ids, 0, &maps) == -1);
        nn_model_free(&m);
    }
    if (text_model(&m, "embed(8) lstm(8) linear(13)", 0, 0)) {
        maps = (nn_attention_map *)&m;
        CHECK(nn_model_attention_maps(&m, ids, 5, &maps) == 0 && maps == NULL);
        nn_model_free(&m);
    }
    nn_rng rng;
    nn_rng_seed(&rng, 1, 0);
    CHECK(nn_model_init(&m, "flatten linear(10)", (int[]){1, 28, 28}, 10, &rng) == 0);
    CHECK(nn_model_attention_maps(&m, ids, 5, &maps) == -1 && strstr(nn_last_error(), "not a text model"));
    nn_model_free(&m);
}

/* ---- nn generate --attention ---- */

#define SHAKESPEARE "datasets/tinyshakespeare/input.txt"
#define RUN "--steps 30 --eval-every 30 --eval-windows 10 --context 24 --batch-size 8 --threads 1"

/* A small GPT (2 blocks of 4 heads, context 24) and an LSTM, trained for a
 * few steps by nn train; NULL after a failure. */
static const char *trained(bool gpt) {
    static char path[2][256];
    static int done[2] = {-1, -1};
    int k = gpt;
    if (done[k] < 0) {
        snprintf(path[k], sizeof path[k], "%s", tmp(gpt ? "gpt.safetensors" : "lstm.safetensors"));
        const char *arch = gpt ? "embed(32) posembed repeat(2, residual(layernorm attention(4)) residual(layernorm "
                                 "linear(64) gelu linear(32))) layernorm unembed"
                               : "embed(8) lstm(16) linear(65)";
        done[k] = nn("train --data " SHAKESPEARE " --arch '%s' " RUN " --save %s", arch, path[k]) == 0;
        CHECKF(done[k], "nn train failed: %s", err_text);
    }
    return done[k] ? path[k] : NULL;
}

/* The PNG's width and height from its IHDR chunk, and its size in bytes;
 * false when the file is not a PNG. */
static bool png_size(const char *path, unsigned *w, unsigned *h, long *bytes) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[24] = {0}, tail[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool ok = fread(head, 1, sizeof head, f) == sizeof head && fseek(f, -8, SEEK_END) == 0 &&
              fread(tail, 1, sizeof tail, f) == sizeof tail;
    *bytes = ftell(f);
    fclose(f);
    *w = (unsigned)head[16] << 24 | (unsigned)head[17] << 16 | (unsigned)head[18] << 8 | head[19];
    *h = (unsigned)head[20] << 24 | (unsigned)head[21] << 16 | (unsigned)head[22] << 8 | head[23];
    return ok && memcmp(head, sig, 8) == 0 && memcmp(head + 12, "IHDR", 4) == 0 && memcmp(tail, "IEND", 4) == 0;
}

static void test_cli_draws(void) {
    const char *gpt = trained(true);
    if (!gpt) return;
    static char plain[sizeof out_text];
    const char *png = tmp("attention.png");
    /* The prompt holds a space and a line break, drawn as symbols. */
    CHECK(nn("generate --model %s --prompt 'ROMEO:\nIs it so?' --length 30 --seed 3", gpt) == 0);
    snprintf(plain, sizeof plain, "%s", out_text);
    int rc = nn("generate --model %s --prompt 'ROMEO:\nIs it so?' --length 30 --seed 3 --attention %s", gpt, png);
    CHECKF(rc == 0, "exit %d: %s", rc, err_text);
    CHECKF(strcmp(out_text, plain) == 0 && strncmp(out_text, "ROMEO:\nIs it so?", 16) == 0,
           "the text changed with --attention: '%s' vs '%s'", out_text, plain);
    CHECKF(strstr(err_text, "2 layers over 16 characters drawn in") && strstr(err_text, png), "%s", err_text);
    unsigned w = 0, h = 0;
    long bytes = 0;
    /* 2 rows of 4 maps of 16 cells of 20 px, with their tokens and titles. */
    CHECKF(png_size(png, &w, &h, &bytes) && w >= 4 * 320 && w <= 4000 && h >= 2 * 320 && h <= 2000 &&
               bytes > 20000 && bytes < 2000000,
           "%s: %ux%u, %ld bytes", png, w, h, bytes);

    /* Past the context the last 24 characters are drawn, as generation reads them. */
    rc = nn("generate --model %s --prompt 'First Citizen: Before we proceed any further' --length 5 --attention %s",
            gpt, tmp("long.svg"));
    CHECKF(rc == 0 && strstr(err_text, "last 24 of 44 characters (the model's context)"), "exit %d: %s", rc,
           err_text);
    char tail[16] = {0};
    FILE *f = fopen(tmp("long.svg"), "rb");
    if (f && fseek(f, -(long)sizeof tail + 1, SEEK_END) == 0) CHECK(fread(tail, 1, sizeof tail - 1, f) > 0);
    if (f) fclose(f);
    slurp(tmp("long.svg"), plain, 4096);
    CHECKF(strstr(plain, "<svg") && strstr(tail, "</svg>"), "%s: not an SVG", tmp("long.svg"));
}

static void test_cli_refuses(void) {
    const char *gpt = trained(true), *lstm = trained(false);
    if (!gpt || !lstm) return;
    const char *png = tmp("refused.png");
    CHECK(nn("generate --model %s --length 5 --attention %s", gpt, png) == 2 &&
          strncmp(err_text, "nn generate: --attention needs --prompt", 39) == 0 && access(png, F_OK) != 0);
    CHECK(nn("generate --model %s --prompt 'To be' --length 5 --attention %s", lstm, png) == 2 &&
          strstr(err_text, "needs a model with attention layers") && strstr(err_text, "has none") &&
          out_text[0] == '\0' && access(png, F_OK) != 0);
    CHECK(nn("generate --model %s --prompt 'To be' --attention %s", gpt, tmp("a.jpg")) == 2 &&
          strstr(err_text, "must end in .png or .svg"));
    CHECK(nn("generate --model %s --prompt 'To be' --attention %s", gpt, tmp("missing/a.png")) == 1 &&
          one_line_error("missing/a.png") && strchr(err_text, '\n') == err_text + strlen(err_text) - 1);
}

TEST_MAIN(TEST(test_against_recompute), TEST(test_against_torch), TEST(test_errors), TEST(test_cli_draws),
          TEST(test_cli_refuses))
