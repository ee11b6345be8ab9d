/* The general model: specs (parsing, shapes, errors, canonical form),
 * parameter counts checked against the figures Keras and PyTorch print for
 * the same networks, checkpoints (round trip, inconsistent files, a file of
 * the previous release) and the forward pass of a CNN. */
#include <unistd.h>

#include "check.h"
#include "nn/data.h"
#include "nn/model.h"
#include "nn/train.h"

static const int MNIST[3] = {1, 28, 28};

#define KERAS "conv(32,3) relu maxpool(2) conv(64,3) relu maxpool(2) flatten dropout(0.5) linear(10)"
#define TORCH_NET                                                                                                \
    "conv(32,3) relu conv(64,3) relu maxpool(2) dropout(0.25) flatten linear(128) relu dropout(0.5) linear(10)"
#define MLP "flatten linear(1024) relu linear(1024) relu linear(10)"

/* The learned parameters of spec's model, built (and freed again). */
static size_t spec_params(const char *spec) {
    nn_model m;
    nn_rng rng;
    nn_rng_seed(&rng, 1, 0);
    if (nn_model_init(&m, spec, MNIST, 10, &rng) != 0) return 0;
    size_t n = nn_model_param_count(&m);
    nn_model_free(&m);
    return n;
}

static void test_reference_specs(void) {
    nn_model m;
    /* Keras' mnist_convnet example: "Total params: 34,826". */
    CHECKF(nn_model_plan(&m, KERAS, MNIST, 10) == 0, "%s", nn_last_error());
    CHECK(m.n_layers == 9);
    CHECK(spec_params(KERAS) == 34826);
    const nn_layer *pool2 = &m.layers[5];
    CHECK(pool2->out_ndim == 3 && pool2->out_shape[0] == 64 && pool2->out_shape[1] == 5 && pool2->out_shape[2] == 5);
    CHECK(m.layers[6].out_shape[0] == 1600 && m.classes == 10);
    CHECK(strcmp(m.layers[0].name, "conv1") == 0 && strcmp(m.layers[3].name, "conv2") == 0 &&
          strcmp(m.layers[8].name, "fc1") == 0);
    nn_model_free(&m);
    /* PyTorch examples/mnist Net: 320 + 18,496 + 1,179,776 + 1,290. */
    CHECKF(nn_model_plan(&m, TORCH_NET, MNIST, 10) == 0, "%s", nn_last_error());
    CHECK(spec_params(TORCH_NET) == 1199882);
    CHECK(m.layers[4].out_shape[0] == 64 && m.layers[4].out_shape[1] == 12); /* after maxpool: [64, 12, 12] */
    nn_model_free(&m);
    CHECK(spec_params(MLP) == 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10);
}

static void test_shapes_and_options(void) {
    nn_model m;
    CHECKF(nn_model_plan(&m, "conv(8, 5, stride=2, padding=2) batchnorm avgpool(3,stride=1) flatten batchnorm "
                             "layernorm leakyrelu(0.2) gelu sigmoid tanh linear(10)",
                         MNIST, 10) == 0,
           "%s", nn_last_error());
    CHECK(m.layers[0].out_shape[0] == 8 && m.layers[0].out_shape[1] == 14 && m.layers[0].out_shape[2] == 14);
    CHECK(m.layers[2].out_shape[1] == 12);
    CHECK(m.layers[4].out_shape[0] == 8 * 12 * 12);
    CHECK(fabsf(m.layers[6].p - 0.2f) < 1e-7f);
    CHECK(strcmp(m.layers[1].name, "bn1") == 0 && strcmp(m.layers[4].name, "bn2") == 0 &&
          strcmp(m.layers[5].name, "ln1") == 0);
    /* Canonical form: defaults dropped, spaces normalised; it reads back the same. */
    const char *spec = nn_model_spec(&m);
    CHECKF(strcmp(spec, "conv(8,5,stride=2,padding=2) batchnorm avgpool(3,stride=1) flatten batchnorm layernorm "
                        "leakyrelu(slope=0.2) gelu sigmoid tanh linear(10)") == 0,
           "%s", spec);
    nn_model m2;
    CHECK(nn_model_plan(&m2, spec, MNIST, 10) == 0);
    CHECK(strcmp(nn_model_spec(&m2), spec) == 0);
    nn_model_free(&m2);
    nn_model_free(&m);
    CHECK(nn_model_plan(&m, "maxpool(2,stride=2) conv(4,3,1,1) leakyrelu flatten linear(10)", MNIST, 10) == 0);
    CHECK(strcmp(nn_model_spec(&m), "maxpool(2) conv(4,3,padding=1) leakyrelu flatten linear(10)") == 0);
    nn_model_free(&m);
}

