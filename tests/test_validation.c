/* --val-split and --early-stop: the validation slice is held out of
 * training, the metrics gain its columns after the standard eight, an early
 * stop comes exactly N epochs after the last improvement, and the checkpoint
 * holds the best epoch's weights (whatever the run's trajectory was). */
#include "check.h"
#include "run_nn.h"

/* Reads the metrics CSV into rows of up to 10 numbers; returns the rows. */
static int read_metrics(const char *path, char *header, size_t cap, double rows[][10], int max_rows) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    if (!fgets(header, (int)cap, f)) header[0] = 0;
    char line[512];
    while (n < max_rows && fgets(line, sizeof line, f)) {
        double *r = rows[n];
        if (sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6],
                   &r[7], &r[8], &r[9]) == 10)
            n++;
    }
    fclose(f);
    return n;
}

static void test_columns_and_best_checkpoint(void) {
    if (!have_mnist()) return;
    int rc = nn("train --train-limit 3000 --epochs 4 --hidden 64 --val-split 0.2 --metrics %s --save %s",
                tmp("v.csv"), tmp("v.safetensors"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "2400 train, 600 validation") != NULL);
    char header[512];
    double rows[8][10];
    int n = read_metrics(tmp("v.csv"), header, sizeof header, rows, 8);
    CHECKF(strcmp(header, "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,images_per_sec,val_loss,val_acc\n") == 0,
           "header: %s", header);
    CHECKF(n == 4, "%d rows", n);
    /* The checkpoint's test accuracy is the best validation epoch's. */
    int best = 0;
    for (int i = 1; i < n; i++)
        if (rows[i][9] > rows[best][9]) best = i;
    rc = nn("eval --model %s", tmp("v.safetensors"));
    double acc = -1;
    const char *at = strstr(out_text, "test accuracy ");
    CHECKF(rc == 0 && at && sscanf(at, "test accuracy %lf%%", &acc) == 1, "eval: %s%s", out_text, err_text);
    CHECKF(n > 0 && fabs(acc / 100 - rows[best][4]) < 1e-4, "checkpoint %.2f%%, best epoch %d had %.2f%%", acc,
           best + 1, n > 0 ? 100 * rows[best][4] : 0.0);
}

static void test_early_stop(void) {
    if (!have_mnist()) return;
    /* With lr 0 the validation accuracy never improves after epoch 1, so
     * --early-stop 2 ends the run after epoch 3 of 6. */
    int rc = nn("train --train-limit 2000 --epochs 6 --hidden 32 --lr 0 --val-split 0.2 --early-stop 2 --metrics %s",
                tmp("es.csv"));
    CHECKF(rc == 0, "exited %d: %s", rc, err_text);
    CHECK(strstr(out_text, "early stop: no validation improvement for 2 epochs (best: epoch 1") != NULL);
    char header[512];
    double rows[8][10];
    CHECK(read_metrics(tmp("es.csv"), header, sizeof header, rows, 8) == 3);
    /* --early-stop needs a validation set. */
    CHECK(nn("train --early-stop 2") == 2);
    CHECKF(strstr(err_text, "needs a validation set") != NULL, "%s", err_text);
}

TEST_MAIN(TEST(test_columns_and_best_checkpoint), TEST(test_early_stop))
