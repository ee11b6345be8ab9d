/* nn: the command-line tool. Dispatches to one subcommand per file. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "nn/version.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"train", cmd_train, "train a digit classifier (MLP or CNN) on MNIST, or a character language model on text"},
    {"eval", cmd_eval, "evaluate a checkpoint: test accuracy, per-class accuracy, confusion matrix"},
    {"predict", cmd_predict, "classify your own PNG/PGM digit images with a checkpoint"},
    {"experiment", cmd_experiment, "train several configurations the same way and compare them"},
    {"linreg", cmd_linreg, "linear regression by gradient descent, checked against least squares"},
    {"serve", cmd_serve, "a web page to draw a digit on and watch the model read it; POST /predict"},
    {"export", cmd_export, "write a checkpoint as an ONNX file, to run the model in other runtimes"},
    {"generate", cmd_generate, "write text with a language model trained on text, streamed as it is made"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: nn COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'nn COMMAND --help' describes each command's options; 'nn --version' the version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("nn %s\n", nn_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "nn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
