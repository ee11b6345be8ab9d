/* Text models: specs over token ids (shapes, PyTorch's parameter counts,
 * errors), the generation shortcut (the state carried from call to call
 * gives the logits of recomputing the whole prefix, for rnn, lstm, gru and
 * a stack), padded batches of a classifier (each sequence's scores as if
 * alone), checkpoints, and a small language model that learns a pattern and
 * then writes it. */
#include <math.h>
#include <unistd.h>

#include "check.h"
#include "nn/model.h"
#include "nn/optim.h"

enum { V = 12 };

static nn_model model(const char *spec, int classes, uint64_t seed) {
    nn_model m;
    nn_rng r;
    nn_rng_seed(&r, seed, 0);
    CHECKF(nn_model_plan_text(&m, spec, V, classes) == 0, "%s", nn_last_error());
    nn_model_build(&m, &r);
    return m;
}

static void test_plan_text(void) {
    nn_model m = model("embed(16) lstm(32) linear(12)", V, 1);
    /* PyTorch: Embedding 12x16, LSTM(16, 32): 4*32*(16+32) + 2*4*32, Linear(32, 12) */
    CHECK(nn_model_param_count(&m) == 12 * 16 + 4 * 32 * (16 + 32) + 2 * 4 * 32 + 32 * 12 + 12);
    CHECK(m.classes == V && m.layers[1].out_shape[1] == 32 && m.layers[2].out_ndim == 2);
    CHECK(nn_layer_tensor(&m.layers[1], "weight_hh_l0")->shape[0] == 128);
    CHECK(strcmp(m.layers[0].name, "embed1") == 0 && strcmp(m.layers[1].name, "lstm1") == 0);
    nn_model_free(&m);
    nn_model c = model("embed(8) gru(16) last linear(5)", 5, 1);
    CHECK(c.classes == 5 && c.layers[2].out_ndim == 1 && c.layers[2].out_shape[0] == 16);
    nn_model_free(&c);
    const struct {
        const char *spec, *why;
        bool text;
    } bad[] = {
        {"linear(12)", "starts with embed", true},
        {"embed(8) flatten linear(12)", "no fixed size", true},
        {"embed(8) lstm(8) batchnorm linear(12)", "use layernorm", true},
        {"embed(8) lstm(8)", "8 features but the data has 12", true},
        {"embed(8) lstm(8) last lstm(4) linear(12)", "runs over a sequence", true},
        {"embed(8) flatten linear(10)", "comes first in a text model", false},
        {"lstm(8) flatten linear(10)", "runs over a sequence", false},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nn_model b;
        int rc = bad[i].text ? nn_model_plan_text(&b, bad[i].spec, V, V) : nn_model_plan(&b, bad[i].spec, (int[]){1, 28, 28}, 10);
        CHECKF(rc == -1 && strstr(nn_last_error(), bad[i].why), "'%s': %s", bad[i].spec,
               rc ? nn_last_error() : "accepted");
    }
}

/* Logits of the whole sequences at once and of the same tokens fed in
 * pieces (3, then 1 at a time) with the state carried: equal. */
static void check_carried_state(const char *spec) {
    enum { B = 2, T = 9 };
    nn_model m = model(spec, V, 4);
    int ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 7 + 3) % V;
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *all = nn_model_forward_tokens(&m, ctx, ids, B, T, NULL, NULL); /* [B, T, V] */
    float whole[B * T * V];
    memcpy(whole, all->data, sizeof whole);
    nn_model_state s;
    nn_model_state_init(&s, &m, B);
    double worst = 0;
    for (int t = 0; t < T;) {
        int n = t == 0 ? 3 : 1, piece[B * 3];
        for (int b = 0; b < B; b++)
            for (int k = 0; k < n; k++) piece[b * n + k] = ids[b * T + t + k];
        nn_ctx_reset(ctx);
        nn_tensor *y = nn_model_forward_state(&m, ctx, &s, piece, n);
        for (int b = 0; b < B; b++)
            for (int k = 0; k < n; k++)
                for (int v = 0; v < V; v++)
                    worst = fmax(worst, fabs(y->data[((size_t)b * n + k) * V + v] - whole[((size_t)b * T + t + k) * V + v]));
        t += n;
    }
    CHECKF(worst <= 1e-5, "%s: carried state differs from the whole sequence by %g", spec, worst);
    nn_model_state_free(&s);
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

static void test_carried_state(void) {
    check_carried_state("embed(8) rnn(16) linear(12)");
    check_carried_state("embed(8) lstm(16) linear(12)");
    check_carried_state("embed(8) gru(16) linear(12)");
    check_carried_state("embed(8) lstm(16) dropout(0.2) gru(8) layernorm relu linear(12)");
}

