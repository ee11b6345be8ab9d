/* Residual blocks and repetition in the spec: residual(LAYERS), y = x + f(x),
 * and repeat(N, LAYERS).
 *
 *  - specs: the layers a block holds follow it in the stack, their shapes,
 *    names (res1.conv2.weight), the canonical form that plans back to the
 *    same model, independent copies for repeat, the errors (a block that
 *    changes the shape, named; malformed blocks; nesting and size bounds);
 *    a text model's residual stream [T, F] after embed(64);
 *  - forward: the model's output equals x + f(x) computed op by op;
 *  - backward: finite-difference gradient checks of whole models with
 *    residual blocks (a ResNet block with BatchNorm in training mode, smooth
 *    and with ReLU; text blocks with LayerNorm, GELU and an LSTM); with f's
 *    last layer zeroed the gradient reaching the layers before the block is
 *    the plain model's (the identity path), while f's last layer still gets
 *    one (the branch);
 *  - generation: a residual LSTM with its state carried token by token gives
 *    the logits of the whole sequence at once;
 *  - PyTorch: scripts/torch_model.py rebuilds a ResNet-block model from its
 *    checkpoint (tests/interop_torch.py step): the same logits (eval mode),
 *    and after one SGD step in training mode the same update of every weight
 *    and the same running statistics; and save_model writes a PyTorch
 *    Sequential with torch_model.Residual blocks that nn loads with the same
 *    logits;
 *  - training: a ResNet block on MNIST trains (the loss falls, the test
 *    accuracy is far above chance), its checkpoint loads back the same, and
 *    nn train --arch takes it.
 * The PyTorch and MNIST parts say skipped without Debian's python3-torch or
 * data/mnist. */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "perturb_model.h"
#include "run_nn.h"
#include "run_torch.h"
#include "nn/core.h"
#include "nn/data.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/rng.h"

#define RESNET_BLOCK "residual(conv(16,3,padding=1) batchnorm relu conv(16,3,padding=1) batchnorm)"
#define RESNET "conv(16,3,padding=1) relu maxpool(2) " RESNET_BLOCK " relu flatten linear(10)"

static const int MNIST[3] = {1, 28, 28};

static int plan(nn_model *m, const char *spec, const int in_shape[3], int classes) {
    int rc = nn_model_plan(m, spec, in_shape, classes);
    CHECKF(rc == 0, "'%s': %s", spec, nn_last_error());
    return rc;
}

/* ---- specs ---- */

