/* Generation's shortcut, the carried state (KV caches, recurrent states,
 * positions), against the long way, recomputing the sequence so far:
 *
 *  - logits: a 100-token sequence fed as a prompt of several tokens, then
 *    one or a few at a time through nn_model_forward_state; each token's
 *    logits equal, within 1e-5, those of the whole forward over the sequence
 *    up to it, cropped to the last `context` tokens as nanoGPT's generate
 *    crops it (past the context the window slides). GPTs with several heads
 *    and blocks, with and without biases; batches of 1 and 3; a piece that
 *    crosses the context's end; a GPT mixed with recurrent layers; attention
 *    without learned positions (no context: the caches grow);
 *  - text: nn_generate draws, from one seed, the same tokens twice, and the
 *    same tokens as a sampler that recomputes the cropped prefix for every
 *    token (greedy and at temperature 1), past the context too. */
#include <math.h>

#include "check.h"
#include "nn/core.h"
#include "nn/model.h"

enum { V = 11, N_TOKENS = 100 };

/* A GPT whose every weight matters: the fresh model's small positions and
 * tied output would give nearly uniform logits, which agree with anything. */
static bool gpt(nn_model *out, const char *spec, int context) {
    nn_model m;
    bool planned = nn_model_plan_text_context(&m, spec, V, V, context) == 0;
    CHECKF(planned, "'%s': %s", spec, nn_last_error());
    if (!planned) return false;
    nn_rng rng;
    nn_rng_seed(&rng, 21, 0);
    nn_model_build(&m, &rng);
    for (size_t k = 0; k < m.params.count; k++) m.params.data[k] = 0.3f * nn_rng_normal(&rng);
    *out = m;
    return true;
}

/* The reference: logits [B, V] of the token at index t of each row of seqs
 * [B, N_TOKENS], from a full forward over the window that ends with it. */
static void recompute(nn_model *m, nn_ctx *ctx, const int *seqs, int B, int t, float *out) {
    int context = m->in_shape[0];
    int first = context && t + 1 > context ? t + 1 - context : 0, W = t + 1 - first;
    int ids[8 * N_TOKENS];
    for (int b = 0; b < B; b++)
        for (int k = 0; k < W; k++) ids[b * W + k] = seqs[b * N_TOKENS + first + k];
    nn_ctx_reset(ctx);
    const float *y = nn_model_forward_tokens(m, ctx, ids, B, W, NULL, NULL)->data; /* [B, W, V] */
    for (int b = 0; b < B; b++) memcpy(out + b * V, y + ((size_t)b * W + W - 1) * V, V * sizeof(float));
}

/* The largest |difference| between the carried state's logits and the
 * recomputed ones over every token of B sequences of N_TOKENS, fed in
 * pieces of the sizes in `pieces` (cycled). */
static double worst_difference(nn_model *m, int B, const int *pieces, int n_pieces) {
    nn_rng rng;
    nn_rng_seed(&rng, 5, (uint64_t)B);
    int seqs[8 * N_TOKENS];
    for (int i = 0; i < B * N_TOKENS; i++) seqs[i] = (int)nn_rng_below(&rng, V);
    nn_ctx *ctx = nn_ctx_new(0), *ref = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_training(ref, false);
    nn_set_grad_enabled(ref, false);
    nn_model_state s;
    nn_model_state_init(&s, m, B);
    double worst = 0.0;
    for (int t = 0, p = 0; t < N_TOKENS; p++) {
        int n = pieces[p % n_pieces];
        if (n > N_TOKENS - t) n = N_TOKENS - t;
        int piece[8 * N_TOKENS];
        for (int b = 0; b < B; b++)
            for (int k = 0; k < n; k++) piece[b * n + k] = seqs[b * N_TOKENS + t + k];
        nn_ctx_reset(ctx);
        const float *y = nn_model_forward_state(m, ctx, &s, piece, n)->data; /* [B, n, V] */
        for (int k = 0; k < n; k++) {
            float want[8 * V];
            recompute(m, ref, seqs, B, t + k, want);
            for (int b = 0; b < B; b++)
                for (int v = 0; v < V; v++)
                    worst = fmax(worst, fabs(y[((size_t)b * n + k) * V + v] - want[b * V + v]));
        }
        t += n;
    }
    nn_model_state_free(&s);
    nn_ctx_free(ctx);
    nn_ctx_free(ref);
    return worst;
}

#define GPT(BIAS)                                                                                               \
    "embed(32) posembed repeat(3, residual(layernorm attention(4" BIAS ")) residual(layernorm linear(64" BIAS \
    ") gelu linear(32" BIAS "))) layernorm unembed"

/* One token at a time after a prompt, and pieces that cross the context's
 * end (16: 5 + 1 + 1 + 7 + 1 + 2 = 17) and come after it. */
static const int one_by_one[] = {5, 1};
static const int mixed_pieces[] = {5, 1, 1, 7, 1, 2, 1, 1, 3, 9};

