/* End-to-end tests of the nn tool: train on a slice of real MNIST, evaluate
 * and predict with the checkpoint, and feed every command bad input (PyTorch
 * interop is tests/test_interop.c). Runs the binary named by $NN (default build/nn). */
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "run_nn.h"
#include "nn/data.h"
#include "nn/model.h"
#include "nn/safetensors.h"

static void test_train_eval_predict(void) {
    if (!have_mnist()) return;
    int rc = nn("train --train-limit 12000 --epochs 2 --hidden 128 --batch-size 64 --seed 3 --save %s --plot %s "
                "--metrics %s",
                tmp("m.safetensors"), tmp("p.png"), tmp("m.csv"));
    CHECKF(rc == 0, "train exited %d: %s", rc, err_text);
    const char *acc = strstr(out_text, "final test accuracy: ");
    CHECK(acc != NULL);
    double test_acc = acc ? atof(acc + 21) : 0.0;
    CHECKF(test_acc > 93.0, "test accuracy %.2f%% after 2 epochs on 12000 images", test_acc);

    char csv[4096];
    slurp(tmp("m.csv"), csv, sizeof csv);
    CHECK(strncmp(csv, "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,images_per_sec\n", 72) == 0);
    CHECK(strstr(csv, "\n2,") != NULL);
    char png[8];
    slurp(tmp("p.png"), png, sizeof png);
    CHECK(memcmp(png, "\x89PNG", 4) == 0);

    rc = nn("eval --model %s", tmp("m.safetensors"));
    CHECKF(rc == 0, "eval exited %d: %s", rc, err_text);
    const char *e = strstr(out_text, "test accuracy ");
    CHECKF(e && fabs(atof(e + 14) - test_acc) < 0.011, "eval accuracy differs from training's: %s", out_text);

    /* The fixture images are real MNIST test digits, named by their label. */
    rc = nn("predict --model %s tests/fixtures/images/*.png tests/fixtures/images/*.pgm", tmp("m.safetensors"));
    CHECKF(rc == 0, "predict exited %d: %s", rc, err_text);
    int lines = 0, right = 0;
    for (char *line = strtok(out_text, "\n"); line; line = strtok(NULL, "\n")) {
        char *slash = strrchr(line, '/'), *colon = strstr(line, ": ");
        if (!slash || !colon) continue;
        lines++;
        right += slash[1] == colon[2];
    }
    CHECKF(lines == 8, "predict printed %d lines for 8 images", lines);
    CHECKF(right >= 7, "predict got %d of %d fixture digits right", right, lines);
}

static void test_graph_export(void) {
    if (!have_mnist()) return;
    int rc = nn("train --hidden 16 --norm layer --act gelu --dropout 0.1 --train-limit 300 --epochs 1 --graph %s",
                tmp("g.dot"));
    CHECKF(rc == 0, "train --graph exited %d: %s", rc, err_text);
    char dot[8192];
    slurp(tmp("g.dot"), dot, sizeof dot);
    CHECK(strncmp(dot, "digraph", 7) == 0);
    const char *expect[] = {"param fc1.weight\\n[16, 784]", "param ln1.bias", "layer_norm", "gelu", "dropout",
                            "cross_entropy", "x\\n[128, 1, 28, 28]"};
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++)
        CHECKF(strstr(dot, expect[i]) != NULL, "graph lacks %s", expect[i]);
}

