/* Attention and the Transformer's layers:
 * - nn_attention against a plain double-precision computation (causal and
 *   not, several heads, lengths that differ in a batch), one and two
 *   threads giving the same bits, and finite-difference gradients;
 * - nn_add_positions and nn_mean_steps: values and gradients;
 * - the layers in specs (posembed, attention, linear(bias=0), unembed,
 *   mean): canonical forms, errors, the tied matrix stored once,
 *   checkpoints with the context, and whole-model gradient checks of a
 *   small GPT and a small encoder classifier;
 * - PyTorch's own computation of attention (values and gradients), when
 *   python3-torch is there;
 * - a GPT spec trained for a few steps by nn train on Tiny Shakespeare. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "run_child.h"
#include "run_nn.h"
#include "run_torch.h"
#include "nn/core.h"
#include "nn/model.h"
#include "core/util.h"

static nn_rng *rng(void) {
    static nn_rng r;
    static int seeded;
    if (!seeded) nn_rng_seed(&r, 2024, 21), seeded = 1;
    return &r;
}

static void fill(float *v, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) v[i] = scale * (2.0f * nn_rng_uniform(rng()) - 1.0f);
}

/* One attention case: B sequences of T steps, H heads of hd features. */
typedef struct attn_case {
    int B, T, H, hd;
    bool causal;
    const int *lengths; /* NULL: all T */
} attn_case;

static void case_str(const attn_case *c, char *buf, size_t cap) {
    size_t pos = (size_t)snprintf(buf, cap, "B %d, T %d, %d heads of %d, %s, lengths", c->B, c->T, c->H, c->hd,
                                  c->causal ? "causal" : "not causal");
    for (int b = 0; c->lengths && b < c->B && pos < cap; b++)
        pos += (size_t)snprintf(buf + pos, cap - pos, "%s%d", b ? "," : " ", c->lengths[b]);
    if (!c->lengths && pos < cap) snprintf(buf + pos, cap - pos, " all T");
}

/* The definition, in double: per sequence and head, softmax(q k^T / sqrt(hd)) v
 * over the keys a query sees. */
static void attention_reference(const attn_case *c, const float *x, double *y) {
    int D = c->H * c->hd, T = c->T;
    double *s = nn_xmalloc((size_t)T * sizeof *s);
    for (int b = 0; b < c->B; b++) {
        int L = c->lengths ? c->lengths[b] : T;
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < T; i++) {
                const float *q = x + ((size_t)b * T + i) * 3 * D + h * c->hd;
                int n = c->causal && i + 1 < L ? i + 1 : L;
                double m = -INFINITY, sum = 0.0;
                for (int j = 0; j < n; j++) {
                    const float *k = x + ((size_t)b * T + j) * 3 * D + D + h * c->hd;
                    s[j] = 0.0;
                    for (int d = 0; d < c->hd; d++) s[j] += (double)q[d] * k[d];
                    s[j] /= sqrt((double)c->hd);
                    m = s[j] > m ? s[j] : m;
                }
                for (int j = 0; j < n; j++) sum += s[j] = exp(s[j] - m);
                double *yi = y + ((size_t)b * T + i) * D + h * c->hd;
                for (int d = 0; d < c->hd; d++) {
                    double acc = 0.0;
                    for (int j = 0; j < n; j++) acc += s[j] * x[((size_t)b * T + j) * 3 * D + 2 * D + h * c->hd + d];
                    yi[d] = acc / sum;
                }
            }
    }
    free(s);
}

static const int lengths_3[] = {7, 3, 5}, lengths_3b[] = {7, 1, 4}, lengths_4[] = {20, 13, 1, 19};

static const attn_case cases[] = {
    {3, 7, 2, 4, true, lengths_3},   {3, 7, 2, 4, false, lengths_3b}, {2, 20, 3, 5, true, NULL},
    {2, 20, 3, 5, false, NULL},      {4, 20, 4, 3, true, lengths_4},  {4, 20, 4, 3, false, lengths_4},
    {2, 9, 1, 8, true, NULL},        {1, 1, 2, 3, true, NULL},        {2, 17, 2, 16, true, NULL},
    {1, 21, 1, 40, false, (const int[]){17}},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])
/* Longer sequences and wider heads than a gradient check can afford: more
 * than one block of 64 keys, heads wider than two vectors. */
static const attn_case long_cases[] = {
    {2, 70, 2, 20, true, (const int[]){70, 41}},
    {1, 130, 3, 48, false, NULL},
    {3, 64, 4, 32, true, NULL},
};
#define N_LONG (int)(sizeof long_cases / sizeof long_cases[0])
/* case k of the gradient checks' and the long ones */
static const attn_case *any_case(int k) { return k < N_CASES ? &cases[k] : &long_cases[k - N_CASES]; }

static nn_tensor *attn_input(nn_ctx *ctx, const attn_case *c, const float *x) {
    nn_tensor *t = nn_input(ctx, "x", 3, (int[]){c->B, c->T, 3 * c->H * c->hd});
    memcpy(t->data, x, t->size * sizeof(float));
    return t;
}

