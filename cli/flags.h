/* Command-line flags from one table per command: each flag is declared once
 * (name, type, range, default, help) and both the parser and --help come from
 * that declaration.
 *
 *   static int epochs = 6;
 *   flag table[] = {
 *       FLAG_SECTION("training:"),
 *       {"epochs", FLAG_INT, &epochs, .lo = 1, .hi = 100000, .metavar = "N", .help = "passes over the data"},
 *       FLAG_END,
 *   };
 *   int rc = flags_parse("train", table, argc, argv, &first_arg);   // -1: go on
 *
 * Values are given as --name VALUE or --name=VALUE. Every usage error says
 * what is wrong: an unknown flag (with the closest known one), a flag given
 * without its value, a value out of range or not one of the choices, a value
 * given to a switch. */
#ifndef NN_CLI_FLAGS_H
#define NN_CLI_FLAGS_H

#include <stdbool.h>
#include <stdio.h>

typedef enum flag_type {
    FLAG_SWITCH, /* no value: sets a bool to true */
    FLAG_INT,    /* int, within [lo, hi] */
    FLAG_LONG,   /* long, within [lo, hi] */
    FLAG_FLOAT,  /* float, within [lo, hi] */
    FLAG_DOUBLE, /* double, within [lo, hi] */
    FLAG_STRING, /* const char *, the argument itself */
    FLAG_CHOICE, /* int: the index of the value in choices ("ce|mse") */
    FLAG_CUSTOM, /* parse(value, target): 0, or -1 with the reason in nn_last_error() */
    FLAG_HEADING /* not a flag: a line of the help ("model:") */
} flag_type;

typedef struct flag {
    const char *name; /* without the dashes */
    flag_type type;
    void *target;
    double lo, hi;         /* FLAG_INT .. FLAG_DOUBLE */
    const char *choices;   /* FLAG_CHOICE: "relu|gelu|sigmoid|tanh" */
    int (*parse)(const char *value, void *target);
    const char *metavar;   /* "N", "FILE"; choices are shown for FLAG_CHOICE */
    const char *help;      /* may hold '\n' for more lines */
    const char *def;       /* the default as shown; NULL = the target's value before parsing, "" = none shown */
    bool given;            /* set by flags_parse: the flag was on the command line */
} flag;

#define FLAG_SECTION(text) {.name = (text), .type = FLAG_HEADING}
#define FLAG_END {0}

/* Parses argv[1..] against the table, in order (a later value replaces an
 * earlier one). Positional arguments are allowed only when `positional` is
 * not NULL: then they are moved, in order, to argv[1..*positional] and
 * *positional is their count. Returns -1 to go on, 0 after printing help
 * (-h/--help; `usage` first, then the table, then `epilogue`), or 2 after
 * printing a usage error. */
int flags_parse(const char *cmd, flag *table, int argc, char **argv, const char *usage, const char *epilogue,
                int *positional);

/* The table's options as --help shows them. */
void flags_help(FILE *out, const flag *table);

/* Whether the flag `name` was given (false for a name not in the table). */
bool flag_given(const flag *table, const char *name);

/* A FLAG_CUSTOM parser for a picture's path: it must end in .png or .svg. */
int flag_picture(const char *value, void *target);

/* The flag's name as the user wrote it ("--epochs"), for messages. */
const char *flag_display(const flag *f);

#endif