static void test_spec(void) {
    nn_model m;
    if (plan(&m, "conv(16,3,padding=1) relu " RESNET_BLOCK " relu flatten linear(10)", MNIST, 10) != 0) return;
    /* conv relu residual [conv batchnorm relu conv batchnorm] relu flatten linear */
    CHECKF(m.n_layers == 11, "%d layers", m.n_layers);
    const nn_layer *res = &m.layers[2];
    CHECK(strcmp(nn_layer_kind_name(res->kind), "residual") == 0 && res->n_inner == 5 && res->times == 1);
    CHECK(res->out_ndim == 3 && res->out_shape[0] == 16 && res->out_shape[1] == 28 && res->out_shape[2] == 28);
    CHECK(strcmp(res->name, "res1") == 0 && strcmp(m.layers[3].name, "res1.conv2") == 0 &&
          strcmp(m.layers[4].name, "res1.bn1") == 0 && strcmp(m.layers[6].name, "res1.conv3") == 0 &&
          strcmp(m.layers[10].name, "fc1") == 0);
    CHECKF(strcmp(nn_model_spec(&m), "conv(16,3,padding=1) relu " RESNET_BLOCK " relu flatten linear(10)") == 0,
           "%s", nn_model_spec(&m));
    char text[256];
    CHECKF(strcmp(nn_layer_str(res, text, sizeof text), RESNET_BLOCK) == 0, "%s", text);
    nn_model_free(&m);

    /* Written loosely, read back in canonical form, which plans to the same model. */
    const char *loose = "flatten linear(32) repeat( 2 ,residual( linear(32) relu linear(out=32) )  dropout(0.1)) "
                        "residual(repeat(times=3, linear(32) tanh)) linear(10)";
    const char *canonical = "flatten linear(32) repeat(2, residual(linear(32) relu linear(32)) dropout(0.1)) "
                            "residual(repeat(3, linear(32) tanh)) linear(10)";
    if (plan(&m, loose, MNIST, 10) != 0) return;
    CHECKF(strcmp(nn_model_spec(&m), canonical) == 0, "%s", nn_model_spec(&m));
    /* flatten fc1 repeat [res1 [fc2 relu fc3] dropout res2 [fc4 relu fc5] dropout] res3 [repeat [fc6 tanh fc7 tanh fc8 tanh]] fc9 */
    CHECKF(m.n_layers == 3 + 2 * 5 + 2 + 6 + 1, "%d layers", m.n_layers);
    CHECK(m.layers[2].n_inner == 10 && m.layers[2].times == 2 && m.layers[2].name == NULL);
    CHECK(strcmp(m.layers[3].name, "res1") == 0 && strcmp(m.layers[4].name, "res1.fc2") == 0 &&
          strcmp(m.layers[8].name, "res2") == 0 && strcmp(m.layers[11].name, "res2.fc5") == 0 &&
          strcmp(m.layers[13].name, "res3") == 0 && m.layers[14].name == NULL &&
          strcmp(m.layers[15].name, "res3.fc6") == 0 && strcmp(m.layers[19].name, "res3.fc8") == 0 &&
          strcmp(m.layers[21].name, "fc9") == 0);
    nn_model again;
    if (plan(&again, canonical, MNIST, 10) == 0) {
        CHECK(again.n_layers == m.n_layers && strcmp(nn_model_spec(&again), canonical) == 0);
        for (int i = 0; i < m.n_layers && i < again.n_layers; i++)
            CHECKF(again.layers[i].kind == m.layers[i].kind && again.layers[i].n_inner == m.layers[i].n_inner &&
                       again.layers[i].out == m.layers[i].out && again.layers[i].out_shape[0] == m.layers[i].out_shape[0],
                   "layer %d differs after the round trip", i + 1);
        nn_model_free(&again);
    }
    /* Each copy of a repeat has weights of its own, drawn apart. */
    nn_rng rng;
    nn_rng_seed(&rng, 3, 0);
    nn_model_build(&m, &rng);
    nn_tensor *w2 = nn_params_find(&m.params, "res1.fc2.weight"), *w4 = nn_params_find(&m.params, "res2.fc4.weight");
    CHECK(w2 && w4 && w2->data != w4->data && w2->size == w4->size && memcmp(w2->data, w4->data, w2->size * 4) != 0);
    CHECK(m.params.n == 2 * 9 && nn_params_find(&m.params, "res3.fc7.bias") != NULL);
    nn_model_free(&m);

    /* A text model: the residual stream is [T, 64] after embed(64). */
    const char *gpt_mlp = "embed(64) residual(layernorm linear(64) gelu linear(64)) linear(40)";
    CHECKF(nn_model_plan_text(&m, gpt_mlp, 40, 40) == 0, "%s", nn_last_error());
    if (m.n_layers == 7) {
        CHECK(m.layers[1].in_ndim == 2 && m.layers[1].in_shape[0] == 0 && m.layers[1].in_shape[1] == 64);
        CHECK(m.layers[1].out_ndim == 2 && m.layers[1].out_shape[1] == 64 && m.classes == 40);
        CHECK(strcmp(m.layers[2].name, "res1.ln1") == 0 && strcmp(m.layers[5].name, "res1.fc2") == 0);
        CHECK(strcmp(nn_model_spec(&m), gpt_mlp) == 0);
    }
    nn_model_free(&m);
    CHECKF(nn_model_plan_text(&m, "embed(64) repeat(4, residual(layernorm linear(256) gelu linear(64))) layernorm "
                                  "linear(40)",
                              40, 40) == 0 &&
               m.n_layers == 1 + 1 + 4 * 5 + 2,
           "%s", nn_last_error());
    nn_model_free(&m);
    CHECK(nn_spec_check("repeat(2, residual(relu)) flatten linear(10)") == 0);
}