static void test_usage_errors(void) {
    CHECK(nn("") == 2);
    CHECK(nn("frobnicate") == 2);
    CHECK(nn("--help") == 0 && strstr(out_text, "train") != NULL);
    const char *bad[] = {"--bogus", "--lr abc", "--lr -1", "--epochs 0", "--batch-size 1x", "--hidden 10,,3",
                         "--act swish", "--opt lbfgs", "--plot out.gif", "--dataset cifar", "--early-stop 3",
                         "--dropout 1.5", "--input-dropout -0.1", "--ema 1", "--ema x", "--epochs",
                         "--arch 'flatten linear(10) softmax'", "--arch 'conv(32) relu'", "--arch 'conv(8,3 relu'",
                         "--arch 'flatten linear(10)' --hidden 32", "--aug-rotate 200", "--aug-scale -1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = nn("train %s", bad[i]);
        CHECKF(rc == 2, "train %s exited %d", bad[i], rc);
        CHECKF(strstr(err_text, "nn train: ") == err_text, "train %s: stderr %s", bad[i], err_text);
    }
    /* Each usage error says what is actually wrong. */
    const struct {
        const char *args, *why;
    } said[] = {
        {"train --lr", "--lr needs a value"},
        {"train --lr --epochs 3", "--lr needs a value"},
        {"train --epoch 3", "unknown option '--epoch' (did you mean --epochs?)"},
        {"train --augment=yes", "--augment takes no value"},
        /* library enums: the library's own name tables and messages */
        {"train --act swish", "--act: unknown activation 'swish'"},
        {"train --opt lbfgs", "--opt: unknown optimiser 'lbfgs' (one of: sgd, momentum, nesterov, adam, adamw)"},
        {"train --schedule linear", "--schedule: unknown learning-rate schedule 'linear'"},
        {"train --loss hinge", "--loss: unknown loss 'hinge' (one of: ce, mse)"},
        {"train --precision fp16", "--precision: unknown precision 'fp16' (one of: fp32, bf16)"},
        {"linreg --opt lbfgs", "--opt: unknown optimiser 'lbfgs'"},
        {"train --epochs 0", "--epochs: '0' is not an integer in [1, 100000]"},
        {"train --plot out.gif", "--plot: 'out.gif' must end in .png or .svg"},
        {"train extra", "unexpected argument 'extra'"},
        {"eval --model", "--model needs a value"},
        {"linreg --stpes 5", "did you mean --steps?"},
    };
    for (size_t i = 0; i < sizeof said / sizeof *said; i++) {
        int rc = nn("%s", said[i].args);
        CHECKF(rc == 2 && strstr(err_text, said[i].why), "nn %s exited %d: %s", said[i].args, rc, err_text);
    }
    for (const char **c = (const char *[]){"train", "eval", "predict", "linreg", "experiment", "serve", "export", NULL}; *c; c++) {
        CHECKF(nn("%s --help", *c) == 0 && strstr(out_text, "usage: nn ") != NULL, "%s --help", *c);
        CHECKF(nn("%s --no-such-flag", *c) == 2, "%s accepted an unknown flag", *c);
    }
    /* --help's defaults come from the library's */
    CHECK(nn("train --help") == 0);
    CHECKF(strstr(out_text, "(nesterov)") && strstr(out_text, "(0.05; 0.001 for adam/adamw)") &&
               strstr(out_text, "(0; 0.01 for adamw)") && strstr(out_text, "(cosine)") && strstr(out_text, "(ce)") &&
               strstr(out_text, "(fp32)") && strstr(out_text, "(1024,1024)") && strstr(out_text, "(relu)") &&
               strstr(out_text, "(128)") && strstr(out_text, "(6)"),
           "%s", out_text);
    CHECK(nn("eval") == 2);
    CHECK(nn("predict --model x.safetensors") == 2);
    /* Errors in a spec's shapes show once the data's image size is known;
     * each names the layer. */
    if (!have_mnist()) return;
    const struct {
        const char *spec, *why;
    } shapes[] = {{"flatten conv(8,3) linear(10)", "layer 2, conv(8,3)"},
                  {"conv(8,29) flatten linear(10)", "kernel 29 is larger"},
                  {"flatten linear(128) relu linear(7)", "layer 4, linear(7)"},
                  {"conv(8,3) relu", "ends in [8, 26, 26]"}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int rc = nn("train --arch '%s'", shapes[i].spec);
        CHECKF(rc == 2 && strstr(err_text, shapes[i].why), "--arch '%s' exited %d: %s", shapes[i].spec, rc,
               err_text);
    }
}

