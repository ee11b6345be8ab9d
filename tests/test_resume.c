/* Nothing is lost: a run stopped by SIGINT or killed by SIGKILL and resumed
 * ends with weights bit-identical to an uninterrupted run's; a checkpoint
 * write that fails reports the path and errno text and leaves the previous
 * checkpoint intact. */
#include <signal.h>
#include <sys/stat.h>

#include "check.h"
#include "run_nn.h"
#include "nn/model.h"

#define RUN "--train-limit 12000 --epochs 3 --hidden 256 --opt adamw --dropout 0.2 --batch-size 64 --seed 7"
#define STEPS_PER_EPOCH 188 /* 12000 / 64, rounded up */

/* True when both checkpoints hold the same model tensors (parameters and
 * running statistics), bit for bit. */
static bool same_weights(const char *a, const char *b) {
    nn_model ma, mb;
    if (nn_model_load(&ma, a) != 0) return false;
    if (nn_model_load(&mb, b) != 0) {
        nn_model_free(&ma);
        return false;
    }
    bool same = ma.params.count == mb.params.count && ma.state.count == mb.state.count &&
                memcmp(ma.params.data, mb.params.data, ma.params.count * sizeof(float)) == 0 &&
                (ma.state.count == 0 || memcmp(ma.state.data, mb.state.data, ma.state.count * sizeof(float)) == 0);
    nn_model_free(&ma);
    nn_model_free(&mb);
    return same;
}

static const char *reference(void) {
    static bool done;
    if (!done) {
        int rc = nn("train " RUN " --save %s", tmp("full.safetensors"));
        CHECKF(rc == 0, "uninterrupted run exited %d: %s", rc, err_text);
        done = true;
    }
    return tmp("full.safetensors");
}

/* Runs the training with the signal raised by the process itself after the
 * given step (NN_TEST_RAISE; a timer outside the process missed the epoch on
 * a fast machine and the whole run on a busy one). Returns the exit status,
 * 128 + the signal when it killed the process. */
static int run_and_signal(const char *save, long step, int sig) {
    char raise_at[64];
    snprintf(raise_at, sizeof raise_at, "NN_TEST_RAISE=%ld:%d ", step, sig);
    return nn_limited(raise_at, "train " RUN " --save %s", save);
}