static void test_attention_values(void) {
    for (int k = 0; k < N_CASES + N_LONG; k++) {
        const attn_case *c = any_case(k);
        size_t n_x = (size_t)c->B * c->T * 3 * c->H * c->hd, n_y = n_x / 3;
        float *x = nn_xmalloc(n_x * sizeof *x);
        double *want = nn_xmalloc(n_y * sizeof *want);
        fill(x, n_x, 2.0f); /* scores of a few units: softmaxes far from uniform */
        attention_reference(c, x, want);
        nn_ctx *ctx = nn_ctx_new(0);
        nn_tensor *y = nn_attention(ctx, attn_input(ctx, c, x), c->H, c->causal, c->lengths);
        double worst = 0.0;
        for (size_t i = 0; i < n_y; i++) worst = fmax(worst, fabs(y->data[i] - want[i]));
        char what[128];
        case_str(c, what, sizeof what);
        CHECKF(worst <= 2e-6, "%s: max |nn - reference| = %.3g", what, worst);
        if (k == 0) printf("  %s: max |nn - double reference| %.2g\n", what, worst);
        nn_ctx_free(ctx);
        free(x);
        free(want);
    }
}

/* The same bits from one thread and two, forward and backward: each (b, h)
 * is one thread's task. */
static void test_attention_threads(void) {
    const attn_case c = {6, 33, 4, 16, true, NULL};
    size_t n_x = (size_t)c.B * c.T * 3 * c.H * c.hd, n_y = n_x / 3;
    float *x = nn_xmalloc(n_x * sizeof *x), *dy = nn_xmalloc(n_y * sizeof *dy);
    float *y1 = nn_xmalloc(n_y * sizeof *y1), *dx1 = nn_xmalloc(n_x * sizeof *dx1);
    fill(x, n_x, 1.5f);
    fill(dy, n_y, 1.0f);
    int before = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        nn_params p;
        nn_params_init(&p);
        nn_tensor *xt = nn_params_add(&p, "x", 3, (int[]){c.B, c.T, 3 * c.H * c.hd}, false);
        memcpy(xt->data, x, n_x * sizeof *x);
        nn_ctx *ctx = nn_ctx_new(0);
        nn_tensor *y = nn_attention(ctx, xt, c.H, c.causal, NULL);
        nn_tensor *r = nn_input(ctx, "r", 3, y->shape);
        memcpy(r->data, dy, n_y * sizeof *dy);
        nn_params_zero_grad(&p);
        nn_backward(ctx, nn_sum(ctx, nn_mul(ctx, y, r)));
        if (threads == 1) {
            memcpy(y1, y->data, n_y * sizeof *y1);
            memcpy(dx1, xt->grad, n_x * sizeof *dx1);
        } else {
            CHECK(memcmp(y1, y->data, n_y * sizeof *y1) == 0);
            CHECK(memcmp(dx1, xt->grad, n_x * sizeof *dx1) == 0);
        }
        nn_ctx_free(ctx);
        nn_params_free(&p);
    }
    omp_set_num_threads(before);
    free(x), free(dy), free(y1), free(dx1);
}

/* ---- finite differences ----
 * L = sum(f(inputs) * R), R fixed and random; every element of each input
 * (they are small) is moved by +-h and (L+ - L-) / 2h compared with the
 * gradient nn_backward gives. The gradient must not be all zeros. */

typedef nn_tensor *(*build_fn)(nn_ctx *ctx, nn_tensor *const *in, const void *arg);

static double weighted(nn_ctx *ctx, nn_tensor *out, const float *r, nn_tensor **loss) {
    nn_tensor *l = out;
    if (out->size != 1) {
        nn_tensor *rt = nn_input(ctx, "R", out->ndim, out->shape);
        memcpy(rt->data, r, out->size * sizeof(float));
        l = nn_sum(ctx, nn_mul(ctx, out, rt));
    }
    if (loss) *loss = l;
    return l->data[0];
}

/* Returns the worst error relative to atol + rtol |numeric|. */
static double gradcheck(const char *name, nn_tensor *const *in, int n_in, build_fn build, const void *arg,
                        float h, float rtol, float atol) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_grad_enabled(ctx, false);
    size_t out_size = build(ctx, in, arg)->size;
    nn_ctx_reset(ctx);
    float *r = nn_xmalloc(out_size * sizeof *r);
    fill(r, out_size, 1.0f);
    nn_set_grad_enabled(ctx, true);
    for (int k = 0; k < n_in; k++) memset(in[k]->grad, 0, in[k]->size * sizeof(float));
    nn_tensor *loss;
    weighted(ctx, build(ctx, in, arg), r, &loss);
    nn_backward(ctx, loss);
    nn_ctx_reset(ctx);
    nn_set_grad_enabled(ctx, false);
    double worst = 0.0, largest = 0.0;
    int failures = 0;
    for (int k = 0; k < n_in; k++)
        for (size_t i = 0; i < in[k]->size; i++) {
            float saved = in[k]->data[i];
            in[k]->data[i] = saved + h;
            double lp = weighted(ctx, build(ctx, in, arg), r, NULL);
            nn_ctx_reset(ctx);
            in[k]->data[i] = saved - h;
            double lm = weighted(ctx, build(ctx, in, arg), r, NULL);
            nn_ctx_reset(ctx);
            in[k]->data[i] = saved;
            double numeric = (lp - lm) / (2.0 * h), analytic = in[k]->grad[i];
            double allowed = atol + rtol * fabs(numeric), err = fabs(analytic - numeric);
            if (err > allowed && failures++ < 3)
                fprintf(stderr, "  %s: input %d element %zu: analytic %.6g, numeric %.6g\n", name, k, i, analytic,
                        numeric);
            worst = fmax(worst, err / allowed);
            largest = fmax(largest, fabs(analytic));
        }
    CHECKF(failures == 0, "%s: %d gradient elements outside tolerance", name, failures);
    CHECKF(largest > 1e-3, "%s: the gradient is all zeros", name);
    free(r);
    nn_ctx_free(ctx);
    return worst;
}

