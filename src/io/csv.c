/* CSV tables with a header row: parsed once into NUL-terminated cells, turned
 * into numbers column by column with every cell checked. See nn/csv.h. */
#include "nn/csv.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "core/util.h"

/* Growable array of cell pointers. */
typedef struct {
    char **v;
    size_t n, cap;
} ptr_vec;

static void ptr_push(ptr_vec *a, char *p) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->v = nn_xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = p;
}

typedef struct {
    long *v;
    size_t n, cap;
} long_vec;

static void long_push(long_vec *a, long x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->v = nn_xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = x;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* The parser's position in the input and where cell text is copied to. */
typedef struct {
    const char *in;
    size_t len, pos;
    long line; /* 1-based line of `pos` */
    char *out; /* next free byte of the cell store */
} cursor;

/* True when the rest of the current line is blank (spaces, tabs, CR). */
static bool rest_of_line_blank(const cursor *c) {
    for (size_t p = c->pos; p < c->len && c->in[p] != '\n'; p++)
        if (!is_blank(c->in[p]) && c->in[p] != '\r') return false;
    return true;
}

/* Reads one field starting at c->pos into the cell store, stopping before the
 * ',' or '\n' that ends it (or at the end of the input). Returns the cell, or
 * NULL with the error set. */
static char *read_field(cursor *c, const char *source, long record_line) {
    char *cell = c->out;
    while (c->pos < c->len && is_blank(c->in[c->pos])) c->pos++;
    if (c->pos < c->len && c->in[c->pos] == '"') {
        c->pos++;
        for (;;) {
            if (c->pos >= c->len) {
                nn_error("%s: line %ld: unterminated quoted field", source, record_line);
                return NULL;
            }
            char ch = c->in[c->pos++];
            if (ch == '"') {
                if (c->pos < c->len && c->in[c->pos] == '"') {
                    *c->out++ = '"';
                    c->pos++;
                    continue;
                }
                break;
            }
            if (ch == '\n') c->line++;
            *c->out++ = ch;
        }
        while (c->pos < c->len && (is_blank(c->in[c->pos]) || c->in[c->pos] == '\r')) c->pos++;
        if (c->pos < c->len && c->in[c->pos] != ',' && c->in[c->pos] != '\n') {
            nn_error("%s: line %ld: unexpected character after a closing quote", source, c->line);
            return NULL;
        }
    } else {
        while (c->pos < c->len && c->in[c->pos] != ',' && c->in[c->pos] != '\n') *c->out++ = c->in[c->pos++];
        while (c->out > cell && (is_blank(c->out[-1]) || c->out[-1] == '\r')) c->out--;
    }
    *c->out++ = '\0';
    return cell;
}

int nn_csv_parse(nn_csv *t, const char *text, size_t len, const char *source) {
    memset(t, 0, sizeof *t);
    t->source = source;
    if (len > NN_CSV_MAX_BYTES)
        return nn_error("%s: too large (%zu bytes, limit %zu)", source, len, NN_CSV_MAX_BYTES);
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        long line = 1;
        for (const char *p = text; p < nul; p++) line += *p == '\n';
        return nn_error("%s: line %ld: contains a NUL byte (not a text file?)", source, line);
    }

    /* Every cell is at most as long as its text plus a terminating NUL, and
     * each NUL takes the place of the ',' or '\n' after the field, so the
     * store needs at most len + 1 bytes (+1 for an empty input). */
    cursor c = {text, len, 0, 1, nn_xmalloc(len + 2)};
    char *store = c.out;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) c.pos = 3; /* UTF-8 byte-order mark */

    ptr_vec cells = {0};
    long_vec lines = {0};
    int n_cols = 0;
    long n_records = 0;
    while (c.pos < c.len) {
        if (rest_of_line_blank(&c)) {
            while (c.pos < c.len && c.in[c.pos] != '\n') c.pos++;
            if (c.pos < c.len) c.pos++, c.line++;
            continue;
        }
        long record_line = c.line;
        long n_fields = 0;
        for (;;) {
            char *cell = read_field(&c, source, record_line);
            if (!cell) goto fail;
            if (++n_fields > NN_CSV_MAX_COLS) {
                nn_error("%s: line %ld: more than %d fields", source, record_line, NN_CSV_MAX_COLS);
                goto fail;
            }
            ptr_push(&cells, cell);
            if (c.pos < c.len && c.in[c.pos] == ',') {
                c.pos++;
                continue;
            }
            if (c.pos < c.len) c.pos++, c.line++; /* the '\n' */
            break;
        }
        if (n_records == 0) {
            n_cols = (int)n_fields;
        } else {
            if (n_fields != n_cols) {
                nn_error("%s: row %ld (line %ld): %ld field%s, expected %d as in the header", source, n_records,
                         record_line, n_fields, n_fields == 1 ? "" : "s", n_cols);
                goto fail;
            }
            long_push(&lines, record_line);
        }
        n_records++;
    }
    if (n_records == 0) {
        nn_error("%s: empty (no header row)", source);
        goto fail;
    }
    if (n_records == 1) {
        nn_error("%s: no data rows after the header", source);
        goto fail;
    }
    t->n_cols = n_cols;
    t->n_rows = n_records - 1;
    t->header = cells.v;
    t->cells = cells.v + n_cols;
    t->line = lines.v;
    t->text = store;
    return 0;

