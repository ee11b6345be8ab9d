/* The sequence ops beyond their gradients (test_gradcheck.c) and PyTorch's
 * values (test_torch_reference.c):
 * - a sequence run in pieces with its state carried from one call to the
 *   next gives the outputs and final state of one call (what generation
 *   relies on), for the RNN, the LSTM and the GRU;
 * - evaluation without gradients gives the bits of a training forward;
 * - a padded batch (nn_recurrent_padded) gives each sequence's real steps
 *   the outputs, gradients and final state of the whole-length run and of
 *   the sequence alone, zeros past its end;
 * - one and two OpenMP threads give the same bits, forward and backward,
 *   with and without lengths.
 *   OpenBLAS's sgemm gives other bits on other thread counts (any op's,
 *   nn_linear's too: 128^3 and up here), so the model runs inside an outer
 *   parallel region: OpenBLAS then keeps to the calling thread, while the
 *   ops' own loops get a nested team of one or two threads;
 * - bad ids, lengths and shapes abort with a message that says what was
 *   wrong. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "run_child.h"
#include "nn/core.h"
#include "core/util.h"

typedef nn_tensor *(*recurrent_fn)(nn_ctx *, nn_tensor *, nn_tensor *, nn_tensor *, nn_tensor *, nn_tensor *,
                                   nn_rnn_state *);

static const struct {
    const char *name;
    recurrent_fn fn;
    int G;
} kinds[] = {{"rnn", nn_rnn, 1}, {"lstm", nn_lstm, 4}, {"gru", nn_gru, 3}};
#define N_KINDS (int)(sizeof kinds / sizeof kinds[0])

/* A layer's four parameters in p (w_ih, w_hh, b_ih, b_hh), PyTorch's
 * U(-1/sqrt(H), 1/sqrt(H)) scaled up so the gates do something. */
static void layer_init(nn_params *p, nn_tensor **w, int G, int D, int H, nn_rng *rng) {
    nn_params_init(p);
    w[0] = nn_params_add(p, "weight_ih_l0", 2, (int[]){G * H, D}, true);
    w[1] = nn_params_add(p, "weight_hh_l0", 2, (int[]){G * H, H}, true);
    w[2] = nn_params_add(p, "bias_ih_l0", 1, (int[]){G * H}, false);
    w[3] = nn_params_add(p, "bias_hh_l0", 1, (int[]){G * H}, false);
    for (int k = 0; k < 4; k++) nn_init_uniform_fan_in(w[k], H / 4, rng);
}

static void fill(float *v, size_t n, nn_rng *rng) {
    for (size_t i = 0; i < n; i++) v[i] = 2.0f * nn_rng_uniform(rng) - 1.0f;
}

/* Steps [t0, t1) of x [B,T,D] as their own [B, t1-t0, D] input. */
static nn_tensor *steps(nn_ctx *ctx, const float *x, int B, int T, int D, int t0, int t1) {
    nn_tensor *part = nn_input(ctx, "x", 3, (int[]){B, t1 - t0, D});
    for (int b = 0; b < B; b++)
        memcpy(part->data + (size_t)b * (t1 - t0) * D, x + ((size_t)b * T + t0) * D,
               (size_t)(t1 - t0) * D * sizeof(float));
    return part;
}

