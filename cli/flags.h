/* Command-line flags from one table per command: each flag is declared once
 * (name, type, range, default, help), writes straight into its target (a
 * field of the library's config where there is one), and both the parser
 * and --help come from that declaration.
 *
 *   nn_train_config cfg = nn_train_config_defaults();
 *   flag table[] = {
 *       FLAG_SECTION("training:"),
 *       {"epochs", FLAG_INT, &cfg.epochs, .lo = 1, .hi = 100000, .metavar = "N", .help = "passes over the data"},
 *       {"opt", FLAG_CUSTOM, &cfg.opt.kind, .parse = parse_optim, .show = show_optim,
 *        .metavar = "sgd|momentum|nesterov|adam|adamw", .help = "optimiser"},
 *       FLAG_END,
 *   };
 *   int rc = flags_parse("train", table, argc, argv, usage, epilogue, NULL); // -1: go on, else exit with rc
 *
 * where parse_optim and show_optim come from
 * FLAG_ENUM_FUNCS(optim, nn_optim_kind, nn_optim_parse, nn_optim_name): a
 * library enum is parsed and shown by the library's own name table.
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
    FLAG_U64,    /* uint64_t, within [lo, hi] */
    FLAG_STRING, /* const char *, the argument itself */
    FLAG_CHOICE, /* int: the index of the value in choices ("none|layer"), for the program's own
                  * choices; a library enum is a FLAG_CUSTOM with its parser (FLAG_ENUM_FUNCS) */
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
    const char *(*show)(const void *target); /* FLAG_CUSTOM: the target's value for --help's default */
    const char *metavar;   /* "N", "FILE"; choices are shown for FLAG_CHOICE */
    const char *help;      /* may hold '\n' for more lines */
    const char *def;       /* the default as shown; NULL = the target's value before parsing, "" = none shown */
    bool given;            /* set by flags_parse: the flag was on the command line */
} flag;

#define FLAG_SECTION(text) {.name = (text), .type = FLAG_HEADING}
#define FLAG_END {0}

/* parse_TAG and show_TAG for a FLAG_CUSTOM whose target is a library enum
 * TYPE, from the library's parser (0, or -1 with the error) and namer. */
#define FLAG_ENUM_FUNCS(tag, type, parse_fn, name_fn)                                                          \
    static int parse_##tag(const char *value, void *target) { return parse_fn(value, (type *)target); }        \
    static const char *show_##tag(const void *target) { return name_fn(*(const type *)target); }

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

/* A table grown section by section: table (NULL, or ending in FLAG_END, from
 * an earlier call) with the n flags of more appended, ending in FLAG_END;
 * the caller frees the result. */
flag *flags_append(flag *table, const flag *more, size_t n);

/* Whether the flag `name` was given (false for a name not in the table). */
bool flag_given(const flag *table, const char *name);

/* A FLAG_CUSTOM parser for a picture's path: it must end in .png or .svg. */
int flag_picture(const char *value, void *target);

/* The flag's name as the user wrote it ("--epochs"), for messages. */
const char *flag_display(const flag *f);

#endif