static nn_tensor *b_attention(nn_ctx *ctx, nn_tensor *const *in, const void *arg) {
    const attn_case *c = arg;
    return nn_attention(ctx, in[0], c->H, c->causal, c->lengths);
}

static void test_attention_gradient(void) {
    for (int k = 0; k < N_CASES; k++) {
        const attn_case *c = &cases[k];
        nn_params p;
        nn_params_init(&p);
        nn_tensor *x = nn_params_add(&p, "x", 3, (int[]){c->B, c->T, 3 * c->H * c->hd}, false);
        fill(x->data, x->size, 1.5f);
        char what[128];
        case_str(c, what, sizeof what);
        double worst = gradcheck(what, &x, 1, b_attention, c, 1e-2f, 1e-2f, 1e-3f);
        printf("  %s: %zu elements, worst error %.2f of the tolerance\n", what, x->size, worst);
        nn_params_free(&p);
    }
}

/* Keys past a sequence's length change nothing, nor get any gradient. */
static void test_attention_padding_ignored(void) {
    const attn_case c = {2, 9, 3, 4, false, (const int[]){5, 9}};
    size_t n_x = (size_t)c.B * c.T * 3 * c.H * c.hd;
    float *x = nn_xmalloc(n_x * sizeof *x);
    fill(x, n_x, 1.0f);
    nn_params p;
    nn_params_init(&p);
    nn_tensor *xt = nn_params_add(&p, "x", 3, (int[]){c.B, c.T, 3 * c.H * c.hd}, false);
    float first[2][9 * 12];
    for (int pass = 0; pass < 2; pass++) {
        memcpy(xt->data, x, n_x * sizeof *x);
        if (pass) /* new keys and values at sequence 0's padding */
            for (int t = 5; t < 9; t++)
                for (int j = 12; j < 36; j++) xt->data[(size_t)t * 36 + j] = 9.0f;
        nn_ctx *ctx = nn_ctx_new(0);
        nn_params_zero_grad(&p);
        nn_tensor *y = nn_attention(ctx, xt, c.H, c.causal, c.lengths);
        nn_backward(ctx, nn_sum(ctx, nn_mul(ctx, y, y)));
        if (!pass) memcpy(first, y->data, sizeof first);
        else CHECK(memcmp(first, y->data, sizeof first) == 0);
        for (int t = 5; t < 9; t++)
            for (int j = 12; j < 36; j++) CHECK(xt->grad[(size_t)t * 36 + j] == 0.0f);
        nn_ctx_free(ctx);
    }
    nn_params_free(&p);
    free(x);
}

/* The backward stores into an activation's gradient the first time it
 * writes it (nn_node_fresh) instead of adding to zeros: through an
 * activation (x * 1), with padding, in an arena whose memory held an earlier
 * step's values, the gradient must be the leaf's bit for bit, nothing left
 * of that memory in the padding's keys and values. GELU, dropout-free adds
 * and layer norm store the same way, checked by the gradient checks of the
 * blocks that train. */
static void test_attention_stores_unwritten_gradient(void) {
    const attn_case c = {3, 11, 2, 8, true, (const int[]){11, 4, 7}};
    nn_params p;
    nn_params_init(&p);
    nn_tensor *xt = nn_params_add(&p, "x", 3, (int[]){c.B, c.T, 3 * c.H * c.hd}, false);
    fill(xt->data, xt->size, 1.0f);
    float *leaf = nn_xmalloc(xt->size * sizeof *leaf);
    nn_ctx *ctx = nn_ctx_new(0);
    for (int pass = 0; pass < 3; pass++) {
        nn_ctx_reset(ctx);
        nn_params_zero_grad(&p);
        nn_tensor *x = pass == 0 ? xt : nn_scale(ctx, xt, 1.0f); /* pass 0: the leaf, added to */
        nn_tensor *y = nn_attention(ctx, x, c.H, c.causal, c.lengths);
        nn_backward(ctx, nn_sum(ctx, nn_mul(ctx, y, y)));
        if (pass == 0) memcpy(leaf, xt->grad, xt->size * sizeof *leaf);
        else CHECKF(memcmp(leaf, xt->grad, xt->size * sizeof *leaf) == 0, "pass %d: not the leaf's gradient", pass);
    }
    nn_ctx_free(ctx);
    free(leaf);
    nn_params_free(&p);
}