/* Each bad spec is refused with an error that contains every fragment given. */
static void test_spec_errors(void) {
    const struct {
        const char *spec, *why[2];
    } bad[] = {
        {"conv(32,3,padding=1) maxpool(2) residual(conv(64,3,padding=1)) flatten linear(10)",
         {"layer 3, residual(...): its layers map [32, 14, 14] to [64, 14, 14]", "must keep the shape"}},
        {"flatten residual(linear(64)) linear(10)", {"layer 2, residual(...)", "[784] to [64]"}},
        {"conv(8,3) residual(conv(8,3)) flatten linear(10)", {"[8, 26, 26] to [8, 24, 24]", NULL}},
        {"residual flatten linear(10)", {"residual: holds layers", "e.g. residual("}},
        {"residual() flatten linear(10)", {"residual(): holds no layers", NULL}},
        {"residual(  ) flatten linear(10)", {"holds no layers", NULL}},
        {"residual(2, relu) flatten linear(10)", {"unknown layer '2,'", NULL}},
        {"residual(relu)x flatten linear(10)", {"expected ')' at the end", NULL}},
        {"residual(relu flatten linear(10)", {"'(' without ')'", NULL}},
        {"residual(relu)) flatten linear(10)", {"')' without '('", NULL}},
        {"residual(swish) flatten linear(10)", {"unknown layer 'swish'", NULL}},
        {"residual(conv(8)) flatten linear(10)", {"conv(8)", "missing argument 'kernel'"}},
        {"repeat flatten linear(10)", {"repeat: holds layers", "repeat(2, linear(64) relu)"}},
        {"repeat(2) flatten linear(10)", {"repeat(2): expected its arguments, ',' and its layers", NULL}},
        {"repeat(relu) flatten linear(10)", {"repeat(relu)", "expected its arguments"}},
        {"repeat(2,) flatten linear(10)", {"repeat(2,): holds no layers", NULL}},
        {"repeat(0, relu) flatten linear(10)", {"times 0 is out of range", NULL}},
        {"repeat(1.5, relu) flatten linear(10)", {"times '1.5' is not an integer", NULL}},
        {"repeat(x, relu) flatten linear(10)", {"times 'x' is not a number", NULL}},
        {"repeat(2, 3, relu) flatten linear(10)", {"unknown layer '3,'", NULL}},
        {"repeat(size=2, relu) flatten linear(10)", {"repeat has no argument 'size'", NULL}},
        {"repeat(1024, repeat(1024, relu)) flatten linear(10)", {"more than 65536 layers", NULL}},
        {"relu(repeat(2, relu)) flatten linear(10)", {"relu takes no arguments", NULL}},
        {"linear(relu) flatten linear(10)", {"out 'relu' is not a number", NULL}},
        {"residual(flatten) linear(10)", {"[1, 28, 28] to [784]", NULL}},
        {"flatten repeat(2, linear(64)) linear(7)", {"layer 5, linear(7)", "10 classes"}},
        {"flatten linear(10) residual(linear(7))", {"layer 3, residual(...)", "[10] to [7]"}},
        {"flatten linear(10) repeat(2, linear(7))", {"layer 5, linear(7)", "7 features but the data has 10"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nn_model m;
        int rc = nn_model_plan(&m, bad[i].spec, MNIST, 10);
        CHECKF(rc == -1, "'%s' was accepted", bad[i].spec);
        for (int k = 0; k < 2 && rc == -1; k++)
            CHECKF(!bad[i].why[k] || strstr(nn_last_error(), bad[i].why[k]), "'%s': error '%s' lacks '%s'",
                   bad[i].spec, nn_last_error(), bad[i].why[k]);
    }
    /* Blocks inside blocks: 32 deep is refused, with no crash on much deeper. */
    char deep[8192] = "flatten ";
    for (int depth = 0; depth < 300; depth++) strcat(deep, "residual(");
    strcat(deep, "relu");
    for (int depth = 0; depth < 300; depth++) strcat(deep, ")");
    strcat(deep, " linear(10)");
    nn_model m;
    CHECK(nn_model_plan(&m, deep, MNIST, 10) == -1);
    CHECKF(strstr(nn_last_error(), "blocks nested more than 32 deep"), "%s", nn_last_error());
    CHECKF(nn_model_plan_text(&m, "residual(embed(8)) linear(4)", 10, 4) == -1 &&
               strstr(nn_last_error(), "layer 1, residual(...): a text model starts with embed(D)"),
           "%s", nn_last_error());
    CHECKF(nn_model_plan_text(&m, "embed(8) residual(embed(8)) linear(4)", 10, 4) == -1 &&
               strstr(nn_last_error(), "layer 3, embed(8): takes token ids"),
           "%s", nn_last_error());
    CHECKF(nn_model_plan_text(&m, "embed(8) residual(lstm(8) last) linear(4)", 10, 4) == -1 &&
               strstr(nn_last_error(), "its layers map [T, 8] to [8]"),
           "%s", nn_last_error());
}

/* ---- forward and backward ---- */

/* y = linear(tanh(h + f(h))), h = fc1(flatten(x)), f = fc3(tanh(fc2(h))):
 * the model computes exactly what the ops compute one by one. */
static void test_forward_is_x_plus_fx(void) {
    nn_model m;
    if (plan(&m, "flatten linear(12) residual(linear(20) tanh linear(12)) tanh linear(5)", (int[]){2, 3, 3}, 5) != 0)
        return;
    nn_rng rng;
    nn_rng_seed(&rng, 9, 0);
    nn_model_build(&m, &rng);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){4, 2, 3, 3});
    for (size_t i = 0; i < x->size; i++) x->data[i] = nn_rng_normal(&rng);
    nn_tensor *y = nn_model_forward(&m, ctx, x, NULL);
    nn_params *p = &m.params;
#define P(name) nn_params_find(p, name)
    nn_tensor *h = nn_linear(ctx, nn_flatten(ctx, x), P("fc1.weight"), P("fc1.bias"));
    nn_tensor *f = nn_linear(ctx, nn_tanh(ctx, nn_linear(ctx, h, P("res1.fc2.weight"), P("res1.fc2.bias"))),
                             P("res1.fc3.weight"), P("res1.fc3.bias"));
    nn_tensor *want = nn_linear(ctx, nn_tanh(ctx, nn_add(ctx, h, f)), P("fc4.weight"), P("fc4.bias"));
#undef P
    CHECK(y->size == want->size && y->size == 4 * 5);
    double worst = 0, largest = 0;
    for (size_t i = 0; i < y->size && i < want->size; i++) {
        worst = fmax(worst, fabs(y->data[i] - want->data[i]));
        largest = fmax(largest, fabs(want->data[i]));
    }
    CHECKF(worst == 0 && largest > 0.1, "model vs ops: max |diff| %g (largest %g)", worst, largest);
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

/* A finite-difference check of every parameter tensor of a whole model:
 * L = sum(out * R), R fixed and random; images in training mode (BatchNorm
 * on the batch's statistics) or token ids. */
typedef struct model_check {
    const char *name, *spec;
    int in_shape[3]; /* an image model's; {0}: a text model over `vocab` tokens */
    int vocab, classes, B, T;
    float h, rtol, atol;
    bool kinks; /* ReLU: skip elements whose one-sided differences disagree (at most 1 in 8) */
} model_check;

typedef struct check_input {
    float *x;
    int *ids;
    float *r;
} check_input;

/* The model's output on the check's input (gradients recorded or not). */
static nn_tensor *check_forward(const model_check *c, nn_model *m, nn_ctx *ctx, const check_input *in) {
    if (c->vocab) return nn_model_forward_tokens(m, ctx, in->ids, c->B, c->T, NULL, NULL);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){c->B, c->in_shape[0], c->in_shape[1], c->in_shape[2]});
    memcpy(x->data, in->x, x->size * sizeof(float));
    return nn_model_forward(m, ctx, x, NULL);
}

