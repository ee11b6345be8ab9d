/* A small CSV reader for tables of numbers with a header row (nn linreg).
 *
 *   nn_csv t;
 *   if (nn_csv_load(&t, "data.csv") != 0) ... nn_last_error() ...
 *   int col = nn_csv_column(&t, "AIRFLOW");          // header name or 0-based index
 *   double *v = malloc(t.n_rows * sizeof *v);
 *   if (col < 0 || nn_csv_numbers(&t, col, v) != 0) ... nn_last_error() ...
 *   nn_csv_free(&t);
 *
 * The format: comma-separated fields, one record per line (LF or CRLF), the
 * first record is the header. A field may be double-quoted ("a,b" and "say
 * ""hi""" as in RFC 4180); spaces and tabs around an unquoted field are
 * ignored. Blank lines are skipped. Every record must have as many fields as
 * the header. Cells are kept as text, so columns that are not used may hold
 * anything; a column is turned into numbers only when asked, and then every
 * cell is checked (whole cell consumed by strtod, finite). Errors name the
 * file, the data row (1-based, the header not counted), its line in the file
 * and the column. */
#ifndef NN_CSV_H
#define NN_CSV_H

#include <stddef.h>

#include "nn/api.h"

NN_BEGIN_DECLS

typedef struct nn_csv {
    const char *source; /* the name used in messages (the path) */
    int n_cols;
    long n_rows;        /* data rows, the header not counted */
    char **header;      /* n_cols names */
    char **cells;       /* n_rows * n_cols, row-major */
    long *line;         /* line in the file where each data row starts (1-based) */
    char *text;         /* backing store of all cell strings */
} nn_csv;

/* Hard limits: a table bigger than this is refused, not half-read. */
#define NN_CSV_MAX_BYTES ((size_t)1 << 30)
#define NN_CSV_MAX_COLS 100000

/* Reads and parses a file. Returns 0, or -1 with the error set (the table is
 * then empty and nn_csv_free is optional). An empty file, a header without
 * data rows, a ragged row, a NUL byte, and an unterminated quote are errors. */
int nn_csv_load(nn_csv *t, const char *path);
/* The same for text already in memory (len bytes, need not be NUL-terminated);
 * `source` names it in messages and must outlive the table. */
int nn_csv_parse(nn_csv *t, const char *text, size_t len, const char *source);
void nn_csv_free(nn_csv *t);

/* The column named `spec` in the header, or else, if `spec` is a decimal
 * number, the column with that 0-based index. Returns -1 with the error set
 * (no such column, listing the header; or a name that appears twice). */
int nn_csv_column(const nn_csv *t, const char *spec);

/* Converts every cell of column `col` to a double into out[0..n_rows).
 * Returns 0, or -1 with an error naming the row, its line and the column
 * ("data.csv: row 3 (line 4), column 'x': 'abc' is not a number"). */
int nn_csv_numbers(const nn_csv *t, int col, double *out);

NN_END_DECLS

#endif