static nn_tensor *b_positions(nn_ctx *ctx, nn_tensor *const *in, const void *arg) {
    return nn_add_positions(ctx, in[0], in[1]);
}
static nn_tensor *b_mean_steps(nn_ctx *ctx, nn_tensor *const *in, const void *arg) {
    return nn_mean_steps(ctx, in[0], arg);
}

static void test_sequence_ops(void) {
    nn_params p;
    nn_params_init(&p);
    nn_tensor *in[2] = {nn_params_add(&p, "x", 3, (int[]){3, 5, 4}, false),
                        nn_params_add(&p, "pos", 2, (int[]){8, 4}, false)};
    fill(p.data, p.count, 1.0f);
    gradcheck("add_positions", in, 2, b_positions, NULL, 1e-2f, 1e-2f, 1e-3f);
    /* values: y = x + pos[t]; rows of pos past T get no gradient */
    nn_ctx *ctx = nn_ctx_new(0);
    nn_params_zero_grad(&p);
    nn_tensor *y = nn_add_positions(ctx, in[0], in[1]);
    CHECK(y->data[2 * 20 + 3 * 4 + 1] == in[0]->data[2 * 20 + 3 * 4 + 1] + in[1]->data[3 * 4 + 1]);
    nn_backward(ctx, nn_sum(ctx, y));
    CHECK(in[1]->grad[4 * 4 + 2] == 3.0f && in[1]->grad[5 * 4] == 0.0f && in[1]->grad[7 * 4 + 3] == 0.0f);
    nn_ctx_reset(ctx);
    const int lengths[] = {5, 2, 1};
    gradcheck("mean_steps", in, 1, b_mean_steps, lengths, 1e-2f, 1e-2f, 1e-3f);
    gradcheck("mean_steps (all T)", in, 1, b_mean_steps, NULL, 1e-2f, 1e-2f, 1e-3f);
    y = nn_mean_steps(ctx, in[0], lengths);
    const float *x = in[0]->data;
    CHECK(fabsf(y->data[4 + 1] - (x[20 + 1] + x[20 + 4 + 1]) / 2.0f) < 1e-6f);
    CHECK(y->data[8 + 3] == x[40 + 3]);
    nn_ctx_free(ctx);
    nn_params_free(&p);
}

/* ---- the layers ---- */

/* The spec planned for vocabulary V with context T (0: none), or NULL with
 * the error. */
static bool plan_ok(nn_model *m, const char *spec, int V, int classes, int T) {
    bool ok = nn_model_plan_text_context(m, spec, V, classes, T) == 0;
    CHECKF(ok, "'%s': %s", spec, nn_last_error());
    return ok;
}

static void expect_plan_error(const char *spec, int V, int classes, int T, const char *want) {
    nn_model m;
    int rc = nn_model_plan_text_context(&m, spec, V, classes, T);
    CHECKF(rc != 0 && strstr(nn_last_error(), want), "'%s' with context %d: %s (expected an error with '%s')", spec, T,
           rc ? nn_last_error() : "planned", want);
    if (rc == 0) nn_model_free(&m);
}

static void test_specs(void) {
    static const struct {
        const char *spec, *canonical;
    } forms[] = {
        {"embed(16) posembed attention(4) unembed", "embed(16) posembed attention(4) unembed"},
        {"embed(16) attention(2, causal=0, bias=0) mean linear(3, bias=0)",
         "embed(16) attention(2,causal=0,bias=0) mean linear(3,bias=0)"},
        {"embed(16) attention(2,causal=1,bias=1) linear(10,bias=1)", "embed(16) attention(2) linear(10)"},
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        nn_model m;
        if (!plan_ok(&m, forms[i].spec, 10, 0, 12)) continue;
        CHECKF(strcmp(nn_model_spec(&m), forms[i].canonical) == 0, "'%s' -> '%s'", forms[i].spec, nn_model_spec(&m));
        nn_model_free(&m);
    }
    /* shapes: a GPT maps [T] ids to [T, V], an encoder to [classes] */
    nn_model m;
    if (plan_ok(&m, "embed(16) posembed residual(layernorm attention(4)) layernorm unembed", 11, 11, 12)) {
        CHECK(m.in_shape[0] == 12 && m.classes == 11);
        CHECK(m.layers[m.n_layers - 1].out_ndim == 2 && m.layers[m.n_layers - 1].out_shape[1] == 11);
        nn_model_free(&m);
    }
    /* without posembed the context is not the model's: any length */
    if (plan_ok(&m, "embed(16) attention(4) linear(11)", 11, 11, 12)) {
        CHECK(m.in_shape[0] == 0);
        nn_model_free(&m);
    }
    expect_plan_error("embed(16) posembed linear(11)", 11, 11, 0, "needs the model's context");
    expect_plan_error("embed(18) attention(4) linear(11)", 11, 11, 8, "18 features do not split into 4 heads");
    expect_plan_error("embed(16) linear(8) unembed", 11, 11, 8, "16");
    expect_plan_error("embed(16) mean posembed", 11, 0, 8, "a sequence [T, D]");
    expect_plan_error("embed(16) attention(0) linear(4)", 11, 0, 8, "heads 0 is out of range");
    expect_plan_error("embed(16) attention(2,causal=2) linear(4)", 11, 0, 8, "causal 2 is out of range");
    expect_plan_error("embed(16) linear(4,bias=0.5)", 11, 0, 8, "not an integer");
    int shape[3] = {1, 4, 4};
    CHECK(nn_model_plan(&m, "flatten linear(16) unembed", shape, 0) != 0 && strstr(nn_last_error(), "embed(D)"));
    CHECK(nn_model_plan(&m, "flatten linear(16) attention(2)", shape, 0) != 0 &&
          strstr(nn_last_error(), "a sequence [T, D]"));
}