static double check_loss(const model_check *c, nn_model *m, nn_ctx *ctx, const check_input *in) {
    nn_tensor *y = check_forward(c, m, ctx, in);
    double loss = 0;
    for (size_t k = 0; k < y->size; k++) loss += (double)y->data[k] * in->r[k];
    nn_ctx_reset(ctx);
    return loss;
}

static void run_model_check(const model_check *c) {
    nn_model m;
    int rc = c->vocab ? nn_model_plan_text(&m, c->spec, c->vocab, c->classes) : nn_model_plan(&m, c->spec, c->in_shape, c->classes);
    CHECKF(rc == 0, "%s: %s", c->name, nn_last_error());
    if (rc != 0) return;
    nn_rng rng;
    nn_rng_seed(&rng, 21, 0);
    nn_model_build(&m, &rng);
    check_input in = {0};
    size_t n_in = c->vocab ? (size_t)c->B * c->T : (size_t)c->B * c->in_shape[0] * c->in_shape[1] * c->in_shape[2];
    size_t n_out = (size_t)c->B * (c->vocab && m.layers[m.n_layers - 1].out_ndim == 2 ? c->T : 1) * m.classes;
    in.x = malloc(n_in * sizeof *in.x);
    in.ids = malloc(n_in * sizeof *in.ids);
    in.r = malloc(n_out * sizeof *in.r);
    for (size_t i = 0; i < n_in; i++) {
        in.x[i] = nn_rng_normal(&rng);
        in.ids[i] = c->vocab ? (int)nn_rng_below(&rng, (uint32_t)c->vocab) : 0;
    }
    for (size_t i = 0; i < n_out; i++) in.r[i] = 2.0f * nn_rng_uniform(&rng) - 1.0f;

    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *y = check_forward(c, &m, ctx, &in);
    CHECKF(y->size == n_out, "%s: %zu outputs, expected %zu", c->name, y->size, n_out);
    nn_tensor *r = nn_input(ctx, "R", y->ndim, y->shape);
    memcpy(r->data, in.r, n_out * sizeof(float));
    nn_params_zero_grad(&m.params);
    nn_backward(ctx, nn_sum(ctx, nn_mul(ctx, y, r)));
    float *analytic = malloc(m.params.count * sizeof *analytic);
    memcpy(analytic, m.params.grad, m.params.count * sizeof *analytic);
    nn_ctx_reset(ctx);
    nn_set_grad_enabled(ctx, false);

    int failures = 0, checked = 0, skipped = 0, nonzero = 0;
    for (int t = 0; t < m.params.n; t++) {
        nn_tensor *w = m.params.tensors[t];
        size_t offset = (size_t)(w->data - m.params.data), stride = w->size > 12 ? w->size / 12 : 1;
        double largest = 0, largest_numeric = 0;
        for (size_t i = 0; i < w->size; i += stride) {
            float saved = w->data[i];
            double l0 = check_loss(c, &m, ctx, &in);
            w->data[i] = saved + c->h;
            double lp = check_loss(c, &m, ctx, &in);
            w->data[i] = saved - c->h;
            double lm = check_loss(c, &m, ctx, &in);
            w->data[i] = saved;
            double numeric = (lp - lm) / (2.0 * c->h), a = analytic[offset + i];
            double allowed = c->atol + c->rtol * fabs(numeric);
            checked++;
            if (c->kinks && fabs((lp - l0) - (l0 - lm)) / c->h > allowed) {
                skipped++;
                continue;
            }
            largest = fmax(largest, fabs(a));
            largest_numeric = fmax(largest_numeric, fabs(numeric));
            if (fabs(a - numeric) > allowed && failures++ < 4)
                fprintf(stderr, "  %s: %s[%zu]: analytic %.6g, numeric %.6g\n", c->name, w->name, i, a, numeric);
        }
        /* A tensor the loss does not depend on has a zero gradient, rightly:
         * a conv's bias before a BatchNorm, which subtracts it again. */
        if (largest_numeric < 1e-4) printf("  %s: %s does not change the loss\n", c->name, w->name);
        else if (largest > 0) nonzero++;
        CHECKF(largest > 1e-4 || largest_numeric < 1e-4, "%s: the gradient of %s is all zeros", c->name, w->name);
    }
    CHECKF(nonzero * 4 >= m.params.n * 3, "%s: only %d of %d tensors have a gradient", c->name, nonzero, m.params.n);
    CHECKF(failures == 0, "%s: %d gradient elements outside tolerance", c->name, failures);
    CHECKF(skipped * 8 <= checked, "%s: %d of %d elements skipped at kinks", c->name, skipped, checked);
    printf("  %s: %d elements of %d tensors checked%s\n", c->name, checked - skipped, m.params.n,
           skipped ? " (some skipped at ReLU kinks)" : "");
    free(analytic);
    free(in.x);
    free(in.ids);
    free(in.r);
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

static void test_gradcheck(void) {
    const model_check checks[] = {
        {"resnet block, tanh", "conv(4,3,padding=1) tanh residual(conv(4,3,padding=1) batchnorm tanh "
                               "conv(4,3,padding=1) batchnorm) tanh flatten linear(5)",
         {2, 6, 6}, 0, 5, 3, 0, 1e-2f, 2e-2f, 2e-3f, false},
        {"resnet block, relu", "conv(4,3,padding=1) relu residual(conv(4,3,padding=1) batchnorm relu "
                               "conv(4,3,padding=1) batchnorm) relu maxpool(2) flatten linear(5)",
         {2, 6, 6}, 0, 5, 3, 0, 2e-3f, 2e-2f, 2e-3f, true},
        {"nested blocks on features", "flatten linear(8) repeat(2, residual(layernorm linear(12) gelu linear(8))) "
                                      "residual(residual(linear(8) tanh) sigmoid) linear(4)",
         {1, 3, 4}, 0, 4, 5, 0, 1e-2f, 2e-2f, 2e-3f, false},
        {"text blocks", "embed(6) residual(layernorm linear(10) gelu linear(6)) repeat(2, residual(linear(6) tanh)) "
                        "linear(7)",
         {0}, 7, 7, 3, 4, 1e-2f, 2e-2f, 2e-3f, false},
        {"residual lstm", "embed(6) residual(lstm(6)) residual(gru(6) tanh) last linear(3)", {0}, 9, 3, 3, 5, 1e-2f,
         2e-2f, 2e-3f, false},
    };
    for (size_t i = 0; i < sizeof checks / sizeof *checks; i++) run_model_check(&checks[i]);
}

/* With f's last layer zeroed, f(x) = 0 and the model is the plain one
 * without the block: the gradient that reaches fc1 is the plain model's
 * (it came through the identity path alone), and f's last layer gets a
 * gradient too (the branch), though f's first gets none through it. */
static void test_identity_path(void) {
    nn_model res, plain;
    const int in_shape[3] = {1, 4, 4};
    if (plan(&res, "flatten linear(8) tanh residual(linear(6) tanh linear(8)) linear(3)", in_shape, 3) != 0 ||
        plan(&plain, "flatten linear(8) tanh linear(3)", in_shape, 3) != 0)
        return;
    nn_rng rng;
    nn_rng_seed(&rng, 5, 0);
    nn_model_build(&res, &rng);
    nn_model_build(&plain, &rng);
    nn_tensor *zero[] = {nn_params_find(&res.params, "res1.fc3.weight"), nn_params_find(&res.params, "res1.fc3.bias")};
    for (int k = 0; k < 2; k++) memset(zero[k]->data, 0, zero[k]->size * sizeof(float));
    const char *same[][2] = {{"fc1.weight", "fc1.weight"}, {"fc1.bias", "fc1.bias"}, {"fc4.weight", "fc2.weight"},
                             {"fc4.bias", "fc2.bias"}};
    for (int k = 0; k < 4; k++) {
        nn_tensor *a = nn_params_find(&res.params, same[k][0]), *b = nn_params_find(&plain.params, same[k][1]);
        memcpy(b->data, a->data, a->size * sizeof(float));
    }
    nn_model *models[2] = {&res, &plain};
    for (int k = 0; k < 2; k++) {
        nn_ctx *ctx = nn_ctx_new(0);
        nn_rng data;
        nn_rng_seed(&data, 6, 0);
        nn_tensor *x = nn_input(ctx, "x", 4, (int[]){5, 1, 4, 4});
        for (size_t i = 0; i < x->size; i++) x->data[i] = nn_rng_normal(&data);
        nn_params_zero_grad(&models[k]->params);
        nn_backward(ctx, nn_cross_entropy(ctx, nn_model_forward(models[k], ctx, x, NULL), (int[]){0, 1, 2, 1, 0}, 0.0f));
        nn_ctx_free(ctx);
    }
    for (int k = 0; k < 4; k++) {
        nn_tensor *a = nn_params_find(&res.params, same[k][0]), *b = nn_params_find(&plain.params, same[k][1]);
        double worst = 0, largest = 0;
        for (size_t i = 0; i < a->size; i++) {
            worst = fmax(worst, fabs(a->grad[i] - b->grad[i]));
            largest = fmax(largest, fabs(b->grad[i]));
        }
        CHECKF(worst <= 1e-6 * fmax(1, largest) && largest > 1e-3, "%s: gradient differs from the plain model's %s "
               "by %g (largest %g)", same[k][0], same[k][1], worst, largest);
    }
    double branch = 0, first = 0;
    nn_tensor *w3 = zero[0], *w2 = nn_params_find(&res.params, "res1.fc2.weight");
    for (size_t i = 0; i < w3->size; i++) branch = fmax(branch, fabs(w3->grad[i]));
    for (size_t i = 0; i < w2->size; i++) first = fmax(first, fabs(w2->grad[i]));
    CHECKF(branch > 1e-3 && first == 0, "f's last layer's gradient %g, its first's %g", branch, first);
    nn_model_free(&res);
    nn_model_free(&plain);
}

/* A recurrent layer inside a block keeps its carried state: token by token
 * gives the logits of the whole sequence at once. */
static void test_generation_state(void) {
    nn_model m;
    CHECKF(nn_model_plan_text(&m, "embed(8) residual(lstm(8)) repeat(2, residual(layernorm linear(16) gelu linear(8))) "
                                  "residual(gru(8)) linear(12)",
                              12, 12) == 0,
           "%s", nn_last_error());
    if (check_failures_) return;
    nn_rng rng;
    nn_rng_seed(&rng, 8, 0);
    nn_model_build(&m, &rng);
    enum { T = 9 };
    int ids[T];
    for (int t = 0; t < T; t++) ids[t] = (int)nn_rng_below(&rng, 12);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    float whole[T * 12];
    memcpy(whole, nn_model_forward_tokens(&m, ctx, ids, 1, T, NULL, NULL)->data, sizeof whole);
    nn_model_state s;
    nn_model_state_init(&s, &m, 1);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        nn_ctx_reset(ctx);
        const float *y = nn_model_forward_state(&m, ctx, &s, &ids[t], 1)->data;
        for (int k = 0; k < 12; k++) worst = fmax(worst, fabs(y[k] - whole[t * 12 + k]));
    }
    CHECKF(worst <= 1e-5, "token by token vs the whole sequence: max |diff| %g", worst);
    nn_model_state_free(&s);
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

/* ---- PyTorch: logits and one SGD step ---- */

#define STEP_SPEC                                                                                                 \
    "conv(4,3,padding=1) batchnorm relu repeat(2, residual(conv(4,3,padding=1) batchnorm relu conv(4,3,padding=1) " \
    "batchnorm) relu) avgpool(2) flatten residual(layernorm linear(32) gelu linear(64)) linear(6)"

static bool write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(data, 1, size, f) == size;
    if (f) ok = fclose(f) == 0 && ok;
    CHECKF(ok, "%s: could not write", path);
    return ok;
}

