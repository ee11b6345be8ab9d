/* Fuzz target: CSV tables (nn_csv_parse, from memory, not NUL-terminated so
 * ASan sees any read past the end). On a table that parses, every column is
 * looked up by name and by index and converted to numbers. */
#include "fuzz_util.h"
#include "nn/csv.h"

#define NAME "fuzz.csv"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nn_csv t;
    if (nn_csv_parse(&t, (const char *)data, size, NAME) != 0) {
        fuzz_check_error(NAME);
        if (t.n_rows || t.n_cols || t.cells) __builtin_trap();
        return 0;
    }
    if (t.n_cols < 1 || t.n_rows < 1) __builtin_trap();
    double *values = malloc((size_t)t.n_rows * sizeof *values);
    for (int j = 0; j < t.n_cols; j++) {
        /* By name: this column, or an error when the name is used twice. */
        int col = nn_csv_column(&t, t.header[j]);
        if (col < 0) fuzz_check_error(NAME);
        else if (strcmp(t.header[col], t.header[j]) != 0) __builtin_trap();
        /* By index: this column, unless header cells are that very number. */
        char index[16];
        snprintf(index, sizeof index, "%d", j);
        col = nn_csv_column(&t, index);
        if (col < 0) fuzz_check_error(NAME);
        else if (col != j && strcmp(t.header[col], index) != 0) __builtin_trap();
        if (nn_csv_numbers(&t, j, values) != 0) fuzz_check_error(NAME);
    }
    free(values);
    nn_csv_free(&t);
    return 0;
}