/* unembed stores nothing: the model's one matrix is embed1.weight, and the
 * parameter count is the untied model's less V x D. */
static void test_tied_tensors(void) {
    nn_model tied, untied;
    nn_rng r;
    nn_rng_seed(&r, 1, 1);
    if (!plan_ok(&tied, "embed(16) posembed attention(4,bias=0) layernorm unembed", 11, 11, 12)) return;
    if (!plan_ok(&untied, "embed(16) posembed attention(4,bias=0) layernorm linear(11,bias=0)", 11, 11, 12)) return;
    nn_model_build(&tied, &r);
    nn_model_build(&untied, &r);
    CHECK(nn_model_param_count(&tied) + 11 * 16 == nn_model_param_count(&untied));
    const char *names[] = {"embed1.weight", "pos1.weight", "attn1.in_proj_weight", "attn1.out_proj.weight",
                           "ln1.weight", "ln1.bias"};
    CHECK(tied.params.n == 6);
    for (int i = 0; i < tied.params.n && i < 6; i++)
        CHECKF(strcmp(tied.params.tensors[i]->name, names[i]) == 0, "tensor %d is %s", i,
               tied.params.tensors[i]->name);
    CHECK(tied.params.tensors[1]->shape[0] == 12 && tied.params.tensors[1]->shape[1] == 16);
    CHECK(tied.params.tensors[2]->shape[0] == 48 && tied.params.tensors[2]->shape[1] == 16);
    nn_model_free(&tied);
    nn_model_free(&untied);
}

/* Saved and loaded: the context travels in nn.input_shape as tokens(V,T). */
static void test_checkpoint(void) {
    nn_model m, back;
    nn_rng r;
    nn_rng_seed(&r, 2, 1);
    const char *spec = "embed(8) posembed residual(layernorm attention(2)) layernorm unembed";
    if (!plan_ok(&m, spec, 7, 7, 10)) return;
    nn_model_build(&m, &r);
    const char *path = tmp("gpt.safetensors");
    CHECKF(nn_model_save(&m, path) == 0, "%s", nn_last_error());
    nn_safetensors st;
    CHECK(nn_st_load(&st, path) == 0);
    CHECKF(strcmp(nn_st_meta(&st, "nn.input_shape"), "tokens(7,10)") == 0, "%s", nn_st_meta(&st, "nn.input_shape"));
    nn_st_free(&st);
    CHECKF(nn_model_load(&back, path) == 0, "%s", nn_last_error());
    CHECK(back.in_shape[0] == 10 && back.params.count == m.params.count &&
          memcmp(back.params.data, m.params.data, m.params.count * sizeof(float)) == 0);
    /* the same logits */
    const int ids[] = {1, 2, 3, 4, 5, 6, 0, 1, 2};
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *a = nn_model_forward_tokens(&m, ctx, ids, 1, 9, NULL, NULL);
    nn_tensor *b = nn_model_forward_tokens(&back, ctx, ids, 1, 9, NULL, NULL);
    CHECK(a->size == 9 * 7 && memcmp(a->data, b->data, a->size * sizeof(float)) == 0);
    nn_ctx_free(ctx);
    nn_model_free(&back);
    nn_model_free(&m);
}

static nn_model *longer_model;
static void run_longer(void) {
    int ids[11] = {0};
    nn_ctx *ctx = nn_ctx_new(0);
    nn_model_forward_tokens(longer_model, ctx, ids, 1, 11, NULL, NULL);
}

/* A sequence longer than the learned positions stops with a message. */
static void test_longer_than_context(void) {
    nn_model m;
    nn_rng r;
    nn_rng_seed(&r, 3, 1);
    if (!plan_ok(&m, "embed(8) posembed unembed", 7, 7, 10)) return;
    nn_model_build(&m, &r);
    longer_model = &m;
    char msg[1024];
    int status = run_in_child(run_longer, msg, sizeof msg);
    CHECKF(WIFSIGNALED(status) && strstr(msg, "11 tokens") && strstr(msg, "at most 10"), "status %d: %s", status, msg);
    nn_model_free(&m);
}

/* ---- whole models, finite differences through every parameter ---- */

typedef struct model_case {
    nn_model *m;
    const int *ids, *labels, *lengths;
    int B, T;
} model_case;