static void test_state_carried(void) {
    enum { B = 3, T = 12, D = 5, H = 7 };
    /* pieces: one call, 5 + 7 steps, and one step at a time (generation) */
    static const int cuts[][T + 1] = {{0, T}, {0, 5, T}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, T}};
    static const int n_cuts[] = {2, 3, T + 1};
    nn_rng rng;
    nn_rng_seed(&rng, 7, 1);
    float x[B * T * D], h0[B * H], c0[B * H];
    fill(x, B * T * D, &rng);
    fill(h0, B * H, &rng);
    fill(c0, B * H, &rng);
    for (int k = 0; k < N_KINDS; k++) {
        nn_params p;
        nn_tensor *w[4];
        layer_init(&p, w, kinds[k].G, D, H, &rng);
        nn_ctx *ctx = nn_ctx_new(0);
        float want[B * T * H], want_h[B * H], want_c[B * H];
        for (int start = 0; start < 2; start++) { /* from zeros, from (h0, c0) */
            for (size_t c = 0; c < sizeof n_cuts / sizeof n_cuts[0]; c++) {
                float got[B * T * H], h[B * H], cc[B * H];
                if (start) memcpy(h, h0, sizeof h), memcpy(cc, c0, sizeof cc);
                else memset(h, 0, sizeof h), memset(cc, 0, sizeof cc);
                nn_rnn_state state = {h, cc};
                for (int piece = 0; piece + 1 < n_cuts[c]; piece++) {
                    int t0 = cuts[c][piece], t1 = cuts[c][piece + 1];
                    nn_ctx_reset(ctx);
                    nn_tensor *y = kinds[k].fn(ctx, steps(ctx, x, B, T, D, t0, t1), w[0], w[1], w[2], w[3], &state);
                    for (int b = 0; b < B; b++)
                        memcpy(got + ((size_t)b * T + t0) * H, y->data + (size_t)b * (t1 - t0) * H,
                               (size_t)(t1 - t0) * H * sizeof(float));
                }
                if (c == 0) {
                    memcpy(want, got, sizeof want), memcpy(want_h, h, sizeof h), memcpy(want_c, cc, sizeof cc);
                    /* the final state is the last step's output */
                    for (int b = 0; b < B; b++)
                        CHECK(memcmp(h + b * H, got + ((size_t)b * T + T - 1) * H, H * sizeof(float)) == 0);
                    if (!start) { /* state = NULL starts from zeros too */
                        nn_ctx_reset(ctx);
                        nn_tensor *y = kinds[k].fn(ctx, steps(ctx, x, B, T, D, 0, T), w[0], w[1], w[2], w[3], NULL);
                        CHECKF(memcmp(y->data, want, sizeof want) == 0, "%s: state NULL differs from zeros",
                               kinds[k].name);
                    }
                    continue;
                }
                CHECKF(memcmp(got, want, sizeof want) == 0, "%s: %d pieces%s: outputs differ from one call",
                       kinds[k].name, n_cuts[c] - 1, start ? " from a state" : "");
                CHECKF(memcmp(h, want_h, sizeof h) == 0, "%s: %d pieces: final h differs", kinds[k].name,
                       n_cuts[c] - 1);
                if (kinds[k].G == 4)
                    CHECKF(memcmp(cc, want_c, sizeof cc) == 0, "%s: %d pieces: final c differs", kinds[k].name,
                           n_cuts[c] - 1);
            }
            printf("  %s from %s: one call, 5 + 7 steps and 12 single steps give the same bits\n", kinds[k].name,
                   start ? "a state" : "zeros");
        }
        nn_ctx_free(ctx);
        nn_params_free(&p);
    }
}

/* nn_recurrent_padded against the whole-length op: on each sequence's real
 * steps the same outputs and the same gradients (of a loss that reads the
 * real steps only), 0 past its end, and the final state at its last real
 * step; and each sequence alone (one row: the matrix-vector path) gives
 * its outputs. x comes from an embedding of one row per step, so its
 * gradient is the table's. */
