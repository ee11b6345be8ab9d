/* nn train on text and nn generate, as a user runs them: a short run on the
 * committed Tiny Shakespeare writes a checkpoint with its vocabulary; nn
 * generate streams text from it, the same for the same seed, greedy
 * (temperature 0) whatever the seed; names come one per line with --count;
 * bad input (a character the model never saw, an image model, image flags
 * on text) gets a one-line error and the right exit status. */
#include "check.h"
#include "run_nn.h"

#define SHAKESPEARE "datasets/tinyshakespeare/input.txt"
#define RUN "--steps 40 --eval-every 20 --eval-windows 20 --context 16 --batch-size 8 --threads 1"

static const char *model(void) {
    static char path[256];
    static int trained = -1;
    if (trained < 0) {
        snprintf(path, sizeof path, "%s", tmp("lm.safetensors"));
        trained = nn("train --data " SHAKESPEARE " --arch 'embed(16) lstm(32) linear(65)' " RUN " --save %s", path) == 0;
        CHECKF(trained, "nn train on text failed: %s", err_text);
        CHECKF(strstr(out_text, "val loss") && strstr(out_text, "final validation loss"), "%s", out_text);
    }
    return trained ? path : NULL;
}

static void test_same_seed_same_text(void) {
    const char *m = model();
    if (!m) return;
    static char first[sizeof out_text];
    CHECK(nn("generate --model %s --length 80 --seed 5 --prompt 'ROMEO:'", m) == 0);
    snprintf(first, sizeof first, "%s", out_text);
    CHECKF(strncmp(first, "ROMEO:", 6) == 0 && strlen(first) >= 80, "'%s'", first);
    CHECK(nn("generate --model %s --length 80 --seed 5 --prompt 'ROMEO:'", m) == 0 && strcmp(out_text, first) == 0);
    CHECK(nn("generate --model %s --length 80 --seed 6 --prompt 'ROMEO:'", m) == 0 && strcmp(out_text, first) != 0);
    CHECK(nn("generate --model %s --length 40 --temperature 0 --seed 1", m) == 0);
    snprintf(first, sizeof first, "%s", out_text);
    CHECK(nn("generate --model %s --length 40 --temperature 0 --seed 2", m) == 0 && strcmp(out_text, first) == 0);
}

static void test_names_one_per_line(void) {
    if (nn("train --data datasets/names/names.txt --arch 'embed(8) gru(16) linear(27)' " RUN " --save %s",
           tmp("names.safetensors")) != 0) {
        CHECKF(false, "nn train on names failed: %s", err_text);
        return;
    }
    CHECK(nn("generate --model %s --count 5 --length 30 --seed 3", tmp("names.safetensors")) == 0);
    int lines = 0;
    for (const char *p = out_text; *p; p++) lines += *p == '\n';
    CHECKF(lines == 5, "%d lines: '%s'", lines, out_text);
    for (const char *p = out_text; *p; p++) CHECKF(*p == '\n' || (*p >= 'a' && *p <= 'z'), "'%s'", out_text);
}

static void test_errors(void) {
    const char *m = model();
    if (!m) return;
    CHECK(nn("generate --model %s --prompt 'caf\xc3\xa9'", m) == 1 && one_line_error("U+00E9"));
    CHECK(nn("generate --length 10") == 2);
    CHECK(nn("generate --model %s --temperature -1", m) == 2);
    CHECK(nn("generate --model %s", tmp("missing.safetensors")) == 1 && one_line_error("missing.safetensors"));
    CHECK(nn("train --data " SHAKESPEARE " --epochs 3") == 2 && strstr(err_text, "--epochs is for images"));
    CHECK(nn("train --data " SHAKESPEARE " --arch 'embed(8) lstm(8) linear(10)' " RUN) == 2 &&
          strstr(err_text, "65 classes"));
    CHECK(nn("train --steps 10") == 2 && strstr(err_text, "--steps is for text"));
}

TEST_MAIN(TEST(test_same_seed_same_text), TEST(test_names_one_per_line), TEST(test_errors))