/* The mean cross-entropy of the model: at every position for a language
 * model (labels [B*T]), per sequence for a classifier (labels [B]). The
 * inputs are the model's parameters (in[0] is the store's first view). */
static nn_tensor *b_model_loss(nn_ctx *ctx, nn_tensor *const *in, const void *arg) {
    const model_case *c = arg;
    nn_tensor *logits = nn_model_forward_tokens(c->m, ctx, c->ids, c->B, c->T, c->lengths, NULL);
    if (logits->ndim == 3) logits = nn_reshape(ctx, logits, 2, (int[]){c->B * c->T, logits->shape[2]});
    return nn_cross_entropy(ctx, logits, c->labels, 0.0f);
}

static void model_gradcheck(const char *spec, int V, int classes, int T_max, const int *lengths, int B, int T) {
    nn_model m;
    if (!plan_ok(&m, spec, V, classes, T_max)) return;
    nn_rng r;
    nn_rng_seed(&r, 5, 1);
    nn_model_build(&m, &r);
    /* weights large enough that every layer bends the loss */
    for (size_t i = 0; i < m.params.count; i++) m.params.data[i] += 0.3f * (2.0f * nn_rng_uniform(&r) - 1.0f);
    int ids[64], labels[64];
    for (int i = 0; i < B * T; i++) ids[i] = (int)nn_rng_below(&r, (uint32_t)V), labels[i] = (int)nn_rng_below(&r, (uint32_t)(classes ? classes : V));
    model_case c = {&m, ids, labels, lengths, B, T};
    /* each parameter tensor as its own input, so the check walks all of them */
    nn_tensor **in = m.params.tensors;
    double worst = gradcheck(spec, in, m.params.n, b_model_loss, &c, 1e-2f, 2e-2f, 5e-4f);
    printf("  %s: %zu parameters, worst error %.2f of the tolerance\n", spec, m.params.count, worst);
    nn_model_free(&m);
}

static void test_model_gradients(void) {
    /* A GPT: positions, a pre-LayerNorm block, tied output; the embedding's
     * gradient sums the lookup's and the output's. */
    model_gradcheck("embed(8) posembed residual(layernorm attention(2)) residual(layernorm linear(16) gelu "
                    "linear(8,bias=0)) layernorm unembed",
                    7, 0, 9, NULL, 2, 6);
    /* An encoder that classifies padded names: not causal, mean over the real steps. */
    const int lengths[] = {6, 2, 4};
    model_gradcheck("embed(8) posembed residual(layernorm attention(2,causal=0,bias=0)) layernorm mean linear(3)", 7,
                    3, 6, lengths, 3, 6);
}

/* ---- PyTorch ---- */

/* The op against the explicit computation in PyTorch (float64 from our
 * float32 inputs): q k^T / sqrt(hd), the masks, softmax, times v; and the
 * gradient of sum(y * R) with respect to x by autograd. */
static const char torch_attention_py[] =
    "import sys, numpy as np, torch\n"
    "B, T, H, hd, causal = (int(a) for a in sys.argv[1:6])\n"
    "x = torch.from_numpy(np.fromfile(sys.argv[6], '<f4').astype(np.float64).reshape(B, T, 3 * H * hd))\n"
    "r = torch.from_numpy(np.fromfile(sys.argv[7], '<f4').astype(np.float64).reshape(B, T, H * hd))\n"
    "lengths = torch.from_numpy(np.fromfile(sys.argv[8], '<i4').astype(np.int64))\n"
    "x.requires_grad_(True)\n"
    "D = H * hd\n"
    "q, k, v = (t.reshape(B, T, H, hd).transpose(1, 2) for t in x.split(D, dim=2))\n"
    "s = q @ k.transpose(-2, -1) / hd ** 0.5\n"
    "hide = torch.arange(T)[None, :] >= lengths[:, None]\n"
    "hide = hide[:, None, None, :].expand(B, H, T, T)\n"
    "if causal: hide = hide | torch.triu(torch.ones(T, T, dtype=torch.bool), 1)\n"
    "y = (torch.softmax(s.masked_fill(hide, float('-inf')), -1) @ v).transpose(1, 2).reshape(B, T, D)\n"
    "(y * r).sum().backward()\n"
    "y.detach().numpy().astype('<f4').tofile(sys.argv[9])\n"
    "x.grad.numpy().astype('<f4').tofile(sys.argv[10])\n";

static bool write_file(const char *path, const void *data, size_t bytes) {
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(data, 1, bytes, f) == bytes;
    if (f) ok = fclose(f) == 0 && ok;
    CHECKF(ok, "could not write %s", path);
    return ok;
}

static bool read_file(const char *path, void *data, size_t bytes) {
    FILE *f = fopen(path, "rb");
    bool ok = f && fread(data, 1, bytes, f) == bytes && fgetc(f) == EOF;
    if (f) fclose(f);
    CHECKF(ok, "could not read %zu bytes from %s", bytes, path);
    return ok;
}