static void test_padded(void) {
    enum { B = 6, T = 7, D = 5, H = 20 };
    static const int lengths[B] = {7, 3, 1, 5, 7, 2};
    int ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = i;
    nn_rng rng;
    nn_rng_seed(&rng, 5, 3);
    float r[B * T * H], h0[B * H], c0[B * H];
    fill(r, B * T * H, &rng);
    fill(h0, B * H, &rng);
    fill(c0, B * H, &rng);
    for (int b = 0; b < B; b++) /* the loss reads the real steps only */
        memset(r + ((size_t)b * T + lengths[b]) * H, 0, (size_t)(T - lengths[b]) * H * sizeof(float));
    for (int k = 0; k < N_KINDS; k++) {
        int G = kinds[k].G;
        nn_params p;
        nn_tensor *w[5];
        layer_init(&p, w, G, D, H, &rng);
        w[4] = nn_params_add(&p, "x", 2, (int[]){B * T, D}, false);
        nn_init_uniform_fan_in(w[4], 1, &rng);
        for (int start = 0; start < 2; start++) {
            float y[2][B * T * H], hs[2][B * H], cs[2][B * H], *grad[2];
            for (int pass = 0; pass < 2; pass++) { /* whole length, padded */
                nn_ctx *ctx = nn_ctx_new(0);
                if (start) memcpy(hs[pass], h0, sizeof h0), memcpy(cs[pass], c0, sizeof c0);
                else memset(hs[pass], 0, sizeof hs[pass]), memset(cs[pass], 0, sizeof cs[pass]);
                nn_rnn_state state = {hs[pass], cs[pass]};
                nn_tensor *x = nn_embedding(ctx, w[4], ids, B, T);
                nn_tensor *out = pass ? nn_recurrent_padded(ctx, G, x, w[0], w[1], w[2], w[3], &state, lengths)
                                      : kinds[k].fn(ctx, x, w[0], w[1], w[2], w[3], &state);
                nn_tensor *mask = nn_input(ctx, "r", 3, (int[]){B, T, H});
                memcpy(mask->data, r, sizeof r);
                memcpy(y[pass], out->data, sizeof y[pass]);
                nn_params_zero_grad(&p);
                nn_backward(ctx, nn_sum(ctx, nn_mul(ctx, out, mask)));
                grad[pass] = nn_xmalloc(p.count * sizeof(float));
                memcpy(grad[pass], p.grad, p.count * sizeof(float));
                nn_ctx_free(ctx);
            }
            float worst = 0.0f;
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T; t++)
                    for (int j = 0; j < H; j++) {
                        size_t i = ((size_t)b * T + t) * H + j;
                        if (t >= lengths[b]) CHECKF(y[1][i] == 0.0f, "%s: y[%d,%d,%d] past the end is %g",
                                                    kinds[k].name, b, t, j, y[1][i]);
                        else worst = fmaxf(worst, fabsf(y[1][i] - y[0][i]));
                    }
            CHECKF(worst <= 1e-6f, "%s: real steps differ from the whole-length run by %g", kinds[k].name, worst);
            float worst_g = 0.0f;
            for (size_t i = 0; i < p.count; i++)
                worst_g = fmaxf(worst_g, fabsf(grad[1][i] - grad[0][i]) / (1.0f + fabsf(grad[0][i])));
            CHECKF(worst_g <= 1e-5f, "%s: gradients differ from the whole-length run's by %g", kinds[k].name,
                   worst_g);
            for (int b = 0; b < B; b++) { /* past the end the input has no gradient */
                const float *dx = grad[1] + (w[4]->data - p.data) + ((size_t)b * T + lengths[b]) * D;
                for (int i = 0; i < (T - lengths[b]) * D; i++)
                    CHECKF(dx[i] == 0.0f, "%s: sequence %d: gradient past its end", kinds[k].name, b);
            }
            for (int b = 0; b < B; b++) { /* alone, from the same state */
                nn_ctx *ctx = nn_ctx_new(0);
                nn_set_grad_enabled(ctx, false);
                float h1[H], c1[H];
                memcpy(h1, start ? h0 + b * H : (float[H]){0}, sizeof h1);
                memcpy(c1, start ? c0 + b * H : (float[H]){0}, sizeof c1);
                nn_tensor *alone = kinds[k].fn(ctx, nn_embedding(ctx, w[4], ids + b * T, 1, lengths[b]), w[0], w[1],
                                               w[2], w[3], &(nn_rnn_state){h1, c1});
                float off = 0.0f;
                for (int i = 0; i < lengths[b] * H; i++)
                    off = fmaxf(off, fabsf(alone->data[i] - y[1][(size_t)b * T * H + i]));
                for (int j = 0; j < H; j++) {
                    off = fmaxf(off, fabsf(h1[j] - hs[1][b * H + j]));
                    if (G == 4) off = fmaxf(off, fabsf(c1[j] - cs[1][b * H + j]));
                }
                CHECKF(off <= 1e-5f, "%s: sequence %d alone differs by %g", kinds[k].name, b, off);
                /* the final h is the last real step's output */
                CHECK(memcmp(hs[1] + b * H, y[1] + ((size_t)b * T + lengths[b] - 1) * H, H * sizeof(float)) == 0);
                nn_ctx_free(ctx);
            }
            printf("  %s from %s, lengths 7 3 1 5 7 2 of 7: real steps as the whole-length run (outputs within %.1e, "
                   "gradients %.1e) and as each alone; zeros past the end\n",
                   kinds[k].name, start ? "a state" : "zeros", worst, worst_g);
            free(grad[0]);
            free(grad[1]);
        }
        nn_params_free(&p);
    }
}