/* Each bad spec is refused with an error that contains every fragment given. */
static void test_spec_errors(void) {
    const struct {
        const char *spec, *why[2];
    } bad[] = {
        {"flatten linear(10) softmax", {"unknown layer 'softmax'", NULL}},
        {"conv(32) relu flatten linear(10)", {"conv(32)", "kernel"}},
        {"flatten linear() linear(10)", {"linear()", "missing argument 'out'"}},
        {"flatten linear(out=) linear(10)", {"linear(out=)", "has no value"}},
        {"flatten linear(12.5) linear(10)", {"linear(12.5)", "not an integer"}},
        {"flatten linear(abc) linear(10)", {"linear(abc)", "not a number"}},
        {"flatten linear(0) linear(10)", {"out of range", NULL}},
        {"flatten dropout(1.5) linear(10)", {"dropout(1.5)", "out of range"}},
        {"flatten dropout linear(10)", {"dropout", "missing argument 'p'"}},
        {"conv(8,3,stride=1,stride=2) flatten linear(10)", {"stride given twice", NULL}},
        {"conv(8,3,dilation=2) flatten linear(10)", {"no argument 'dilation'", NULL}},
        {"conv(8,3 flatten linear(10)", {"'(' without ')'", NULL}},
        {"conv(8,3)) flatten linear(10)", {"')' without '('", NULL}},
        {"relu(2) flatten linear(10)", {"relu(2)", "takes no arguments"}},
        {"conv(8,29) flatten linear(10)", {"layer 1, conv(8,29)", "larger than the input height of 28"}},
        {"maxpool(2) maxpool(2) maxpool(2) maxpool(4) flatten linear(10)", {"layer 4, maxpool(4)", "kernel 4"}},
        {"flatten conv(8,3) linear(10)", {"layer 2, conv(8,3)", "cannot come after flatten"}},
        {"conv(8,3) linear(10)", {"layer 2, linear(10)", "add flatten"}},
        {"conv(8,3) layernorm flatten linear(10)", {"layer 2, layernorm", "batchnorm"}},
        {"flatten linear(128) relu linear(7)", {"layer 4, linear(7)", "10 classes"}},
        {"conv(8,3) relu", {"ends in [8, 26, 26]", NULL}},
        {"", {"no layers", NULL}},
        {"flatten linear(65536) linear(65536) linear(10)", {"layer 3, linear(65536)", "more than"}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        nn_model m;
        int rc = nn_model_plan(&m, bad[i].spec, MNIST, 10);
        CHECKF(rc == -1, "'%s' was accepted", bad[i].spec);
        for (int k = 0; k < 2 && rc == -1; k++)
            CHECKF(!bad[i].why[k] || strstr(nn_last_error(), bad[i].why[k]), "'%s': error '%s' lacks '%s'",
                   bad[i].spec, nn_last_error(), bad[i].why[k]);
    }
}

static char path_buf[256];
static const char *tmp_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "/tmp/nn_test_model_%d_%s", (int)getpid(), name);
    return path_buf;
}

/* Logits of a fixed batch in evaluation mode. */
static void eval_logits(nn_model *m, float *out, int B) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_training(ctx, false);
    nn_set_grad_enabled(ctx, false);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){B, 1, 28, 28});
    nn_rng r;
    nn_rng_seed(&r, 5, 5);
    for (size_t i = 0; i < x->size; i++) x->data[i] = nn_rng_normal(&r);
    nn_tensor *y = nn_model_forward(m, ctx, x, NULL);
    memcpy(out, y->data, y->size * sizeof(float));
    nn_ctx_free(ctx);
}

#define CNN "conv(4,3,padding=1) batchnorm relu maxpool(2) conv(6,3,stride=2) batchnorm relu flatten linear(16) batchnorm gelu linear(10)"