static void test_torch_attention(void) {
    if (!have_torch()) {
        SKIP("%s -c 'import torch' fails (is Debian's python3-torch installed?); PyTorch's attention not compared",
             PYTHON);
        return;
    }
    char script[256];
    snprintf(script, sizeof script, "%s", tmp("attention.py"));
    if (!write_file(script, torch_attention_py, sizeof torch_attention_py - 1)) return;
    for (int k = 0; k < N_CASES + N_LONG; k++) {
        const attn_case *c = any_case(k);
        size_t n_x = (size_t)c->B * c->T * 3 * c->H * c->hd, n_y = n_x / 3;
        float *x = nn_xmalloc(n_x * sizeof *x), *r = nn_xmalloc(n_y * sizeof *r);
        float *want_y = nn_xmalloc(n_y * sizeof *want_y), *want_dx = nn_xmalloc(n_x * sizeof *want_dx);
        int lengths[8];
        for (int b = 0; b < c->B; b++) lengths[b] = c->lengths ? c->lengths[b] : c->T;
        fill(x, n_x, 2.0f);
        fill(r, n_y, 1.0f);
        char xp[256], rp[256], lp[256], yp[256], dxp[256];
        snprintf(xp, sizeof xp, "%s", tmp("x.f32"));
        snprintf(rp, sizeof rp, "%s", tmp("r.f32"));
        snprintf(lp, sizeof lp, "%s", tmp("lengths.i32"));
        snprintf(yp, sizeof yp, "%s", tmp("y.f32"));
        snprintf(dxp, sizeof dxp, "%s", tmp("dx.f32"));
        char what[128];
        case_str(c, what, sizeof what);
        if (write_file(xp, x, n_x * 4) && write_file(rp, r, n_y * 4) &&
            write_file(lp, lengths, (size_t)c->B * sizeof(int))) {
            int rc = python("%s %d %d %d %d %d %s %s %s %s %s", script, c->B, c->T, c->H, c->hd, c->causal, xp, rp, lp,
                            yp, dxp);
            CHECKF(rc == 0, "%s: python: %s", what, err_text);
            if (rc == 0 && read_file(yp, want_y, n_y * 4) && read_file(dxp, want_dx, n_x * 4)) {
                nn_params p;
                nn_params_init(&p);
                nn_tensor *xt = nn_params_add(&p, "x", 3, (int[]){c->B, c->T, 3 * c->H * c->hd}, false);
                memcpy(xt->data, x, n_x * sizeof *x);
                nn_ctx *ctx = nn_ctx_new(0);
                nn_params_zero_grad(&p);
                nn_tensor *y = nn_attention(ctx, xt, c->H, c->causal, c->lengths);
                nn_tensor *rt = nn_input(ctx, "r", 3, y->shape);
                memcpy(rt->data, r, n_y * sizeof *r);
                nn_backward(ctx, nn_sum(ctx, nn_mul(ctx, y, rt)));
                double dy = 0.0, ddx = 0.0;
                for (size_t i = 0; i < n_y; i++) dy = fmax(dy, fabs(y->data[i] - want_y[i]));
                for (size_t i = 0; i < n_x; i++) ddx = fmax(ddx, fabs(xt->grad[i] - want_dx[i]));
                CHECKF(dy <= 2e-6 && ddx <= 1e-5, "%s: max |y - torch| %.3g, |dx - torch| %.3g", what, dy, ddx);
                printf("  %s: max |y - torch| %.2g, max |dx - torch| %.2g\n", what, dy, ddx);
                nn_ctx_free(ctx);
                nn_params_free(&p);
            }
        }
        free(x), free(r), free(want_y), free(want_dx);
    }
}

/* The other direction: a GPT and an encoder built from torch_model's
 * modules in PyTorch and written by save_model give nn PyTorch's logits. */
static const char torch_saved_py[] =
    "import sys\n"
    "sys.path.insert(0, 'scripts')\n"
    "sys.dont_write_bytecode = True\n"
    "import numpy as np, torch\n"
    "from torch import nn\n"
    "from torch_model import Attention, Mean, PosEmbed, Residual, Tokens, Unembed, _run, save_model\n"
    "torch.manual_seed(7)\n"
    "out = sys.argv[1]\n"
    "emb = nn.Embedding(11, 16)\n"
    "gpt = nn.Sequential(emb, PosEmbed(12, 16), Residual(nn.LayerNorm(16), Attention(16, 4, bias=False)),\n"
    "                    Residual(nn.LayerNorm(16), nn.Linear(16, 32, bias=False), nn.GELU(), nn.Linear(32, 16)),\n"
    "                    nn.LayerNorm(16), Unembed(emb))\n"
    "enc = nn.Sequential(nn.Embedding(11, 16), PosEmbed(12, 16), Attention(16, 2, causal=False), Mean(), nn.Linear(16, 3))\n"
    "ids = torch.randint(0, 11, (3, 12))\n"
    "lengths = torch.tensor([12, 5, 1])\n"
    "for name, net, ls in (('gpt', gpt, None), ('encoder', enc, lengths)):\n"
    "    print(save_model(net, f'{out}/{name}.safetensors', Tokens(11, 12)))\n"
    "    with torch.no_grad():\n"
    "        _run(net.eval(), ids, ls).numpy().astype('<f4').tofile(f'{out}/{name}.logits.f32')\n"
    "ids.numpy().astype('<i4').tofile(f'{out}/ids.i32')\n"
    "lengths.numpy().astype('<i4').tofile(f'{out}/lengths.i32')\n";