/* Embedding -> layer -> [B*T,H] logits through a linear layer ->
 * cross-entropy at every position; returns the loss, fills out (the layer's
 * output) and the parameters' gradients. */
enum { TB = 16, TT = 12, TV = 40, TD = 192, TH = 96 };
static const int *run_lengths; /* NULL: whole length; else through nn_recurrent_padded */
static int run_gates;

static float run_model(nn_params *p, nn_tensor **w, recurrent_fn fn, const int *ids, bool grad, float *out) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_grad_enabled(ctx, grad);
    nn_tensor *x = nn_embedding(ctx, w[4], ids, TB, TT);
    nn_tensor *h = run_lengths ? nn_recurrent_padded(ctx, run_gates, x, w[0], w[1], w[2], w[3], NULL, run_lengths)
                               : fn(ctx, x, w[0], w[1], w[2], w[3], NULL);
    memcpy(out, h->data, h->size * sizeof(float));
    nn_tensor *logits = nn_linear(ctx, nn_reshape(ctx, h, 2, (int[]){TB * TT, TH}), w[5], w[6]);
    nn_tensor *loss = nn_cross_entropy(ctx, logits, ids, 0.0f);
    float l = loss->data[0];
    nn_params_zero_grad(p);
    if (grad) nn_backward(ctx, loss);
    nn_ctx_free(ctx);
    return l;
}

/* run_model on one thread of a team of two, its loops on `threads` threads. */
static float run_nested(int threads, nn_params *p, nn_tensor **w, recurrent_fn fn, const int *ids, bool grad,
                        float *out) {
    float loss = 0.0f;
    int team = 0;
#pragma omp parallel num_threads(2)
    if (omp_get_thread_num() == 0) {
        omp_set_num_threads(threads);
#pragma omp parallel
        if (omp_get_thread_num() == 0) team = omp_get_num_threads();
        loss = run_model(p, w, fn, ids, grad, out);
    }
    CHECKF(team == threads, "the nested team has %d threads, not %d", team, threads);
    return loss;
}

static void test_threads_and_eval(void) {
    nn_rng rng;
    nn_rng_seed(&rng, 11, 2);
    static int ids[TB * TT];
    for (int i = 0; i < TB * TT; i++) ids[i] = (int)nn_rng_below(&rng, TV);
    int levels = omp_get_max_active_levels();
    omp_set_max_active_levels(2);
    size_t n_out = (size_t)TB * TT * TH;
    float *out1 = nn_xmalloc(n_out * sizeof(float)), *out2 = nn_xmalloc(n_out * sizeof(float));
    for (int k = 0; k < N_KINDS; k++) {
        nn_params p;
        nn_tensor *w[7];
        layer_init(&p, w, kinds[k].G, TD, TH, &rng);
        w[4] = nn_params_add(&p, "embedding", 2, (int[]){TV, TD}, true);
        w[5] = nn_params_add(&p, "fc.weight", 2, (int[]){TV, TH}, true);
        w[6] = nn_params_add(&p, "fc.bias", 1, (int[]){TV}, false);
        for (int i = 0; i < 4; i++) nn_init_uniform_fan_in(w[i], TH / 4, &rng);
        nn_init_normal(w[4], 0.0f, 1.0f, &rng);
        nn_init_uniform_fan_in(w[5], TH, &rng);
        nn_init_uniform_fan_in(w[6], TH, &rng);
        float *grad1 = nn_xmalloc(p.count * sizeof(float));
        static int lengths[TB];
        for (int b = 0; b < TB; b++) lengths[b] = 1 + (int)nn_rng_below(&rng, TT);
        run_gates = kinds[k].G;
        for (int padded = 0; padded < 2; padded++) {
            run_lengths = padded ? lengths : NULL;
            float loss1 = run_nested(1, &p, w, kinds[k].fn, ids, true, out1);
            memcpy(grad1, p.grad, p.count * sizeof(float));
            float loss2 = run_nested(2, &p, w, kinds[k].fn, ids, true, out2);
            CHECKF(memcmp(out1, out2, n_out * sizeof(float)) == 0 && loss1 == loss2,
                   "%s%s: 1 and 2 threads give different outputs", kinds[k].name, padded ? " padded" : "");
            CHECKF(memcmp(grad1, p.grad, p.count * sizeof(float)) == 0,
                   "%s%s: 1 and 2 threads give different gradients", kinds[k].name, padded ? " padded" : "");
            float loss_eval = run_nested(2, &p, w, kinds[k].fn, ids, false, out1);
            CHECKF(memcmp(out1, out2, n_out * sizeof(float)) == 0 && loss_eval == loss2,
                   "%s%s: without gradients the forward gives other bits", kinds[k].name, padded ? " padded" : "");
            printf("  %s [%d,%d,%d] -> H %d%s: 1 and 2 threads, with and without gradients: same bits (loss %.6f)\n",
                   kinds[k].name, TB, TT, TD, TH, padded ? ", lengths 1..12" : "", loss2);
        }
        run_lengths = NULL;
        free(grad1);
        nn_params_free(&p);
    }
    omp_set_max_active_levels(levels);
    free(out1);
    free(out2);
}