/* A padded batch of a classifier: each sequence's scores as if it ran alone. */
static void test_padded_batch(void) {
    nn_model m = model("embed(8) gru(16) last linear(5)", 5, 6);
    int ids[3 * 6] = {1, 2, 3, 0, 0, 0, 4, 5, 6, 7, 8, 9, 10, 11, 0, 0, 0, 0}, lengths[3] = {3, 6, 2};
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_tensor *y = nn_model_forward_tokens(&m, ctx, ids, 3, 6, lengths, NULL);
    float batch[15];
    memcpy(batch, y->data, sizeof batch);
    for (int b = 0; b < 3; b++) {
        nn_ctx_reset(ctx);
        nn_tensor *alone = nn_model_forward_tokens(&m, ctx, ids + b * 6, 1, lengths[b], NULL, NULL);
        for (int k = 0; k < 5; k++)
            CHECKF(fabsf(alone->data[k] - batch[b * 5 + k]) <= 1e-5f, "sequence %d class %d: %g alone, %g in the batch",
                   b, k, alone->data[k], batch[b * 5 + k]);
    }
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

static void test_checkpoint(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/nn_test_text_model_%d.safetensors", (int)getpid());
    nn_model m = model("embed(8) lstm(16) gru(8) linear(12)", V, 9), back;
    CHECKF(nn_model_save(&m, path) == 0, "%s", nn_last_error());
    CHECKF(nn_model_load(&back, path) == 0, "%s", nn_last_error());
    CHECK(back.vocab == V && back.classes == V && strcmp(nn_model_spec(&back), nn_model_spec(&m)) == 0);
    CHECK(back.params.count == m.params.count &&
          memcmp(back.params.data, m.params.data, m.params.count * sizeof(float)) == 0);
    nn_model_free(&back);
    nn_model_free(&m);
    unlink(path);
}

/* A text checkpoint whose nn.input_shape is malformed is refused with a
 * message naming the key. */
static void test_bad_input_shape(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/nn_test_text_model_bad_%d.safetensors", (int)getpid());
    float w[12 * 4] = {0};
    nn_st_entry e[1] = {{"embed1.weight", 2, (int64_t[]){12, 4}, w}};
    const char *bad[] = {"tokens(0)", "tokens(abc)", "tokens(12", "tokens(-3)", "tokens(99999999)", "tokens()"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *keys[] = {"nn.spec", "nn.input_shape", "nn.input_mean", "nn.input_std"};
        const char *values[] = {"embed(4) linear(3)", bad[i], "0", "1"};
        CHECK(nn_st_save(path, e, 1, keys, values, 4) == 0);
        nn_model m;
        CHECKF(nn_model_load(&m, path) == -1 && strstr(nn_last_error(), "nn.input_shape"), "'%s': %s", bad[i],
               nn_last_error());
    }
    unlink(path);
}

static int collect(void *user, int id) {
    int *out = user;
    out[++out[0]] = id;
    return 0;
}

/* The repeating sequence 0 1 2 ... 11 0 1 ...: after a few hundred Adam
 * steps the loss is far below ln(12) and greedy generation continues it. */
static void test_learns_and_writes(void) {
    enum { B = 8, T = 16 };
    nn_model m = model("embed(16) lstm(32) linear(12)", V, 2);
    nn_optim_config oc = nn_optim_defaults(NN_OPT_ADAM);
    nn_optim o;
    nn_optim_init(&o, &m.params, &oc);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_rng r;
    nn_rng_seed(&r, 5, 0);
    int x[B * T], y[B * T];
    float loss = 0;
    for (int step = 0; step < 300; step++) {
        for (int b = 0; b < B; b++) {
            int start = (int)(nn_rng_uniform(&r) * V);
            for (int t = 0; t < T; t++) x[b * T + t] = (start + t) % V, y[b * T + t] = (start + t + 1) % V;
        }
        nn_ctx_reset(ctx);
        nn_params_zero_grad(&m.params);
        nn_tensor *logits = nn_model_forward_tokens(&m, ctx, x, B, T, NULL, NULL);
        nn_tensor *l = nn_cross_entropy(ctx, nn_reshape(ctx, logits, 2, (int[]){B * T, V}), y, 0.0f);
        nn_backward(ctx, l);
        nn_optim_step(&o, 1e-2f);
        loss = l->data[0];
    }
    CHECKF(loss < 0.1f * logf(V), "loss %g after 300 steps (uniform: %g)", loss, logf(V));
    int prompt[3] = {4, 5, 6}, out[1 + 20] = {0};
    CHECK(nn_generate(&m, prompt, 3, 20, 0.0f, 0, &r, collect, out) == 20 && out[0] == 20);
    for (int i = 1; i <= 20; i++) CHECKF(out[i] == (6 + i) % V, "token %d is %d, expected %d", i, out[i], (6 + i) % V);
    nn_ctx_free(ctx);
    nn_optim_free(&o);
    nn_model_free(&m);
}

TEST_MAIN(TEST(test_plan_text), TEST(test_carried_state), TEST(test_padded_batch), TEST(test_checkpoint),
          TEST(test_bad_input_shape),
          TEST(test_learns_and_writes))