static void test_sigint_mid_epoch_then_resume(void) {
    if (!have_mnist()) return;
    const char *full = reference();
    /* Interrupted 90 steps into epoch 2: the checkpoint records the position. */
    int rc = run_and_signal(tmp("int.safetensors"), STEPS_PER_EPOCH + 90, SIGINT);
    CHECKF(rc == 130, "interrupted run exited %d: %s", rc, err_text);
    CHECKF(one_line_error("interrupted at epoch 2, step 90; resumable checkpoint saved to ") &&
               strstr(err_text, "; resume with nn train --resume "),
           "%s", err_text);
    /* The file holds every setting: one that contradicts it is named, and
     * the checkpoint is left as it was. */
    rc = nn("train --resume %s --lr 0.5", tmp("int.safetensors"));
    CHECKF(rc == 1 && one_line_error("was trained with learning rate 0.001; this run asks for 0.5"), "exited %d: %s",
           rc, err_text);
    rc = nn("train --resume %s --opt adam", tmp("int.safetensors"));
    CHECKF(rc == 1 && one_line_error("was trained with optimiser adamw; this run asks for adam"), "exited %d: %s",
           rc, err_text);
    rc = nn("train --resume %s --train-limit 11999", tmp("int.safetensors"));
    CHECKF(rc == 1 && one_line_error("training images"), "exited %d: %s", rc, err_text);
    rc = nn("train --resume %s --hidden 64", tmp("int.safetensors"));
    CHECKF(rc == 1 && one_line_error("holds the model"), "exited %d: %s", rc, err_text);
    /* Settings given with the file's own values are fine. */
    rc = nn("train --resume %s --epochs 3 --lr 0.001 --opt adamw", tmp("int.safetensors"));
    CHECKF(rc == 0, "resume exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "resuming from") != NULL);
    CHECK(strstr(out_text, "epoch  2/3") != NULL && strstr(out_text, "epoch  1/3") == NULL);
    CHECKF(same_weights(full, tmp("int.safetensors")), "resumed weights differ from the uninterrupted run's");
}

static void test_sigkill_then_resume(void) {
    if (!have_mnist()) return;
    const char *full = reference();
    /* Killed mid-epoch 2: only epoch 1's checkpoint exists. */
    int rc = run_and_signal(tmp("kill.safetensors"), STEPS_PER_EPOCH + 50, SIGKILL);
    CHECKF(rc == 128 + SIGKILL, "killed run exited %d", rc);
    nn_model m;
    CHECKF(nn_model_load(&m, tmp("kill.safetensors")) == 0, "checkpoint after SIGKILL does not load: %s",
           nn_last_error());
    nn_model_free(&m);
    rc = nn("train --resume %s", tmp("kill.safetensors"));
    CHECKF(rc == 0, "resume exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "epoch  2/3") != NULL && strstr(out_text, "epoch  1/3") == NULL);
    CHECKF(same_weights(full, tmp("kill.safetensors")), "resumed weights differ from the uninterrupted run's");
}

/* Weight averaging and input dropout carry more state: the average and the
 * raw weights under it, and another use of the dropout generator. */
static void test_resume_with_weight_average(void) {
    if (!have_mnist()) return;
#define AVG_RUN "--train-limit 6000 --epochs 2 --hidden 128 --ema 0.99 --input-dropout 0.2 --seed 3"
    int rc = nn("train " AVG_RUN " --save %s", tmp("avg_full.safetensors"));
    CHECKF(rc == 0, "uninterrupted run exited %d: %s", rc, err_text);
    /* 47 steps per epoch: stop 10 steps into epoch 2. */
    rc = nn_limited("NN_TEST_RAISE=57:2", "train " AVG_RUN " --save %s", tmp("avg_int.safetensors"));
    CHECKF(rc == 130 && one_line_error("interrupted at epoch 2, step 10"), "exited %d: %s", rc, err_text);
    rc = nn("train --resume %s", tmp("avg_int.safetensors"));
    CHECKF(rc == 0, "resume exited %d: %s", rc, err_text);
    CHECKF(same_weights(tmp("avg_full.safetensors"), tmp("avg_int.safetensors")),
           "resumed weights differ from the uninterrupted run's");
    /* The saved model is the average, not the raw weights. */
    nn_safetensors st;
    CHECK(nn_st_load(&st, tmp("avg_full.safetensors")) == 0);
    const nn_st_tensor *raw = nn_st_find(&st, "train.raw");
    nn_model m;
    CHECK(raw != NULL && nn_model_load(&m, tmp("avg_full.safetensors")) == 0);
    if (raw) {
        float *w = malloc(m.params.count * sizeof(float));
        int64_t count = (int64_t)m.params.count;
        CHECK(nn_st_read_f32(&st, "train.raw", 1, &count, w) == 0);
        CHECK(memcmp(w, m.params.data, m.params.count * sizeof(float)) != 0);
        free(w);
    }
    nn_model_free(&m);
    nn_st_free(&st);
}

/* A CNN carries BatchNorm's running statistics and the augmentation
 * generator on top of dropout's. */
static void test_resume_cnn(void) {
    if (!have_mnist()) return;
#define CNN_RUN                                                                                                   \
    "--arch 'conv(4,3) batchnorm relu maxpool(2) flatten dropout(0.2) linear(10)' --augment --opt adam "          \
    "--train-limit 3000 --epochs 2 --batch-size 100 --seed 5"
    int rc = nn("train " CNN_RUN " --save %s", tmp("cnn_full.safetensors"));
    CHECKF(rc == 0, "uninterrupted run exited %d: %s", rc, err_text);
    /* 30 steps per epoch: stop 10 steps into epoch 2. */
    rc = nn_limited("NN_TEST_RAISE=40:2", "train " CNN_RUN " --save %s", tmp("cnn_int.safetensors"));
    CHECKF(rc == 130 && one_line_error("interrupted at epoch 2, step 10"), "exited %d: %s", rc, err_text);
    rc = nn("train --resume %s", tmp("cnn_int.safetensors"));
    CHECKF(rc == 0, "resume exited %d: %s", rc, err_text);
    CHECKF(same_weights(tmp("cnn_full.safetensors"), tmp("cnn_int.safetensors")),
           "resumed CNN differs from the uninterrupted run's");
    /* Without augmentation the run is a different one: the weights differ. */
    rc = nn("train --arch 'conv(4,3) batchnorm relu maxpool(2) flatten dropout(0.2) linear(10)' --opt adam "
            "--train-limit 3000 --epochs 2 --batch-size 100 --seed 5 --save %s",
            tmp("cnn_plain.safetensors"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECK(!same_weights(tmp("cnn_full.safetensors"), tmp("cnn_plain.safetensors")));
    /* Resuming with another model is refused, naming both. */
    rc = nn_limited("NN_TEST_RAISE=40:2", "train " CNN_RUN " --save %s", tmp("cnn_int.safetensors"));
    rc = nn("train --resume %s --arch 'conv(8,3) relu flatten linear(10)'", tmp("cnn_int.safetensors"));
    CHECKF(rc == 1 && one_line_error("holds the model 'conv(4,3) batchnorm"), "exited %d: %s", rc, err_text);
}

static void test_resume_errors(void) {
    CHECK(nn("train --resume %s", tmp("missing.safetensors")) == 1);
    CHECKF(one_line_error("missing.safetensors"), "%s", err_text);
    /* A model checkpoint without training state cannot be resumed. */
    nn_model m;
    nn_rng r;
    nn_rng_seed(&r, 1, 1);
    CHECK(nn_model_init(&m, "flatten linear(10)", (int[]){1, 28, 28}, 10, &r) == 0);
    CHECK(nn_model_save(&m, tmp("plain.safetensors")) == 0);
    nn_model_free(&m);
    CHECK(nn("train --resume %s", tmp("plain.safetensors")) == 1);
    CHECKF(one_line_error("not a resumable checkpoint"), "%s", err_text);
}

static void test_failed_write_keeps_previous(void) {
    if (!have_mnist()) return;
    const char *save = tmp("keep.safetensors");
    CHECK(nn("train --train-limit 2000 --epochs 1 --hidden 200 --save %s", save) == 0);
    struct stat before;
    CHECK(stat(save, &before) == 0);
    char *old = malloc((size_t)before.st_size), *now = malloc((size_t)before.st_size);
    FILE *f = fopen(save, "rb");
    CHECK(f && fread(old, 1, (size_t)before.st_size, f) == (size_t)before.st_size);
    if (f) fclose(f);
    /* A file-size limit below the checkpoint's size makes the write fail
     * half-way (EFBIG), like a full disk. */
    int rc = nn_limited("trap '' XFSZ; ulimit -f 64;", "train --train-limit 2000 --epochs 1 --hidden 200 --seed 2 --save %s",
                        save);
    CHECK(rc == 1);
    CHECKF(one_line_error(save) && strstr(err_text, "File too large"), "%s", err_text);
    f = fopen(save, "rb");
    CHECK(f && fread(now, 1, (size_t)before.st_size, f) == (size_t)before.st_size);
    if (f) fclose(f);
    CHECKF(memcmp(old, now, (size_t)before.st_size) == 0, "the previous checkpoint was modified");
    free(old);
    free(now);
    /* A folder that does not exist. */
    rc = nn("train --train-limit 500 --epochs 1 --hidden 8 --save %s", tmp("no/such/dir/m.safetensors"));
    CHECK(rc == 1);
    CHECKF(one_line_error("no/such/dir/m.safetensors") && strstr(err_text, "No such file or directory"), "%s",
           err_text);
}

TEST_MAIN(TEST(test_sigint_mid_epoch_then_resume), TEST(test_sigkill_then_resume), TEST(test_resume_with_weight_average), TEST(test_resume_cnn), TEST(test_resume_errors),
          TEST(test_failed_write_keeps_previous))