static void test_torch_saved(void) {
    if (!have_torch()) {
        SKIP("%s -c 'import torch' fails (is Debian's python3-torch installed?); PyTorch -> nn not run", PYTHON);
        return;
    }
    char script[256];
    snprintf(script, sizeof script, "%s", tmp("saved.py"));
    if (!write_file(script, torch_saved_py, sizeof torch_saved_py - 1)) return;
    int rc = python("%s %s", script, tmpdir);
    CHECKF(rc == 0, "python: %s", err_text);
    CHECKF(strstr(out_text, "embed(16) posembed residual(layernorm attention(4,bias=0)) residual(layernorm "
                            "linear(32,bias=0) gelu linear(16)) layernorm unembed\n") &&
               strstr(out_text, "embed(16) posembed attention(2,causal=0) mean linear(3)\n"),
           "specs: %s", out_text);
    int ids[36], lengths[3];
    if (rc != 0 || !read_file(tmp("ids.i32"), ids, sizeof ids) || !read_file(tmp("lengths.i32"), lengths, sizeof lengths))
        return;
    const char *names[] = {"gpt", "encoder"};
    for (int k = 0; k < 2; k++) {
        char path[256], logits_path[256];
        snprintf(path, sizeof path, "%s/%s.safetensors", tmpdir, names[k]);
        snprintf(logits_path, sizeof logits_path, "%s/%s.logits.f32", tmpdir, names[k]);
        nn_model m;
        if (nn_model_load(&m, path) != 0) {
            CHECKF(false, "%s", nn_last_error());
            continue;
        }
        nn_ctx *ctx = nn_ctx_new(0);
        nn_set_grad_enabled(ctx, false);
        nn_set_training(ctx, false);
        nn_tensor *y = nn_model_forward_tokens(&m, ctx, ids, 3, 12, k ? lengths : NULL, NULL);
        float want[3 * 12 * 11];
        if (read_file(logits_path, want, y->size * sizeof(float))) {
            double worst = 0.0;
            for (size_t i = 0; i < y->size; i++) worst = fmax(worst, fabs(y->data[i] - want[i]));
            CHECKF(worst <= 1e-5, "%s: max |nn - torch| %.3g", names[k], worst);
            printf("  %s written by PyTorch: max |nn - torch| %.2g over %zu logits\n", names[k], worst, y->size);
        }
        nn_ctx_free(ctx);
        nn_model_free(&m);
    }
}

/* nn train takes a GPT spec on Tiny Shakespeare: a few steps of AdamW bring
 * the validation loss down, below the uniform ln 65. */
static void test_gpt_trains(void) {
    if (access("datasets/tinyshakespeare/input.txt", R_OK) != 0) {
        SKIP("datasets/tinyshakespeare is missing");
        return;
    }
    int rc = nn("train --data datasets/tinyshakespeare/input.txt --arch 'embed(128) posembed repeat(4, "
                "residual(layernorm attention(4)) residual(layernorm linear(512) gelu linear(128))) layernorm "
                "unembed' --context 64 --batch-size 4 --steps 30 --eval-every 15 --eval-windows 8 --opt adamw "
                "--lr 3e-3 --threads 2 --save %s",
                tmp("gpt.safetensors"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    /* "step    15/30  train loss L  val loss V (...)" at 15 and 30 */
    double val[2] = {NAN, NAN};
    const char *p = out_text;
    for (int k = 0; k < 2 && (p = strstr(p, "val loss ")); k++, p++) val[k] = atof(p + 9);
    CHECKF(val[1] < val[0] && val[1] < log(65.0) - 0.5, "validation loss %.4f then %.4f (uniform: %.4f)", val[0],
           val[1], log(65.0));
    printf("  validation loss %.4f after 15 steps, %.4f after 30 (uniform %.4f)\n", val[0], val[1], log(65.0));
    nn_model m;
    CHECKF(nn_model_load(&m, tmp("gpt.safetensors")) == 0, "%s", nn_last_error());
    if (m.n_layers) {
        CHECK(m.in_shape[0] == 64 && m.vocab == 65 && m.classes == 65);
        nn_model_free(&m);
    }
    rc = nn("train --help");
    CHECK(rc == 0 && strstr(out_text, "posembed") && strstr(out_text, "attention(HEADS") && strstr(out_text, "unembed") &&
          strstr(out_text, "residual(LAYERS)") && strstr(out_text, "repeat(N, LAYERS)") && strstr(out_text, "mean"));
}

TEST_MAIN(TEST(test_attention_values), TEST(test_attention_threads), TEST(test_attention_gradient),
          TEST(test_attention_padding_ignored), TEST(test_attention_stores_unwritten_gradient), TEST(test_sequence_ops), TEST(test_specs), TEST(test_tied_tensors),
          TEST(test_checkpoint), TEST(test_longer_than_context), TEST(test_model_gradients),
          TEST(test_torch_attention), TEST(test_torch_saved), TEST(test_gpt_trains))
