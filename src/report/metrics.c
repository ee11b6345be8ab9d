/* The per-epoch metrics CSV. The first eight columns are fixed so scripts
 * keep working; extra columns only ever come after them. Every row is
 * flushed, so the rows of a run killed half-way are on disk. */
#include "nn/report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "core/util.h"

static const char header[] =
    "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds,images_per_sec";

struct nn_metrics_file {
    FILE *f;
    char *path;
    int n_extra;
};

/* Flushes and reports a write error; callers clear errno before writing so
 * the message names the failure, not an older errno value. */
static int check_written(nn_metrics_file *m) {
    if (fflush(m->f) != 0 || ferror(m->f))
        return nn_error("%s: write error: %s", m->path, strerror(errno ? errno : EIO));
    return 0;
}

nn_metrics_file *nn_metrics_open(const char *path, const char *const *extra_cols, int n_extra) {
    if (n_extra < 0 || (n_extra > 0 && !extra_cols)) {
        nn_error("%s: bad extra column list", path);
        return NULL;
    }
    for (int i = 0; i < n_extra; i++) {
        /* A name that needs CSV quoting would shift every later column. */
        if (!extra_cols[i] || !extra_cols[i][0] || strpbrk(extra_cols[i], ",\"\r\n")) {
            nn_error("%s: bad extra column name \"%s\"", path,
                     extra_cols[i] ? extra_cols[i] : "(null)");
            return NULL;
        }
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        nn_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    nn_metrics_file *m = nn_xmalloc(sizeof *m);
    m->f = f;
    m->path = nn_xmalloc(strlen(path) + 1);
    strcpy(m->path, path);
    m->n_extra = n_extra;

    errno = 0;
    fputs(header, f);
    for (int i = 0; i < n_extra; i++) fprintf(f, ",%s", extra_cols[i]);
    fputc('\n', f);
    if (check_written(m) != 0) {
        /* Keep the write error's message, not whatever fclose says. */
        fclose(m->f);
        free(m->path);
        free(m);
        return NULL;
    }
    return m;
}

int nn_metrics_write(nn_metrics_file *m, const nn_epoch_metrics *e, const double *extra) {
    if (m->n_extra > 0 && !extra)
        return nn_error("%s: %d extra values expected, none given", m->path, m->n_extra);
    errno = 0;
    fprintf(m->f, "%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g", e->epoch, e->train_loss,
            e->train_acc, e->test_loss, e->test_acc, e->lr, e->seconds, e->images_per_sec);
    for (int i = 0; i < m->n_extra; i++) fprintf(m->f, ",%.6g", extra[i]);
    fputc('\n', m->f);
    return check_written(m);
}

int nn_metrics_close(nn_metrics_file *m) {
    if (!m) return 0;
    int bad = ferror(m->f);
    errno = 0;
    int rc = 0;
    if (fclose(m->f) != 0 || bad)
        rc = nn_error("%s: write error: %s", m->path, strerror(errno ? errno : EIO));
    free(m->path);
    free(m);
    return rc;
}