static void test_torch_step(void) {
    if (!have_torch()) {
        SKIP("%s -c 'import torch' fails (is Debian's python3-torch installed?); the PyTorch step not run", PYTHON);
        return;
    }
    enum { B = 8, C = 2, H = 8, W = 8, CLASSES = 6 };
    const float lr = 0.1f;
    nn_model m;
    if (plan(&m, STEP_SPEC, (int[]){C, H, W}, CLASSES) != 0) return;
    nn_rng rng;
    nn_rng_seed(&rng, 12, 0);
    nn_model_build(&m, &rng);
    perturb_model(&m, &rng);
    char before[256], after[256], xs[256], ys[256], logits[256];
    snprintf(before, sizeof before, "%s", tmp("step_before.safetensors"));
    snprintf(after, sizeof after, "%s", tmp("step_after.safetensors"));
    snprintf(xs, sizeof xs, "%s", tmp("step_x.f32"));
    snprintf(ys, sizeof ys, "%s", tmp("step_labels.i32"));
    snprintf(logits, sizeof logits, "%s", tmp("step_logits.f32"));
    CHECKF(nn_model_save(&m, before) == 0, "%s", nn_last_error());

    float x[B * C * H * W];
    int labels[B];
    for (int i = 0; i < B * C * H * W; i++) x[i] = nn_rng_normal(&rng);
    for (int i = 0; i < B; i++) labels[i] = (int)nn_rng_below(&rng, CLASSES);
    nn_ctx *ctx = nn_ctx_new(0);
    /* Evaluation: the running statistics. */
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *xt = nn_input(ctx, "x", 4, (int[]){B, C, H, W});
    memcpy(xt->data, x, sizeof x);
    nn_tensor *y = nn_model_forward(&m, ctx, xt, NULL);
    bool ok = write_file(logits, y->data, y->size * sizeof(float)) && write_file(xs, x, sizeof x) &&
              write_file(ys, labels, sizeof labels);
    /* One step of plain SGD in training mode: the batch's statistics, the running ones updated. */
    nn_ctx_reset(ctx);
    nn_set_training(ctx, true);
    nn_set_grad_enabled(ctx, true);
    xt = nn_input(ctx, "x", 4, (int[]){B, C, H, W});
    memcpy(xt->data, x, sizeof x);
    nn_params_zero_grad(&m.params);
    nn_tensor *loss = nn_cross_entropy(ctx, nn_model_forward(&m, ctx, xt, NULL), labels, 0.0f);
    nn_backward(ctx, loss);
    nn_optim o;
    nn_optim_config oc = nn_optim_defaults(NN_OPT_SGD);
    nn_optim_init(&o, &m.params, &oc);
    nn_optim_step(&o, lr);
    nn_optim_free(&o);
    printf("  nn: training loss %.6f\n", loss->data[0]);
    CHECKF(nn_model_save(&m, after) == 0, "%s", nn_last_error());
    nn_ctx_free(ctx);
    nn_model_free(&m);
    if (!ok || check_failures_) return;
    int rc = python("tests/interop_torch.py step %s %s %s %s %s %g", before, after, xs, ys, logits, lr);
    printf("%s", out_text);
    CHECKF(rc == 0, "PyTorch differs from nn (exit %d): %s%s", rc, out_text, err_text);
}

