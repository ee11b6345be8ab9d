/* The flag tables of cli/flags.h: parsing and --help. */
#include "flags.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "nn/core.h"
#include "nn/error.h"
#include "plot/plot.h"
#include "core/util.h"

int flag_picture(const char *value, void *target) {
    if (!nn_is_picture_path(value)) return nn_error("'%s' must end in .png or .svg", value);
    *(const char **)target = value;
    return 0;
}

const char *flag_display(const flag *f) {
    static char buf[64];
    snprintf(buf, sizeof buf, "--%s", f->name);
    return buf;
}

static bool is_flag(const flag *f) { return f->type != FLAG_HEADING; }

static const flag *find(const flag *table, const char *name, size_t len) {
    for (const flag *f = table; f->name; f++)
        if (is_flag(f) && strlen(f->name) == len && strncmp(f->name, name, len) == 0) return f;
    return NULL;
}

flag *flags_append(flag *table, const flag *more, size_t n) {
    size_t have = 0;
    while (table && table[have].name) have++;
    table = nn_xrealloc(table, (have + n + 1) * sizeof *table);
    memcpy(table + have, more, n * sizeof *table);
    table[have + n] = (flag)FLAG_END;
    return table;
}

bool flag_given(const flag *table, const char *name) {
    const flag *f = find(table, name, strlen(name));
    return f && f->given;
}

/* Levenshtein distance, for "did you mean". Names are short. */
static size_t distance(const char *a, size_t la, const char *b) {
    size_t lb = strlen(b), row[64];
    if (la >= 63 || lb >= 63) return 99;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int unknown(const char *cmd, const flag *table, const char *name, size_t len) {
    const flag *best = NULL;
    size_t best_d = 3; /* suggest only close names */
    for (const flag *f = table; f->name; f++) {
        if (!is_flag(f)) continue;
        size_t d = distance(name, len, f->name);
        if (d < best_d || (len >= 3 && strncmp(f->name, name, len) == 0 && !best)) best = f, best_d = d;
    }
    if (best) return usage_error(cmd, "unknown option '--%.*s' (did you mean --%s?)", (int)len, name, best->name);
    return usage_error(cmd, "unknown option '--%.*s'", (int)len, name);
}

/* The index of value among "a|b|c", or -1. */
static int choice_index(const char *choices, const char *value) {
    size_t n = strlen(value);
    int i = 0;
    for (const char *p = choices;; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, value, n) == 0) return i;
        if (!bar) return -1;
        p = bar + 1;
    }
}

/* Choice i of "a|b|c" into buf. */
static const char *choice_name(const char *choices, int i, char *buf, size_t cap) {
    const char *p = choices;
    for (int k = 0; k < i && p; k++) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p) return "?";
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    snprintf(buf, cap, "%.*s", (int)len, p);
    return buf;
}

static int set_value(const char *cmd, flag *f, const char *value) {
    char *end;
    errno = 0;
    switch (f->type) {
    case FLAG_INT:
    case FLAG_LONG: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < f->lo || v > f->hi)
            return usage_error(cmd, "--%s: '%s' is not an integer in [%.0f, %.0f]", f->name, value, f->lo, f->hi);
        if (f->type == FLAG_INT) *(int *)f->target = (int)v;
        else *(long *)f->target = v;
        return 0;
    }
    case FLAG_U64: {
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-' || (double)v < f->lo || (double)v > f->hi)
            return usage_error(cmd, "--%s: '%s' is not an integer in [%.0f, %.0f]", f->name, value, f->lo, f->hi);
        *(uint64_t *)f->target = (uint64_t)v;
        return 0;
    }
    case FLAG_FLOAT:
    case FLAG_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v) || v < f->lo || v > f->hi)
            return usage_error(cmd, "--%s: '%s' is not a number in [%g, %g]", f->name, value, f->lo, f->hi);
        if (f->type == FLAG_FLOAT) *(float *)f->target = (float)v;
        else *(double *)f->target = v;
        return 0;
    }
    case FLAG_STRING: *(const char **)f->target = value; return 0;
    case FLAG_CHOICE: {
        int i = choice_index(f->choices, value);
        if (i < 0) {
            char list[256];
            snprintf(list, sizeof list, "%s", f->choices);
            for (char *p = list; *p; p++)
                if (*p == '|') *p = ',';
            return usage_error(cmd, "--%s: unknown value '%s' (one of: %s)", f->name, value, list);
        }
        *(int *)f->target = i;
        return 0;
    }
    case FLAG_CUSTOM:
        if (f->parse(value, f->target) != 0) return usage_error(cmd, "--%s: %s", f->name, nn_last_error());
        return 0;
    case FLAG_SWITCH:
    case FLAG_HEADING: break;
    }
    return 0;
}

