/* Trains a small CNN on MNIST through nn's public API, with the training
 * loop written out: a model from a spec, the data loader, forward, loss,
 * backward, an optimiser with a learning-rate schedule, evaluation and a
 * checkpoint. (nn_train in nn/train.h does all this, and more, in one call.)
 *
 *   cc train.c $(pkg-config --cflags --libs nn) -o train
 *   ./train data/mnist cnn.safetensors [EPOCHS [TRAIN_IMAGES]]
 *   nn eval --model cnn.safetensors
 */
#include <stdio.h>
#include <stdlib.h>

#include <nn.h>

#define SPEC "conv(16,3) batchnorm relu maxpool(2) conv(32,3) batchnorm relu maxpool(2) flatten dropout(0.2) linear(10)"
#define BATCH 64
#define SEED 1

static int fail(const char *what) {
    fprintf(stderr, "train: %s: %s\n", what, nn_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s DATA_DIR OUT.safetensors [EPOCHS [TRAIN_IMAGES]]\n", argv[0]);
        return 2;
    }
    int epochs = argc > 3 ? atoi(argv[3]) : 2, limit = argc > 4 ? atoi(argv[4]) : 0;
    if (epochs < 1 || limit < 0) {
        fprintf(stderr, "train: EPOCHS must be >= 1 and TRAIN_IMAGES >= 0\n");
        return 2;
    }

    /* The data: the train and t10k splits, normalised with the training set's statistics. */
    nn_dataset train, test;
    if (nn_dataset_load(&train, argv[1], "train") != 0) return fail("loading the training set");
    if (nn_dataset_load(&test, argv[1], "t10k") != 0) return fail("loading the test set");
    if (limit > 0) nn_dataset_limit(&train, limit);
    float mean, std;
    nn_dataset_mean_std(&train, &mean, &std);
    nn_loader loader;
    nn_loader_init(&loader, &train, BATCH, 1, SEED, mean, std);

    /* The model, initialised from a seeded generator, and what trains it. */
    nn_rng init_rng, dropout_rng;
    nn_rng_seed(&init_rng, SEED, 1);
    nn_rng_seed(&dropout_rng, SEED, 2);
    nn_model model;
    if (nn_model_init(&model, SPEC, (int[]){1, train.rows, train.cols}, NN_DATA_CLASSES, &init_rng) != 0)
        return fail("building the model");
    model.input_mean = mean; /* saved with the weights, for inference */
    model.input_std = std;
    nn_model_summary(&model, stdout);
    nn_optim_config oc = nn_optim_defaults(NN_OPT_ADAMW);
    nn_optim opt;
    nn_optim_init(&opt, &model.params, &oc);
    nn_schedule sched = {.kind = NN_SCHED_COSINE, .base_lr = 2e-3f, .warmup = 100,
                         .total_steps = (long)epochs * (train.n / BATCH)};

    nn_ctx *ctx = nn_ctx_new(0); /* the arena and the tape of one step */
    int labels[BATCH];
    long step = 0;
    for (int epoch = 1; epoch <= epochs; epoch++) {
        nn_loader_start_epoch(&loader);
        double loss_sum = 0.0;
        long seen = 0;
        for (;;) {
            nn_ctx_reset(ctx);
            nn_tensor *x = nn_input(ctx, "x", 4, (int[]){BATCH, 1, train.rows, train.cols});
            /* Whole batches only: the last, partial one is dropped. */
            if (nn_loader_next(&loader, x->data, labels) < BATCH) break;
            nn_tensor *logits = nn_model_forward(&model, ctx, x, &dropout_rng);
            nn_tensor *loss = nn_cross_entropy(ctx, logits, labels, 0.0f);
            nn_params_zero_grad(&model.params);
            nn_backward(ctx, loss);
            nn_optim_step(&opt, nn_schedule_lr(&sched, step++));
            loss_sum += loss->data[0] * BATCH;
            seen += BATCH;
        }
        double accuracy = nn_evaluate(&model, ctx, &test, NN_LOSS_CE, NULL, NULL);
        printf("epoch %d/%d: train loss %.4f, test accuracy %.2f%%\n", epoch, epochs, loss_sum / seen,
               100.0 * accuracy);
        fflush(stdout);
    }
    int rc = nn_model_save(&model, argv[2]) == 0 ? 0 : fail("saving");
    if (rc == 0) printf("saved %s\n", argv[2]);

    nn_ctx_free(ctx);
    nn_optim_free(&opt);
    nn_loader_free(&loader);
    nn_model_free(&model);
    nn_dataset_free(&train);
    nn_dataset_free(&test);
    return rc;
}