/* The other direction: a PyTorch Sequential with torch_model.Residual
 * blocks, written by save_model, loads in nn as residual(...) with the same
 * logits. */
static void test_torch_saved(void) {
    if (!have_torch()) {
        SKIP("%s -c 'import torch' fails (is Debian's python3-torch installed?); save_model not run", PYTHON);
        return;
    }
    enum { N = 16, CLASSES = 10 };
    char ckpt[256], xs[256], logits[256];
    snprintf(ckpt, sizeof ckpt, "%s", tmp("saved.safetensors"));
    snprintf(xs, sizeof xs, "%s", tmp("saved_x.f32"));
    snprintf(logits, sizeof logits, "%s", tmp("saved_logits.f32"));
    int rc = python("tests/interop_torch.py save %s %s %s", ckpt, xs, logits);
    CHECKF(rc == 0, "interop_torch.py save exited %d: %s%s", rc, out_text, err_text);
    if (rc != 0) return;
    const char *want_spec = "conv(6,3,padding=1) batchnorm relu residual(conv(6,3,padding=1) batchnorm relu "
                            "conv(6,3,padding=1) batchnorm) relu maxpool(2) residual(conv(6,3,padding=1) tanh "
                            "residual(conv(6,3,padding=1))) flatten linear(24) residual(layernorm linear(48) gelu "
                            "linear(24)) relu linear(10)";
    CHECKF(strncmp(out_text, want_spec, strlen(want_spec)) == 0, "save_model wrote the spec %s", out_text);
    nn_model m;
    CHECKF(nn_model_load(&m, ckpt) == 0, "%s", nn_last_error());
    if (check_failures_) return;
    CHECK(strcmp(nn_model_spec(&m), want_spec) == 0 && m.in_shape[1] == 12);
    float x[N * 144], theirs[N * CLASSES];
    FILE *f = fopen(xs, "rb"), *g = fopen(logits, "rb");
    CHECK(f && fread(x, sizeof x, 1, f) == 1 && g && fread(theirs, sizeof theirs, 1, g) == 1);
    if (f) fclose(f);
    if (g) fclose(g);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *xt = nn_input(ctx, "x", 4, (int[]){N, 1, 12, 12});
    memcpy(xt->data, x, sizeof x);
    nn_tensor *y = nn_model_forward(&m, ctx, xt, NULL);
    double worst = 0, largest = 0;
    for (int i = 0; i < N * CLASSES; i++) {
        worst = fmax(worst, fabs(y->data[i] - theirs[i]));
        largest = fmax(largest, fabs(theirs[i]));
    }
    printf("  PyTorch's residual model in nn: max |logit diff| %.3g (largest |logit| %.3g)\n", worst, largest);
    CHECKF(worst <= 1e-4 * fmax(1, largest) && largest > 1, "max |diff| %g, largest %g", worst, largest);
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

/* ---- training ---- */

/* A ResNet block on the first 1024 MNIST training images, one pass in
 * batches of 32 with Adam: the loss falls and the test accuracy is far
 * above chance; the checkpoint loads back the same. */
static void test_resnet_trains(void) {
    if (!have_mnist()) return;
    nn_dataset train, test;
    CHECKF(nn_dataset_load(&train, "data/mnist", "train") == 0, "%s", nn_last_error());
    CHECKF(nn_dataset_load(&test, "data/mnist", "t10k") == 0, "%s", nn_last_error());
    if (check_failures_) return;
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 1, 0);
    if (plan(&m, RESNET, MNIST, 10) != 0) return;
    nn_model_build(&m, &rng);
    m.input_mean = 0.1307f, m.input_std = 0.3081f;
    nn_optim o;
    nn_optim_config oc = nn_optim_defaults(NN_OPT_ADAM);
    nn_optim_init(&o, &m.params, &oc);
    nn_ctx *ctx = nn_ctx_new(0);
    enum { BATCH = 32, STEPS = 32 };
    double losses[STEPS];
    for (int s = 0; s < STEPS; s++) {
        nn_ctx_reset(ctx);
        nn_tensor *x = nn_input(ctx, "x", 4, (int[]){BATCH, 1, 28, 28});
        int labels[BATCH];
        for (int b = 0; b < BATCH; b++) {
            int i = s * BATCH + b;
            for (int k = 0; k < 784; k++)
                x->data[b * 784 + k] = (train.images[(size_t)i * 784 + k] / 255.0f - m.input_mean) / m.input_std;
            labels[b] = train.labels[i];
        }
        nn_params_zero_grad(&m.params);
        nn_tensor *loss = nn_cross_entropy(ctx, nn_model_forward(&m, ctx, x, NULL), labels, 0.0f);
        nn_backward(ctx, loss);
        nn_optim_step(&o, 2e-3f);
        losses[s] = loss->data[0];
    }
    double first = (losses[0] + losses[1] + losses[2] + losses[3]) / 4;
    double last = (losses[STEPS - 1] + losses[STEPS - 2] + losses[STEPS - 3] + losses[STEPS - 4]) / 4;
    /* Accuracy on 500 test images, in evaluation mode. */
    enum { N_TEST = 500 };
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_ctx_reset(ctx);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){N_TEST, 1, 28, 28});
    for (size_t k = 0; k < x->size; k++) x->data[k] = (test.images[k] / 255.0f - m.input_mean) / m.input_std;
    nn_tensor *y = nn_model_forward(&m, ctx, x, NULL);
    int correct = 0;
    for (int i = 0; i < N_TEST; i++) {
        int best = 0;
        for (int k = 1; k < 10; k++)
            if (y->data[i * 10 + k] > y->data[i * 10 + best]) best = k;
        correct += best == test.labels[i];
    }
    printf("  %s: loss %.3f over the first 4 batches, %.3f over the last 4; test accuracy %.1f%% on %d images\n",
           RESNET, first, last, 100.0 * correct / N_TEST, N_TEST);
    CHECKF(last < 0.5 * first, "the loss went from %.3f to %.3f", first, last);
    CHECKF(correct > N_TEST * 8 / 10, "test accuracy %d of %d", correct, N_TEST);
    CHECK(nn_params_find(&m.state, "res1.bn1.num_batches_tracked")->data[0] == STEPS);

    /* The checkpoint: the same spec, tensors and logits. */
    char path[256];
    snprintf(path, sizeof path, "%s", tmp("resnet.safetensors"));
    CHECKF(nn_model_save(&m, path) == 0, "%s", nn_last_error());
    nn_model back;
    CHECKF(nn_model_load(&back, path) == 0, "%s", nn_last_error());
    if (check_failures_ == 0) {
        CHECK(strcmp(nn_model_spec(&back), RESNET) == 0 && back.n_layers == m.n_layers);
        CHECK(back.params.count == m.params.count && back.state.count == m.state.count &&
              memcmp(back.params.data, m.params.data, m.params.count * sizeof(float)) == 0 &&
              memcmp(back.state.data, m.state.data, m.state.count * sizeof(float)) == 0);
        float *want = malloc(y->size * sizeof *want);
        memcpy(want, y->data, y->size * sizeof *want);
        nn_ctx_reset(ctx);
        x = nn_input(ctx, "x", 4, (int[]){N_TEST, 1, 28, 28});
        for (size_t k = 0; k < x->size; k++) x->data[k] = (test.images[k] / 255.0f - m.input_mean) / m.input_std;
        y = nn_model_forward(&back, ctx, x, NULL);
        CHECK(memcmp(y->data, want, y->size * sizeof *want) == 0);
        free(want);
        nn_safetensors st;
        CHECK(nn_st_load(&st, path) == 0);
        CHECK(strcmp(nn_st_meta(&st, "nn.arch"), "cnn") == 0 && strcmp(nn_st_meta(&st, "nn.spec"), RESNET) == 0);
        CHECK(nn_st_find(&st, "res1.conv3.weight") && nn_st_find(&st, "res1.bn2.running_var"));
        nn_st_free(&st);
        nn_model_free(&back);
    }
    nn_optim_free(&o);
    nn_ctx_free(ctx);
    nn_model_free(&m);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
}