static void test_missing_data(void) {
    mkdir(tmp("empty"), 0755);
    int rc = nn("train --data %s", tmp("empty"));
    CHECK(rc == 1);
    CHECKF(one_line_error("not found"), "%s", err_text);
    CHECK(strstr(err_text, "four IDX files") != NULL);
}

static void test_bad_checkpoints(void) {
    /* A file that does not exist, a truncated one, and a valid safetensors
     * file without nn's metadata. */
    CHECK(nn("eval --model %s", tmp("nope.safetensors")) == 1);
    CHECK(one_line_error("nope.safetensors"));
    FILE *f = fopen(tmp("trunc.safetensors"), "wb");
    fwrite("\x40\0\0\0\0\0\0\0{\"a\":", 1, 13, f);
    fclose(f);
    CHECK(nn("eval --model %s", tmp("trunc.safetensors")) == 1);
    CHECKF(one_line_error("trunc.safetensors"), "%s", err_text);
    float w[4] = {1, 2, 3, 4};
    nn_st_entry e = {"fc1.weight", 2, (int64_t[]){2, 2}, w};
    CHECK(nn_st_save(tmp("nometa.safetensors"), &e, 1, NULL, NULL, 0) == 0);
    CHECK(nn("predict --model %s tests/fixtures/images/7_gray_dark_on_light.png", tmp("nometa.safetensors")) == 1);
    CHECKF(one_line_error("missing metadata"), "%s", err_text);
    /* Right metadata, the weight transposed ([in, out] instead of [out, in]). */
    const char *k[] = {"nn.arch", "nn.layers", "nn.act", "nn.norm", "nn.dropout", "nn.input_mean", "nn.input_std"};
    const char *v[] = {"linear", "784,10", "relu", "none", "0", "0.1", "0.3"};
    static float big[7840], b[10];
    nn_st_entry two[2] = {{"fc1.weight", 2, (int64_t[]){784, 10}, big}, {"fc1.bias", 1, (int64_t[]){10}, b}};
    CHECK(nn_st_save(tmp("shape.safetensors"), two, 2, k, v, 7) == 0);
    CHECK(nn("eval --model %s", tmp("shape.safetensors")) == 1);
    CHECKF(one_line_error("fc1.weight") && strstr(err_text, "[10, 784]"), "%s", err_text);
}

static void test_predict_bad_image(void) {
    if (access(tmp("m.safetensors"), R_OK) != 0) {
        SKIP("no checkpoint from the end-to-end test");
        return;
    }
    FILE *f = fopen(tmp("note.png"), "w");
    fputs("this is not an image\n", f);
    fclose(f);
    int rc = nn("predict --model %s %s tests/fixtures/images/7_gray_dark_on_light.png", tmp("m.safetensors"),
                tmp("note.png"));
    CHECK(rc == 1);
    CHECKF(one_line_error("note.png"), "%s", err_text);
    CHECK(strstr(out_text, "7_gray_dark_on_light.png: ") != NULL);
}

static void test_nan_stops(void) {
    if (!have_mnist()) return;
    int rc = nn("train --train-limit 2000 --epochs 2 --hidden 32 --lr 1e9 --opt sgd --schedule const --save %s",
                tmp("nan.safetensors"));
    CHECK(rc == 1);
    /* the library's message names the run's learning rate; nn train adds the flag to change */
    CHECKF(one_line_error("loss became") && strstr(err_text, "with learning rate 1e+09") &&
               strstr(err_text, "(try a smaller --lr)"),
           "%s", err_text);
    CHECK(strstr(err_text, "epoch 1") != NULL);
}

TEST_MAIN(TEST(test_train_eval_predict), TEST(test_graph_export), TEST(test_usage_errors),
          TEST(test_missing_data), TEST(test_bad_checkpoints), TEST(test_predict_bad_image), TEST(test_nan_stops))