static void test_checkpoint_round_trip(void) {
    nn_model m;
    nn_rng r;
    nn_rng_seed(&r, 1, 1);
    CHECKF(nn_model_init(&m, CNN, MNIST, 10, &r) == 0, "%s", nn_last_error());
    CHECK(nn_params_find(&m.params, "conv2.weight")->shape[1] == 4);
    CHECK(nn_params_find(&m.state, "bn3.running_var") != NULL);
    /* Move the running statistics off their initial values with one training step. */
    nn_ctx *ctx = nn_ctx_new(0);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){8, 1, 28, 28});
    for (size_t i = 0; i < x->size; i++) x->data[i] = nn_rng_normal(&r);
    nn_model_forward(&m, ctx, x, NULL);
    nn_ctx_free(ctx);
    CHECK(nn_params_find(&m.state, "bn1.num_batches_tracked")->data[0] == 1.0f);
    CHECK(nn_params_find(&m.state, "bn1.running_var")->data[0] != 1.0f);
    m.input_mean = 0.125f, m.input_std = 0.5f;
    CHECK(nn_model_save(&m, tmp_path("cnn.safetensors")) == 0);

    nn_model back;
    CHECKF(nn_model_load(&back, tmp_path("cnn.safetensors")) == 0, "%s", nn_last_error());
    CHECK(strcmp(nn_model_spec(&m), nn_model_spec(&back)) == 0);
    CHECK(back.params.count == m.params.count && back.state.count == m.state.count);
    CHECK(memcmp(back.params.data, m.params.data, m.params.count * sizeof(float)) == 0);
    CHECK(memcmp(back.state.data, m.state.data, m.state.count * sizeof(float)) == 0);
    CHECK(back.input_mean == 0.125f && back.input_std == 0.5f);
    float la[4 * 10], lb[4 * 10];
    eval_logits(&m, la, 4);
    eval_logits(&back, lb, 4);
    CHECK(memcmp(la, lb, sizeof la) == 0);
    nn_safetensors st;
    CHECK(nn_st_load(&st, tmp_path("cnn.safetensors")) == 0);
    CHECK(strcmp(nn_st_meta(&st, "nn.arch"), "cnn") == 0 && strcmp(nn_st_meta(&st, "nn.input_shape"), "1,28,28") == 0);
    const nn_st_tensor *nbt = nn_st_find(&st, "bn2.num_batches_tracked");
    CHECK(nbt && nbt->ndim == 0);
    nn_st_free(&st);
    nn_model_free(&back);

    /* The spec says one thing, the tensors another: the error names the tensor. */
    const char *k[] = {"nn.spec", "nn.input_shape", "nn.input_mean", "nn.input_std"};
    const char *v[] = {"conv(4,3) flatten linear(10)", "1,28,28", "0", "1"};
    static float w[4 * 9 * 2], bias[10], fw[10 * 2704];
    nn_st_entry e[4] = {{"conv1.weight", 4, (int64_t[]){4, 2, 3, 3}, w},
                        {"conv1.bias", 1, (int64_t[]){4}, bias},
                        {"fc1.weight", 2, (int64_t[]){10, 2704}, fw},
                        {"fc1.bias", 1, (int64_t[]){10}, bias}};
    CHECK(nn_st_save(tmp_path("bad.safetensors"), e, 4, k, v, 4) == 0);
    CHECK(nn_model_load(&back, tmp_path("bad.safetensors")) == -1);
    CHECKF(strstr(nn_last_error(), "'conv1.weight' has the wrong shape") && strstr(nn_last_error(), "[4, 1, 3, 3]"),
           "%s", nn_last_error());
    /* A tensor missing, and one too many. */
    CHECK(nn_st_save(tmp_path("bad.safetensors"), e + 1, 3, k, v, 4) == 0);
    CHECK(nn_model_load(&back, tmp_path("bad.safetensors")) == -1);
    CHECKF(strstr(nn_last_error(), "no tensor named 'conv1.weight'"), "%s", nn_last_error());
    e[0].shape = (int64_t[]){4, 1, 3, 3};
    nn_st_entry five[5] = {e[0], e[1], e[2], e[3], {"fc2.weight", 1, (int64_t[]){10}, bias}};
    CHECK(nn_st_save(tmp_path("bad.safetensors"), five, 5, k, v, 4) == 0);
    CHECK(nn_model_load(&back, tmp_path("bad.safetensors")) == -1);
    CHECKF(strstr(nn_last_error(), "5 model tensors, expected 4"), "%s", nn_last_error());
    CHECK(nn_st_save(tmp_path("bad.safetensors"), five, 4, k, v, 4) == 0);
    CHECKF(nn_model_load(&back, tmp_path("bad.safetensors")) == 0, "%s", nn_last_error());
    nn_model_free(&back);
    const char *v3[] = {"conv(4,3) flatten linear(10)", "1,28", "0", "1"};
    CHECK(nn_st_save(tmp_path("bad.safetensors"), e, 4, k, v3, 4) == 0);
    CHECK(nn_model_load(&back, tmp_path("bad.safetensors")) == -1);
    CHECKF(strstr(nn_last_error(), "nn.input_shape"), "%s", nn_last_error());
    unlink(tmp_path("bad.safetensors"));
    unlink(tmp_path("cnn.safetensors"));
    nn_model_free(&m);
}