static void check_model(const char *spec, int context) {
    nn_model m;
    if (!gpt(&m, spec, context)) return;
    for (int B = 1; B <= 3; B += 2) {
        double d = worst_difference(&m, B, one_by_one, 2);
        CHECKF(d <= 1e-5, "'%s', context %d, batch %d, token by token: logits differ by %g", spec, context, B, d);
        d = worst_difference(&m, B, mixed_pieces, (int)(sizeof mixed_pieces / sizeof *mixed_pieces));
        CHECKF(d <= 1e-5, "'%s', context %d, batch %d, in pieces: logits differ by %g", spec, context, B, d);
    }
    nn_model_free(&m);
}

static void test_gpt_with_biases(void) { check_model(GPT(""), 16); }

static void test_gpt_without_biases(void) { check_model(GPT(",bias=0"), 16); }

/* A context longer than the sequence: no sliding, the cache fills. */
static void test_gpt_within_context(void) { check_model(GPT(",bias=0"), 128); }

/* Recurrent layers keep their h and c beside the caches; when the window
 * slides they restart from zeros over it, as the cropped forward does. */
static void test_mixed_model(void) {
    check_model("embed(16) posembed lstm(16) residual(layernorm attention(2)) residual(gru(16)) layernorm unembed", 12);
}

/* Without learned positions a model has no context: nothing slides and the
 * caches grow with the sequence. */
static void test_unbounded_cache(void) {
    check_model("embed(16) residual(layernorm attention(2)) rnn(16) residual(layernorm attention(4,bias=0)) linear(11)",
                0);
}

/* ---- the text ---- */

typedef struct drawn {
    int ids[N_TOKENS], n;
} drawn;

static int keep(void *user, int id) {
    drawn *d = user;
    d->ids[d->n++] = id;
    return 0;
}

/* nn_generate the long way: the whole cropped sequence run for every token. */
static void generate_by_recomputing(nn_model *m, const int *prompt, int n_prompt, int length, float temperature,
                                    nn_rng *rng, drawn *out) {
    int seq[8 + N_TOKENS];
    memcpy(seq, prompt, (size_t)n_prompt * sizeof *seq);
    int n = n_prompt, context = m->in_shape[0];
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    for (out->n = 0; out->n < length;) {
        int first = context && n > context ? n - context : 0, W = n - first;
        nn_ctx_reset(ctx);
        const float *y = nn_model_forward_tokens(m, ctx, seq + first, 1, W, NULL, NULL)->data;
        int next = nn_sample_token(y + (size_t)(W - 1) * V, V, temperature, 0, rng);
        out->ids[out->n++] = next;
        seq[n++] = next;
    }
    nn_ctx_free(ctx);
}

static void test_same_text(void) {
    nn_model m;
    if (!gpt(&m, GPT(""), 16)) return;
    /* Positions as strong as the tokens' vectors (and the scores flatter):
     * a token scored at the wrong position changes the text. */
    nn_tensor *pos = nn_layer_tensor(&m.layers[1], "weight");
    for (size_t k = 0; k < pos->size; k++) pos->data[k] *= 4.0f;
    const int prompt[] = {3, 1, 4, 1, 5};
    for (int k = 0; k < 2; k++) {
        float temperature = k ? 1.0f : 0.0f;
        drawn a = {0}, b = {0}, c = {0};
        nn_rng r;
        nn_rng_seed(&r, 7, 0);
        CHECK(nn_generate(&m, prompt, 5, 90, temperature, 0, &r, keep, &a) == 90);
        nn_rng_seed(&r, 7, 0);
        nn_generate(&m, prompt, 5, 90, temperature, 0, &r, keep, &b);
        nn_rng_seed(&r, 7, 0);
        generate_by_recomputing(&m, prompt, 5, 90, temperature, &r, &c);
        CHECKF(memcmp(a.ids, b.ids, sizeof a.ids) == 0, "temperature %g: one seed, two texts", temperature);
        int first_diff = -1;
        for (int i = N_TOKENS - 1; i >= 0; i--)
            if (a.ids[i] != c.ids[i]) first_diff = i;
        CHECKF(first_diff < 0, "temperature %g: token %d differs from the recomputed prefix's", temperature,
               first_diff);
    }
    /* A prompt longer than the context: its last window, as nanoGPT crops it. */
    int long_prompt[40];
    for (int i = 0; i < 40; i++) long_prompt[i] = (i * 7 + 2) % V;
    drawn a = {0}, c = {0};
    nn_rng r;
    nn_rng_seed(&r, 9, 0);
    nn_generate(&m, long_prompt, 40, 30, 1.0f, 0, &r, keep, &a);
    nn_rng_seed(&r, 9, 0);
    generate_by_recomputing(&m, long_prompt + 24, 16, 30, 1.0f, &r, &c);
    CHECKF(memcmp(a.ids, c.ids, sizeof a.ids) == 0, "a prompt longer than the context: the text differs");
    nn_model_free(&m);
}

TEST_MAIN(TEST(test_gpt_with_biases), TEST(test_gpt_without_biases), TEST(test_gpt_within_context),
          TEST(test_mixed_model), TEST(test_unbounded_cache), TEST(test_same_text))