/* ---- misuse ---- */

static void child_bad_id(void) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *w = nn_input(ctx, "w", 2, (int[]){5, 3});
    nn_embedding(ctx, w, (int[]){0, 4, 5, 1}, 2, 2);
}
static void child_negative_id(void) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *w = nn_input(ctx, "w", 2, (int[]){5, 3});
    nn_embedding(ctx, w, (int[]){0, -1}, 1, 2);
}
static void child_bad_length(void) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 3, (int[]){2, 4, 3});
    nn_last_step(ctx, x, (int[]){4, 0});
}
static void child_lstm_shapes(void) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 3, (int[]){2, 4, 3});
    nn_tensor *w_ih = nn_input(ctx, "w_ih", 2, (int[]){12, 3}), *w_hh = nn_input(ctx, "w_hh", 2, (int[]){12, 4});
    nn_lstm(ctx, x, w_ih, w_hh, NULL, NULL, NULL); /* G*H = 12 is a GRU's H = 4, not an LSTM's */
}
static void child_padded_length(void) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 3, (int[]){2, 4, 3});
    nn_tensor *w_ih = nn_input(ctx, "w_ih", 2, (int[]){6, 3}), *w_hh = nn_input(ctx, "w_hh", 2, (int[]){6, 2});
    nn_recurrent_padded(ctx, 3, x, w_ih, w_hh, NULL, NULL, NULL, (int[]){4, 5});
}
static void child_padded_gates(void) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 3, (int[]){2, 4, 3});
    nn_tensor *w_ih = nn_input(ctx, "w_ih", 2, (int[]){4, 3}), *w_hh = nn_input(ctx, "w_hh", 2, (int[]){4, 2});
    nn_recurrent_padded(ctx, 2, x, w_ih, w_hh, NULL, NULL, NULL, NULL);
}
static void child_lstm_no_c(void) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 3, (int[]){2, 4, 3});
    nn_tensor *w_ih = nn_input(ctx, "w_ih", 2, (int[]){8, 3}), *w_hh = nn_input(ctx, "w_hh", 2, (int[]){8, 2});
    float h[4] = {0};
    nn_lstm(ctx, x, w_ih, w_hh, NULL, NULL, &(nn_rnn_state){h, NULL});
}

static void expect_abort(const char *what, void (*fn)(void), const char *needle) {
    char msg[4096];
    int status = run_in_child(fn, msg, sizeof msg);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: child did not abort (status %#x)", what,
           status);
    CHECKF(strstr(msg, needle) != NULL, "%s: message lacks \"%s\": %s", what, needle, msg);
    char *nl = strchr(msg, '\n');
    if (nl) *nl = '\0';
    printf("  %s -> %s\n", what, msg);
}

static void test_misuse(void) {
    expect_abort("embedding id 5 of 5 rows", child_bad_id, "ids[2] = 5");
    expect_abort("embedding id -1", child_negative_id, "ids[1] = -1");
    expect_abort("last_step length 0", child_bad_length, "lengths[1] = 0");
    expect_abort("lstm with a GRU's w_hh", child_lstm_shapes, "[4*H, H]");
    expect_abort("lstm state without c", child_lstm_no_c, "state->c");
    expect_abort("gru length 5 of 4 steps", child_padded_length, "lengths[1] = 5");
    expect_abort("2 gates", child_padded_gates, "2 gates");
}

TEST_MAIN(TEST(test_state_carried), TEST(test_padded), TEST(test_threads_and_eval), TEST(test_misuse))
