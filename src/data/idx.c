/* IDX files, the format of MNIST: a big-endian header (magic number, then one
 * 32-bit size per dimension) followed by the data bytes. zlib's gzread passes
 * non-gzip files through unchanged, so one reader serves raw and gzipped
 * files alike. Nothing is allocated until the header has been checked, and a
 * gzip stream is read into a buffer that grows as data arrives, so a header
 * that lies about its size costs no more memory than the stream delivers. */
#include "nn/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "nn/error.h"
#include "core/util.h"

#define IDX_IMAGES_MAGIC 2051u /* unsigned bytes, 3 dimensions */
#define IDX_LABELS_MAGIC 2049u /* unsigned bytes, 1 dimension */
#define IDX_MAX_DIMS 3

#define GZ_FIRST_CHUNK ((size_t)1 << 20) /* first buffer for gzipped data */
#define GZ_IO_BUFFER (1u << 17)          /* zlib's own buffer: fewer, larger reads */

static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Reads up to n bytes; fewer at the end of the data or on an error, which
 * gz_problem then tells apart. */
static size_t read_upto(gzFile gz, uint8_t *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t chunk = n - got < (size_t)1 << 30 ? n - got : (size_t)1 << 30;
        int r = gzread(gz, buf + got, (unsigned)chunk);
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

/* What zlib found wrong with the stream so far, or NULL. zlib decodes ahead
 * of what was asked, so only ask after a read came up short. */
static const char *gz_problem(gzFile gz) {
    int err;
    gzerror(gz, &err);
    switch (err) {
    case Z_OK:
        return NULL;
    case Z_BUF_ERROR: /* zlib's "unexpected end of file" */
        return "truncated: gzip stream ends early";
    case Z_ERRNO:
        return "read error";
    default:
        return "corrupt gzip data";
    }
}

/* Sets the error for data that stopped after `found` of `expected` bytes:
 * zlib's complaint if it has one, else a plain truncation. Returns -1. */
static int short_data(gzFile gz, const char *path, const char *at_least, size_t expected,
                      size_t found) {
    const char *problem = gz_problem(gz);
    if (problem) return nn_error("%s: %s", path, problem);
    return nn_error("%s: truncated: expected %s%zu bytes, found %zu%s", path, at_least, expected,
                    found, gzdirect(gz) ? "" : " after decompression");
}

/* Reads the header and checks magic and sizes. Returns the payload size in
 * *size, or -1. */
static int read_header(gzFile gz, const char *path, size_t file_size, uint32_t magic, int ndims,
                       uint32_t *dims, size_t *size) {
    static const char *const names[IDX_MAX_DIMS] = {"count", "rows", "cols"};
    uint8_t header[4 + 4 * IDX_MAX_DIMS];
    size_t header_len = 4 + 4 * (size_t)ndims;
    int raw = gzdirect(gz);

    /* The magic number first: a wrong kind of file is best reported as such,
     * even when it is too short for the header expected. */
    size_t got = read_upto(gz, header, 4);
    if (got == 4 && get_be32(header) != magic) {
        const char *kind = magic == IDX_IMAGES_MAGIC ? "images: unsigned bytes, 3 dimensions"
                                                     : "labels: unsigned bytes, 1 dimension";
        return nn_error("%s: wrong magic number %u, expected %u (IDX %s)", path, get_be32(header),
                        magic, kind);
    }
    if (got == 4) got += read_upto(gz, header + 4, header_len - 4);
    if (got < header_len) return short_data(gz, path, "at least ", header_len, got);
    *size = 1;
    for (int i = 0; i < ndims; i++) {
        dims[i] = get_be32(header + 4 + 4 * i);
        uint32_t max = i == 0 ? NN_DATA_MAX_COUNT : NN_DATA_MAX_SIDE;
        if (dims[i] < 1 || dims[i] > max)
            return nn_error("%s: bad header: %s is %u, must be in 1..%u", path, names[i], dims[i],
                            max);
        if (*size > (SIZE_MAX - header_len) / dims[i]) /* only with a 32-bit size_t */
            return nn_error("%s: bad header: data size overflows", path);
        *size *= dims[i];
    }
    /* A raw file's size is known up front: check it before allocating. */
    size_t expected = header_len + *size;
    if (raw && file_size < expected)
        return nn_error("%s: truncated: expected %zu bytes, found %zu", path, expected, file_size);
    if (raw && file_size > expected)
        return nn_error("%s: trailing bytes: expected %zu bytes, found %zu", path, expected,
                        file_size);
    return 0;
}

/* Reads exactly `size` payload bytes and makes sure nothing follows. */
static uint8_t *read_payload(gzFile gz, const char *path, size_t header_len, size_t size) {
    size_t cap = (gzdirect(gz) || size < GZ_FIRST_CHUNK) ? size : GZ_FIRST_CHUNK;
    uint8_t *data = nn_xmalloc(cap);
    size_t got = 0;
    for (;;) {
        got += read_upto(gz, data + got, cap - got);
        if (got < cap || cap == size) break;
        cap = cap <= size / 2 ? cap * 2 : size;
        data = nn_xrealloc(data, cap);
    }
    size_t expected = header_len + size;
    uint8_t extra;
    const char *problem;
    if (got < size) {
        short_data(gz, path, "", expected, header_len + got);
        goto fail;
    }
    /* Reading past the end also makes zlib check the gzip trailer (CRC, length). */
    if (read_upto(gz, &extra, 1) > 0) {
        nn_error("%s: trailing bytes: more than the expected %zu bytes%s", path, expected,
                 gzdirect(gz) ? "" : " after decompression");
        goto fail;
    }
    if ((problem = gz_problem(gz))) {
        nn_error("%s: %s", path, problem);
        goto fail;
    }
    return data;
fail:
    free(data);
    return NULL;
}

/* Reads an IDX file of unsigned bytes with the given magic and number of
 * dimensions. On success *data holds the payload and dims the sizes. */
static int idx_read(const char *path, uint32_t magic, int ndims, uint32_t *dims, uint8_t **data) {
    /* Non-blocking, so that a FIFO fails the regular-file check instead of
     * hanging; for a regular file the flag changes nothing. */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return nn_error("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return nn_error("%s: not a regular file", path);
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return nn_error("%s: cannot open for reading", path);
    }
    gzbuffer(gz, GZ_IO_BUFFER);
    size_t size = 0;
    int rc = read_header(gz, path, (size_t)st.st_size, magic, ndims, dims, &size);
    if (rc == 0) {
        *data = read_payload(gz, path, 4 + 4 * (size_t)ndims, size);
        if (!*data) rc = -1;
    }
    gzclose(gz); /* also closes fd */
    return rc;
}

static int idx_write(const char *path, uint32_t magic, int ndims, const uint32_t *dims,
                     const uint8_t *data) {
    size_t header_len = 4 + 4 * (size_t)ndims, size = 1;
    for (int i = 0; i < ndims; i++) size *= dims[i];
    uint8_t *buf = nn_xmalloc(header_len + size);
    put_be32(buf, magic);
    for (int i = 0; i < ndims; i++) put_be32(buf + 4 + 4 * i, dims[i]);
    if (size) memcpy(buf + header_len, data, size);
    int rc = nn_write_file_atomic(path, buf, header_len + size);
    free(buf);
    return rc;
}

int nn_dataset_load_files(nn_dataset *out, const char *images_path, const char *labels_path) {
    memset(out, 0, sizeof *out);
    uint32_t idims[3], ldims[1];
    uint8_t *images, *labels;
    if (idx_read(images_path, IDX_IMAGES_MAGIC, 3, idims, &images) != 0) return -1;
    if (idx_read(labels_path, IDX_LABELS_MAGIC, 1, ldims, &labels) != 0) {
        free(images);
        return -1;
    }
    int rc = 0;
    if (ldims[0] != idims[0])
        rc = nn_error("%s: count mismatch: %u labels for the %u images of %s", labels_path,
                      ldims[0], idims[0], images_path);
    for (uint32_t i = 0; rc == 0 && i < ldims[0]; i++)
        if (labels[i] >= NN_DATA_CLASSES)
            rc = nn_error("%s: label %u of example %u is out of range 0..%d", labels_path,
                          labels[i], i, NN_DATA_CLASSES - 1);
    if (rc != 0) {
        free(images);
        free(labels);
        return -1;
    }
    out->n = (int)idims[0];
    out->rows = (int)idims[1];
    out->cols = (int)idims[2];
    out->images = images;
    out->labels = labels;
    return 0;
}

/* Returns dir/<split>-<kind>, or that name with ".gz" when only the gzipped
 * file exists; NULL (with the error set) when neither does. */
static char *find_file(const char *dir, const char *split, const char *kind) {
    size_t len = strlen(dir) + strlen(split) + strlen(kind) + sizeof "/-.gz";
    char *path = nn_xmalloc(len);
    snprintf(path, len, "%s/%s-%s", dir, split, kind);
    size_t base = strlen(path);
    struct stat st;
    /* Any failure but "does not exist" is left for open() to report. */
    if (stat(path, &st) == 0 || errno != ENOENT) return path;
    memcpy(path + base, ".gz", sizeof ".gz");
    if (stat(path, &st) == 0 || errno != ENOENT) return path;
    path[base] = '\0';
    nn_error("%s: not found (nor %s-%s.gz)", path, split, kind);
    free(path);
    return NULL;
}

int nn_dataset_load(nn_dataset *out, const char *dir, const char *split) {
    memset(out, 0, sizeof *out);
    char *images = find_file(dir, split, "images-idx3-ubyte");
    if (!images) return -1;
    char *labels = find_file(dir, split, "labels-idx1-ubyte");
    int rc = labels ? nn_dataset_load_files(out, images, labels) : -1;
    free(images);
    free(labels);
    return rc;
}

int nn_dataset_save(const nn_dataset *d, const char *dir, const char *split) {
    size_t len = strlen(dir) + strlen(split) + sizeof "/-images-idx3-ubyte";
    char *path = nn_xmalloc(len);
    uint32_t idims[3] = {(uint32_t)d->n, (uint32_t)d->rows, (uint32_t)d->cols};
    uint32_t ldims[1] = {(uint32_t)d->n};
    snprintf(path, len, "%s/%s-images-idx3-ubyte", dir, split);
    int rc = idx_write(path, IDX_IMAGES_MAGIC, 3, idims, d->images);
    if (rc == 0) {
        snprintf(path, len, "%s/%s-labels-idx1-ubyte", dir, split);
        rc = idx_write(path, IDX_LABELS_MAGIC, 1, ldims, d->labels);
    }
    free(path);
    return rc;
}

void nn_dataset_free(nn_dataset *d) {
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

void nn_dataset_limit(nn_dataset *d, int n) {
    if (n < 0) nn_fatal("nn_dataset_limit: negative count %d", n);
    if (n < d->n) d->n = n;
}

int nn_dataset_split(nn_dataset *d, int n_val, nn_dataset *val) {
    if (n_val < 1 || n_val >= d->n)
        return nn_error("cannot hold out %d of %d examples: must be between 1 and %d", n_val, d->n,
                        d->n - 1);
    size_t pixels = (size_t)d->rows * (size_t)d->cols;
    int keep = d->n - n_val;
    val->n = n_val;
    val->rows = d->rows;
    val->cols = d->cols;
    val->images = nn_xmalloc((size_t)n_val * pixels);
    val->labels = nn_xmalloc((size_t)n_val);
    memcpy(val->images, d->images + (size_t)keep * pixels, (size_t)n_val * pixels);
    memcpy(val->labels, d->labels + keep, (size_t)n_val);
    d->n = keep;
    return 0;
}