/* "(6)" from the flag's declared or current default; "" for none. */
static void default_text(const flag *f, char *buf, size_t cap) {
    buf[0] = 0;
    if (f->def) {
        if (f->def[0]) snprintf(buf, cap, " (%s)", f->def);
        return;
    }
    char name[64];
    switch (f->type) {
    case FLAG_INT: snprintf(buf, cap, " (%d)", *(int *)f->target); break;
    case FLAG_LONG: snprintf(buf, cap, " (%ld)", *(long *)f->target); break;
    case FLAG_FLOAT: snprintf(buf, cap, " (%g)", *(float *)f->target); break;
    case FLAG_DOUBLE: snprintf(buf, cap, " (%g)", *(double *)f->target); break;
    case FLAG_U64: snprintf(buf, cap, " (%llu)", (unsigned long long)*(uint64_t *)f->target); break;
    case FLAG_CUSTOM:
        if (f->show) snprintf(buf, cap, " (%s)", f->show(f->target));
        break;
    case FLAG_STRING:
        if (*(const char **)f->target) snprintf(buf, cap, " (%s)", *(const char **)f->target);
        break;
    case FLAG_CHOICE:
        snprintf(buf, cap, " (%s)", choice_name(f->choices, *(int *)f->target, name, sizeof name));
        break;
    default: break;
    }
}

void flags_help(FILE *out, const flag *table) {
    for (const flag *f = table; f->name; f++) {
        if (!is_flag(f)) {
            fprintf(out, "%s\n", f->name);
            continue;
        }
        char left[128], def[128];
        const char *meta = f->type == FLAG_CHOICE ? f->choices : f->metavar ? f->metavar : "X";
        if (f->type == FLAG_SWITCH) snprintf(left, sizeof left, "  --%s", f->name);
        else snprintf(left, sizeof left, "  --%s %s", f->name, meta);
        default_text(f, def, sizeof def);
        /* The help's first line beside the flag (or under it when the flag is
         * long), the default after the last line. */
        const char *help = f->help ? f->help : "";
        int col = 26;
        if ((int)strlen(left) >= col - 1) {
            fprintf(out, "%s\n%*s", left, col, "");
        } else {
            fprintf(out, "%-*s", col, left);
        }
        for (const char *p = help;;) {
            const char *nl = strchr(p, '\n');
            if (!nl) {
                fprintf(out, "%s%s\n", p, def);
                break;
            }
            fprintf(out, "%.*s\n%*s", (int)(nl - p), p, col, "");
            p = nl + 1;
        }
    }
    fprintf(out, "  -h, --help              this help\n");
}

int flags_parse(const char *cmd, flag *table, int argc, char **argv, const char *usage, const char *epilogue,
                int *positional) {
    for (flag *f = table; f->name; f++) f->given = false;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            if (usage) fputs(usage, stdout);
            flags_help(stdout, table);
            if (epilogue) fputs(epilogue, stdout);
            return 0;
        }
    int n_pos = 0;
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        if (only_positional || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (!positional) return usage_error(cmd, "unexpected argument '%s'", arg);
            argv[1 + n_pos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = true;
            continue;
        }
        if (arg[1] != '-') return usage_error(cmd, "unknown option '%s' (options are --name)", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        flag *f = (flag *)find(table, name, len);
        if (!f) return unknown(cmd, table, name, len);
        f->given = true;
        if (f->type == FLAG_SWITCH) {
            if (eq) return usage_error(cmd, "--%s takes no value (got '%s')", f->name, eq + 1);
            *(bool *)f->target = true;
            continue;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else {
            /* A missing value, not an unknown option: "--lr" at the end, or
             * "--lr --epochs 3". A negative number is a value. */
            if (i + 1 >= argc || (argv[i + 1][0] == '-' && argv[i + 1][1] == '-'))
                return usage_error(cmd, "--%s needs a value (%s)", f->name,
                                   f->type == FLAG_CHOICE ? f->choices : f->metavar ? f->metavar : "X");
            value = argv[++i];
        }
        if (set_value(cmd, f, value) != 0) return EXIT_USAGE;
    }
    if (positional) *positional = n_pos;
    return -1;
}