fail:
    free(cells.v);
    free(lines.v);
    free(store);
    memset(t, 0, sizeof *t);
    return -1;
}

int nn_csv_load(nn_csv *t, const char *path) {
    size_t len;
    memset(t, 0, sizeof *t);
    unsigned char *text = nn_read_file(path, &len, NN_CSV_MAX_BYTES);
    if (!text) return -1;
    int rc = nn_csv_parse(t, (const char *)text, len, path);
    free(text);
    return rc;
}

void nn_csv_free(nn_csv *t) {
    free(t->header); /* the cells live in the same array */
    free(t->line);
    free(t->text);
    memset(t, 0, sizeof *t);
}

/* "a, b, c" from the header, cut short with "..." past about 200 bytes. */
static void header_list(const nn_csv *t, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int j = 0; j < t->n_cols; j++) {
        int w = snprintf(buf + used, cap - used, "%s%s", j ? ", " : "", t->header[j][0] ? t->header[j] : "\"\"");
        if (w < 0 || (size_t)w >= cap - used || used + (size_t)w > 200) {
            snprintf(buf + used, cap - used, ", ...");
            return;
        }
        used += (size_t)w;
    }
}

int nn_csv_column(const nn_csv *t, const char *spec) {
    int found = -1, matches = 0;
    for (int j = 0; j < t->n_cols; j++)
        if (strcmp(t->header[j], spec) == 0) {
            if (found < 0) found = j;
            matches++;
        }
    if (matches > 1)
        return nn_error("%s: column name '%s' appears %d times in the header (use its index)", t->source, spec,
                        matches);
    if (found >= 0) return found;

    size_t digits = strspn(spec, "0123456789");
    if (digits > 0 && spec[digits] == '\0') {
        if (digits > 9 || atol(spec) >= t->n_cols)
            return nn_error("%s: column index %s out of range (the file has %d column%s, 0 to %d)", t->source,
                            spec, t->n_cols, t->n_cols == 1 ? "" : "s", t->n_cols - 1);
        return (int)atol(spec);
    }
    char list[256];
    header_list(t, list, sizeof list);
    return nn_error("%s: no column '%s' (columns: %s)", t->source, spec, list);
}

int nn_csv_numbers(const nn_csv *t, int col, double *out) {
    if (col < 0 || col >= t->n_cols) nn_fatal("csv: column %d of %d", col, t->n_cols);
    char name[64];
    if (t->header[col][0])
        snprintf(name, sizeof name, "'%.50s'", t->header[col]);
    else
        snprintf(name, sizeof name, "%d", col);
    for (long r = 0; r < t->n_rows; r++) {
        const char *cell = t->cells[(size_t)r * (size_t)t->n_cols + (size_t)col];
        if (cell[0] == '\0')
            return nn_error("%s: row %ld (line %ld), column %s: empty cell", t->source, r + 1, t->line[r], name);
        char *end;
        errno = 0;
        double v = strtod(cell, &end);
        if (end == cell || *end != '\0')
            return nn_error("%s: row %ld (line %ld), column %s: '%.40s' is not a number", t->source, r + 1,
                            t->line[r], name, cell);
        if (!isfinite(v))
            return nn_error("%s: row %ld (line %ld), column %s: '%.40s' is not a finite number", t->source,
                            r + 1, t->line[r], name, cell);
        out[r] = v;
    }
    return 0;
}