/* nn_model_predict: the model's normalisation, evaluation mode, softmax;
 * the context's settings come back as they were. */
static void test_predict(void) {
    nn_model m;
    nn_rng r;
    nn_rng_seed(&r, 2, 2);
    CHECK(nn_model_init(&m, CNN, MNIST, 10, &r) == 0);
    m.input_mean = 0.1f, m.input_std = 0.3f;
    float pixels[784], probs[10];
    for (int i = 0; i < 784; i++) pixels[i] = nn_rng_uniform(&r);
    nn_ctx *ctx = nn_ctx_new(0);
    int best = nn_model_predict(&m, ctx, pixels, probs);
    CHECK(nn_training(ctx) && nn_grad_enabled(ctx));
    nn_set_training(ctx, false);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){1, 1, 28, 28});
    for (int i = 0; i < 784; i++) x->data[i] = (pixels[i] - 0.1f) / 0.3f;
    const float *want = nn_softmax(ctx, nn_model_forward(&m, ctx, x, NULL))->data;
    double sum = 0.0;
    for (int k = 0; k < 10; k++) {
        CHECK(probs[k] == want[k]);
        CHECK(probs[k] <= probs[best]);
        sum += probs[k];
    }
    CHECK_NEAR(sum, 1.0, 1e-5);
    nn_ctx_free(ctx);
    nn_model_free(&m);
}

/* A checkpoint written by the release before the general model (MLP
 * metadata, no spec) still loads, and gives the test accuracy that release
 * printed when it trained it (74.59% after 2 epochs on 3000 images). */
static void test_previous_release_checkpoint(void) {
    nn_model m;
    CHECKF(nn_model_load(&m, "tests/fixtures/checkpoints/mlp-v1.safetensors") == 0, "%s", nn_last_error());
    CHECKF(strcmp(nn_model_spec(&m), "flatten dropout(0.1) linear(32) layernorm gelu dropout(0.1) linear(10)") == 0,
           "%s", nn_model_spec(&m));
    CHECK(m.in_shape[0] == 1 && m.in_shape[1] == 28 && m.in_shape[2] == 28);
    nn_dataset test;
    if (nn_dataset_load(&test, "data/mnist", "t10k") != 0) {
        SKIP("data/mnist missing (run make data): the accuracy of the old checkpoint not checked");
    } else {
        nn_ctx *ctx = nn_ctx_new(0);
        double acc = nn_evaluate(&m, ctx, &test, NN_LOSS_CE, NULL, NULL);
        CHECKF(fabs(acc - 0.7459) < 1e-9, "accuracy %.4f", acc);
        nn_ctx_free(ctx);
        nn_dataset_free(&test);
    }
    nn_model_free(&m);
}

/* "flatten" then `blocks` times `block`, then linear(10); the caller frees it. */
static char *repeated_spec(const char *block, int blocks) {
    size_t cap = 32 + (strlen(block) + 1) * (size_t)blocks;
    char *spec = malloc(cap);
    size_t pos = (size_t)snprintf(spec, cap, "flatten");
    for (int i = 0; i < blocks; i++) pos += (size_t)snprintf(spec + pos, cap - pos, " %s", block);
    snprintf(spec + pos, cap - pos, " linear(10)");
    return spec;
}

