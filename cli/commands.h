/* The subcommands of the nn tool, and the small helpers they share. Each
 * command returns the process exit status: 0 success, 1 runtime error,
 * 2 usage error. */
#ifndef NN_CLI_COMMANDS_H
#define NN_CLI_COMMANDS_H

#include <signal.h>
#include <stdbool.h>

#include "nn/train.h"

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_experiment(int argc, char **argv);
int cmd_linreg(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_generate(int argc, char **argv);

#define EXIT_USAGE 2

/* Prints "nn CMD: MESSAGE" and a hint to run --help to stderr; returns 2. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "nn: error: <last library error>" to stderr; returns 1. */
int runtime_error(void);

/* "1024,512" -> widths (each 1..65536; "" or "none" = 0 widths) in *out,
 * allocated (the caller frees it; NULL for none); returns the count, or -1
 * if malformed. */
int parse_widths(const char *s, int **out);

/* Ctrl-C during a long run: catch_sigint makes the first SIGINT set
 * stop_requested (cleared here) and restores the default action, so a second
 * one kills at once; release_sigint puts back the handler saved in *old. */
extern volatile sig_atomic_t stop_requested;
void catch_sigint(struct sigaction *old);
void release_sigint(const struct sigaction *old);

/* Sets the thread count of both OpenMP and OpenBLAS (0 = leave the default). */
void set_threads(int n);

/* nn train on text (cli/train_text.c): whether --dataset names a text data
 * set, whether a --data path holds text rather than IDX images, and the run
 * itself (a language model by steps, or a classifier by epochs; arch: the
 * whole spec, else body (a preset's layers, NULL: the default's) and an
 * output layer sized by the data; plot_path may be NULL); returns the exit
 * status. */
bool is_text_dataset(const char *dataset);
bool is_text_path(const char *path);
int train_text(nn_train_config *cfg, const char *arch, const char *body, const char *path, const char *plot_path);
/* For every nn train run (cli/cmd_train.c): the error of a run that failed,
 * with what to do about it on this command line; returns the exit status.
 * And for the kill-and-resume tests: NN_TEST_RAISE=STEP:SIGNAL makes the
 * run send itself SIGNAL after optimiser step STEP. */
int train_run_error(nn_train_status rc, const nn_train_config *cfg);
void raise_for_tests(long step);

/* Resolves --dataset/--data into a folder; NULL with a usage error printed
 * for an unknown dataset name. */
const char *dataset_dir(const char *cmd, const char *dataset, const char *data_dir);
/* After a failed load: prints the error and, when files are missing, how to
 * fetch them (or what --data DIR must hold). Returns 1. */
int data_error(const char *dataset, const char *data_dir);

#endif