/* nn train --arch takes blocks: the summary shows the block's layers under
 * it, and a block that changes the shape is a usage error naming it. */
static void test_train_cli(void) {
    if (!have_mnist()) return;
    int rc = nn("train --arch 'conv(8,3,padding=1) relu maxpool(2) residual(conv(8,3,padding=1) batchnorm relu) "
                "repeat(2, residual(conv(8,3,padding=1) relu)) flatten linear(10)' --train-limit 256 --epochs 1 "
                "--batch-size 64 --opt adam --save %s",
                tmp("cli.safetensors"));
    CHECKF(rc == 0, "nn train exited %d: %s", rc, err_text);
    CHECKF(strstr(out_text, "residual(...)") && strstr(out_text, "  conv(8,3,padding=1)") &&
               strstr(out_text, "repeat(2, ...)"),
           "the summary: %s", out_text);
    nn_model m;
    CHECKF(nn_model_load(&m, tmp("cli.safetensors")) == 0, "%s", nn_last_error());
    if (check_failures_ == 0) {
        CHECK(nn_params_find(&m.params, "res3.conv4.weight") != NULL);
        nn_model_free(&m);
    }
    rc = nn("train --arch 'conv(8,3) maxpool(2) residual(conv(16,3,padding=1)) flatten linear(10)' --epochs 1");
    CHECKF(rc == 2 && strstr(err_text, "layer 3, residual(...): its layers map [8, 13, 13] to [16, 13, 13]"),
           "exit %d: %s", rc, err_text);
}

TEST_MAIN(TEST(test_spec), TEST(test_spec_errors), TEST(test_forward_is_x_plus_fx), TEST(test_gradcheck),
          TEST(test_identity_path), TEST(test_generation_state), TEST(test_torch_step), TEST(test_torch_saved),
          TEST(test_resnet_trains),
          TEST(test_train_cli))