/* One SGD step on a random batch: the loss is finite and every weight moved. */
static void train_one_step(nn_model *m) {
    nn_ctx *ctx = nn_ctx_new(0);
    nn_rng r;
    nn_rng_seed(&r, 3, 3);
    nn_tensor *x = nn_input(ctx, "x", 4, (int[]){4, 1, 28, 28});
    for (size_t i = 0; i < x->size; i++) x->data[i] = nn_rng_normal(&r);
    int labels[4] = {1, 7, 3, 9};
    float *before = malloc(m->params.count * sizeof(float));
    memcpy(before, m->params.data, m->params.count * sizeof(float));
    nn_params_zero_grad(&m->params);
    nn_tensor *loss = nn_cross_entropy(ctx, nn_model_forward(m, ctx, x, &r), labels, 0.0f);
    nn_backward(ctx, loss);
    nn_optim o;
    nn_optim_config oc = nn_optim_defaults(NN_OPT_SGD);
    nn_optim_init(&o, &m->params, &oc);
    nn_optim_step(&o, 0.1f);
    CHECKF(isfinite(loss->data[0]), "loss %g", loss->data[0]);
    /* The last layer's weight moved (in 250 tanh layers the first ones'
     * gradients vanish, as they would in PyTorch). */
    nn_tensor *w = m->params.tensors[m->params.n - 2];
    size_t moved = 0, offset = (size_t)(w->data - m->params.data);
    for (size_t i = 0; i < w->size; i++) moved += w->data[i] != before[offset + i];
    CHECKF(moved > 0, "%s did not move in a training step", w->name);
    free(before);
    nn_optim_free(&o);
    nn_ctx_free(ctx);
}

/* No caps: a 200-layer MLP, and a model of 500 parameter tensors (a spec of
 * several KiB), train a step, save and load back the same. */
static void test_no_caps(void) {
    const struct {
        const char *block;
        int blocks, layers, tensors;
    } models[] = {{"linear(16) relu", 99, 200, 200}, {"linear(8) tanh", 249, 500, 500}};
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        char *spec = repeated_spec(models[k].block, models[k].blocks);
        nn_model m, back;
        nn_rng r;
        nn_rng_seed(&r, 1, 2);
        CHECKF(nn_model_init(&m, spec, MNIST, 10, &r) == 0, "%s", nn_last_error());
        CHECKF(m.n_layers == models[k].layers && m.params.n == models[k].tensors, "%d layers, %d tensors",
               m.n_layers, m.params.n);
        CHECK(strcmp(nn_model_spec(&m), spec) == 0 && strlen(spec) > 1024);
        train_one_step(&m);
        CHECKF(nn_model_save(&m, tmp_path("deep.safetensors")) == 0, "%s", nn_last_error());
        CHECKF(nn_model_load(&back, tmp_path("deep.safetensors")) == 0, "%s", nn_last_error());
        CHECK(back.params.n == m.params.n && strcmp(nn_model_spec(&back), spec) == 0);
        CHECK(back.params.count == m.params.count &&
              memcmp(back.params.data, m.params.data, m.params.count * sizeof(float)) == 0);
        char last[32];
        snprintf(last, sizeof last, "fc%d.weight", models[k].tensors / 2);
        CHECKF(nn_params_find(&back.params, last) != NULL, "no %s", last);
        nn_model_free(&back);
        nn_model_free(&m);
        free(spec);
    }
    unlink(tmp_path("deep.safetensors"));
}

/* Parameter names as long as PyTorch's dotted ones, and more parameters than
 * any fixed table would hold, in one store. */
static void test_params_grow(void) {
    nn_params p;
    nn_params_init(&p);
    char name[128];
    nn_tensor *first = NULL;
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "transformer.blocks.%d.attention.query_key_value.weight", i);
        nn_tensor *t = nn_params_add(&p, name, 2, (int[]){3, i % 5 + 1}, true);
        if (i == 0) first = t;
    }
    CHECK(p.n == 300 && first == p.tensors[0] && strcmp(first->name, "transformer.blocks.0.attention.query_key_value.weight") == 0);
    nn_tensor *t = nn_params_find(&p, "transformer.blocks.299.attention.query_key_value.weight");
    CHECK(t && t->shape[1] == 299 % 5 + 1 && t->data + t->size == p.data + p.count);
    nn_params_free(&p);
}

TEST_MAIN(TEST(test_reference_specs), TEST(test_no_caps), TEST(test_params_grow), TEST(test_shapes_and_options), TEST(test_spec_errors),
          TEST(test_checkpoint_round_trip), TEST(test_predict), TEST(test_previous_release_checkpoint))
