/* safetensors reading and writing; the format is described in nn/safetensors.h. */
#include "nn/safetensors.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "core/util.h"

/* The reference implementation refuses headers above 100 MB; so do we, which
 * also bounds what a hostile header can make us allocate. */
#define HEADER_LIMIT ((uint64_t)100 * 1000 * 1000)
/* cJSON stores numbers as doubles, exact only up to 2^53. */
#define MAX_EXACT_INT ((uint64_t)1 << 53)

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8},
};

/* Element size of a dtype in bytes, or 0 if unknown. */
static size_t dtype_size(const char *name) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0) return dtypes[i].size;
    return 0;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(nn_xmalloc(n), s, n);
}

/* Byte-wise little-endian access: portable, and safe at any alignment. */
static uint64_t get_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void put_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static float get_f32le(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void put_f32le(unsigned char *p, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(u >> (8 * i));
}

/* "[2, 3]" into out (truncated to cap). */
static void format_shape(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (n < cap) snprintf(out + n, cap - n, "]");
}

/* Byte size of a tensor of this shape; 0 on overflow or a dim outside
 * [0, 2^53] (a legitimately empty tensor sets *nbytes = 0 and returns 1). */
static int tensor_bytes(int ndim, const int64_t *shape, size_t esize, size_t *nbytes) {
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > MAX_EXACT_INT) return 0;
        size_t d = (size_t)shape[i];
        if (d && count > SIZE_MAX / d) return 0;
        count *= d;
    }
    if (count > SIZE_MAX / esize) return 0;
    *nbytes = count * esize;
    return 1;
}

/* Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and
 * NUL included), or len if the whole text is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t more;
        uint32_t cp, min;
        if (c == 0) return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) more = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) more = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) more = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (len - i <= more) return i;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += more + 1;
    }
    return len;
}

/* An integral JSON number in [0, 2^53]. */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= (double)MAX_EXACT_INT)) return 0; /* also rejects NaN */
    if (v != (double)(uint64_t)v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A name that occurs twice in names[0..n), or NULL. Sorting keeps this
 * O(n log n) for headers with many entries. */
static const char *find_duplicate(char *const *names, int n) {
    if (n < 2) return NULL;
    char **sorted = nn_xmalloc((size_t)n * sizeof *sorted);
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str_ptr);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) dup = sorted[i];
    free(sorted);
    return dup;
}

static int cmp_tensor_range(const void *a, const void *b) {
    const nn_st_tensor *x = *(const nn_st_tensor *const *)a, *y = *(const nn_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static int parse_tensor(const char *path, const cJSON *item, size_t data_len, nn_st_tensor *t) {
    const char *name = item->string;
    t->name = xstrdup(name);
    if (!cJSON_IsObject(item)) return nn_error("%s: tensor '%s': entry is not an object", path, name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!cJSON_IsString(dtype)) return nn_error("%s: tensor '%s': missing or non-string dtype", path, name);
    size_t esize = dtype_size(dtype->valuestring);
    if (!esize) return nn_error("%s: tensor '%s': unknown dtype '%.32s'", path, name, dtype->valuestring);
    strcpy(t->dtype, dtype->valuestring); /* fits: every known name is shorter than dtype[] */

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(shape)) return nn_error("%s: tensor '%s': missing or non-array shape", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > NN_ST_MAX_DIMS)
        return nn_error("%s: tensor '%s': shape has %d dims (limit %d)", path, name, ndim, NN_ST_MAX_DIMS);
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t d;
        if (!json_uint(dim, &d))
            return nn_error("%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, t->ndim);
        t->shape[t->ndim++] = (int64_t)d;
    }
    char shape_str[256];
    format_shape(shape_str, sizeof shape_str, t->ndim, t->shape);
    if (!tensor_bytes(t->ndim, t->shape, esize, &t->nbytes))
        return nn_error("%s: tensor '%s': shape %s is too large", path, name, shape_str);

    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &begin) ||
        !json_uint(offs->child->next, &end))
        return nn_error("%s: tensor '%s': data_offsets is not a pair of non-negative integers", path, name);
    if (begin > end)
        return nn_error("%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] begin after end", path,
                        name, begin, end);
    if (end > data_len)
        return nn_error("%s: tensor '%s': data_offsets end %" PRIu64 " is past the data section (%zu bytes)",
                        path, name, end, data_len);
    if (end - begin != t->nbytes)
        return nn_error("%s: tensor '%s': data_offsets span %" PRIu64 " bytes but %s shape %s needs %zu",
                        path, name, end - begin, t->dtype, shape_str, t->nbytes);
    t->offset = (size_t)begin;
    return 0;
}

static int parse_metadata(nn_safetensors *st, const cJSON *meta) {
    if (cJSON_IsNull(meta)) return 0;
    if (!cJSON_IsObject(meta)) return nn_error("%s: __metadata__ is not an object", st->path);
    int n = cJSON_GetArraySize(meta);
    st->meta_keys = nn_xcalloc((size_t)n, sizeof *st->meta_keys);
    st->meta_values = nn_xcalloc((size_t)n, sizeof *st->meta_values);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return nn_error("%s: __metadata__ value for '%s' is not a string", st->path, kv->string);
        st->meta_keys[st->n_meta] = xstrdup(kv->string);
        st->meta_values[st->n_meta] = xstrdup(kv->valuestring);
        st->n_meta++;
    }
    const char *dup = find_duplicate(st->meta_keys, st->n_meta);
    if (dup) return nn_error("%s: duplicate __metadata__ key '%s'", st->path, dup);
    return 0;
}

/* The tensors must tile the data section: no overlap, no gap, nothing after. */
static int check_layout(const nn_safetensors *st) {
    if (st->n_tensors == 0) {
        if (st->data_len) return nn_error("%s: %zu bytes of data but no tensors", st->path, st->data_len);
        return 0;
    }
    const nn_st_tensor **order = nn_xmalloc((size_t)st->n_tensors * sizeof *order);
    for (int i = 0; i < st->n_tensors; i++) order[i] = &st->tensors[i];
    qsort(order, (size_t)st->n_tensors, sizeof *order, cmp_tensor_range);
    int rc = 0;
    size_t pos = 0;
    for (int i = 0; i < st->n_tensors && rc == 0; i++) {
        const nn_st_tensor *t = order[i];
        if (t->offset < pos)
            rc = nn_error("%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", st->path,
                          order[i - 1]->name, order[i - 1]->offset, order[i - 1]->offset + order[i - 1]->nbytes,
                          t->name, t->offset, t->offset + t->nbytes);
        else if (t->offset > pos)
            rc = nn_error("%s: data bytes [%zu, %zu) before tensor '%s' belong to no tensor", st->path, pos,
                          t->offset, t->name);
        pos = t->offset + t->nbytes;
    }
    if (rc == 0 && pos != st->data_len)
        rc = nn_error("%s: %zu trailing bytes after the last tensor", st->path, st->data_len - pos);
    free(order);
    return rc;
}

static int parse_header(nn_safetensors *st, const char *json, size_t n) {
    size_t bad = utf8_invalid_at((const unsigned char *)json, n);
    if (bad < n) return nn_error("%s: header is not valid UTF-8 (byte %zu)", st->path, bad);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, n, &end, 0);
    if (!root) return nn_error("%s: header is not valid JSON (near byte %td)", st->path, end ? end - json : 0);
    int rc = -1;
    for (const char *p = end; p < json + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            nn_error("%s: header has text after the JSON object (byte %td)", st->path, p - json);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        nn_error("%s: header is not a JSON object", st->path);
        goto done;
    }

    const cJSON *item, *meta = NULL;
    int n_items = 0;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") != 0) {
            n_items++;
        } else if (meta) {
            nn_error("%s: duplicate __metadata__", st->path);
            goto done;
        } else {
            meta = item;
        }
    }
    if (meta && parse_metadata(st, meta) != 0) goto done;

    st->tensors = nn_xcalloc((size_t)n_items, sizeof *st->tensors);
    cJSON_ArrayForEach(item, root) {
        if (item == meta) continue;
        /* Count it first so nn_st_free releases the name even on failure. */
        nn_st_tensor *t = &st->tensors[st->n_tensors++];
        if (parse_tensor(st->path, item, st->data_len, t) != 0) goto done;
    }
    char **names = nn_xmalloc((size_t)st->n_tensors * sizeof *names);
    for (int i = 0; i < st->n_tensors; i++) names[i] = st->tensors[i].name;
    const char *dup = find_duplicate(names, st->n_tensors);
    if (dup) nn_error("%s: duplicate tensor name '%s'", st->path, dup);
    free(names);
    if (dup) goto done;
    rc = check_layout(st);
done:
    cJSON_Delete(root);
    return rc;
}

/* Validates buf (len bytes, malloc'd, owned by st from here on). */
static int parse_owned(unsigned char *buf, size_t len, const char *name, nn_safetensors *st) {
    memset(st, 0, sizeof *st);
    st->buf = buf;
    st->len = len;
    st->path = xstrdup(name);
    int rc = -1;
    if (len < 8) {
        nn_error("%s: file is %zu bytes, too short for the 8-byte header length", name, len);
        goto done;
    }
    uint64_t hlen = get_le64(buf);
    if (hlen == 0) {
        nn_error("%s: header length 0", name);
        goto done;
    }
    if (hlen > len - 8) {
        nn_error("%s: header length %" PRIu64 " exceeds file size %zu", name, hlen, len);
        goto done;
    }
    if (hlen > HEADER_LIMIT) {
        nn_error("%s: header length %" PRIu64 " exceeds the %" PRIu64 "-byte limit", name, hlen, HEADER_LIMIT);
        goto done;
    }
    st->data = buf + 8 + hlen;
    st->data_len = len - 8 - (size_t)hlen;
    rc = parse_header(st, (const char *)buf + 8, (size_t)hlen);
done:
    if (rc != 0) nn_st_free(st);
    return rc;
}

int nn_st_parse(nn_safetensors *st, const unsigned char *buf, size_t len, const char *name_for_errors) {
    unsigned char *copy = nn_xmalloc(len);
    if (len) memcpy(copy, buf, len);
    return parse_owned(copy, len, name_for_errors, st);
}

int nn_st_load(nn_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    size_t len;
    unsigned char *buf = nn_read_file(path, &len, 0);
    if (!buf) return -1;
    return parse_owned(buf, len, path, st);
}

const nn_st_tensor *nn_st_find(const nn_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *nn_st_meta(const nn_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

/* The largest integer magnitude float32 holds exactly, with every smaller one: 2^24. */
#define F32_EXACT_INT ((int64_t)1 << 24)

/* IEEE half precision to float: exact, every F16 value (subnormals, infinities,
 * NaN) is a float. */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    float f;
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in float */
        f = ldexpf((float)mant, -24);
        if (sign) f = -f;
        return f;
    }
    uint32_t u = sign | (exp == 0x1F ? 0xFFu << 23 | mant << 13 : (exp + 127 - 15) << 23 | mant << 13);
    memcpy(&f, &u, sizeof f);
    return f;
}

/* One little-endian element of an integer dtype of esize bytes: its raw bits
 * in *raw, and its value as a signed 64-bit number (an unsigned value above
 * INT64_MAX becomes INT64_MAX, out of float32's exact range all the same). */
static int64_t get_int(const unsigned char *p, size_t esize, bool is_signed, uint64_t *raw) {
    uint64_t u = 0;
    for (size_t b = esize; b-- > 0;) u = u << 8 | p[b];
    *raw = u;
    if (!is_signed) return u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
    if (esize < 8 && (u >> (8 * esize - 1)) & 1) u |= ~(uint64_t)0 << (8 * esize); /* sign-extend */
    int64_t v;
    memcpy(&v, &u, sizeof v); /* two's complement, without an implementation-defined conversion */
    return v;
}

int nn_st_read_f32(const nn_safetensors *st, const char *name, int ndim, const int64_t *shape, float *dst) {
    const nn_st_tensor *t = nn_st_find(st, name);
    if (!t) return nn_error("%s: no tensor named '%s'", st->path, name);
    const char *dt = t->dtype;
    bool is_int = (dt[0] == 'I' || dt[0] == 'U') && strcmp(dt, "BOOL") != 0;
    if (!is_int && strcmp(dt, "F32") != 0 && strcmp(dt, "F16") != 0 && strcmp(dt, "BF16") != 0 &&
        strcmp(dt, "F64") != 0)
        return nn_error("%s: tensor '%s' has dtype %s, expected F32 (or F64, F16, BF16 or an integer type)",
                        st->path, name, dt);
    int same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++) same = shape[i] == t->shape[i];
    if (!same) {
        char have[256], want[256];
        format_shape(have, sizeof have, t->ndim, t->shape);
        format_shape(want, sizeof want, ndim, shape);
        return nn_error("%s: tensor '%s' has shape %s, expected %s", st->path, name, have, want);
    }
    const unsigned char *src = st->data + t->offset;
    size_t esize = dtype_size(dt), n = t->nbytes / esize;
    if (strcmp(dt, "F32") == 0) {
        for (size_t i = 0; i < n; i++) dst[i] = get_f32le(src + 4 * i);
    } else if (strcmp(dt, "F16") == 0) {
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else if (strcmp(dt, "BF16") == 0) { /* the top half of a float: exact */
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)src[2 * i] << 16 | (uint32_t)src[2 * i + 1] << 24;
            memcpy(&dst[i], &u, sizeof u);
        }
    } else if (strcmp(dt, "F64") == 0) { /* rounded to nearest, as PyTorch's .float() */
        for (size_t i = 0; i < n; i++) {
            uint64_t u = get_le64(src + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            if (isfinite(d) && fabs(d) > (double)FLT_MAX) /* no finite weight turns infinite */
                return nn_error("%s: tensor '%s' holds F64 value %.17g at index %zu, beyond float32's range",
                                st->path, name, d, i);
            dst[i] = (float)d;
        }
    } else { /* a count (BatchNorm's num_batches_tracked is I64 in PyTorch): only exact values */
        bool is_signed = dt[0] == 'I';
        for (size_t i = 0; i < n; i++) {
            uint64_t raw;
            int64_t v = get_int(src + esize * i, esize, is_signed, &raw);
            if (v > F32_EXACT_INT || v < -F32_EXACT_INT) {
                char text[24];
                if (is_signed) snprintf(text, sizeof text, "%" PRId64, v);
                else snprintf(text, sizeof text, "%" PRIu64, raw);
                return nn_error("%s: tensor '%s' holds %s value %s at index %zu, not exact as float32 "
                                "(|v| <= 2^24)",
                                st->path, name, dt, text, i);
            }
            dst[i] = (float)v;
        }
    }
    return 0;
}

void nn_st_free(nn_safetensors *st) {
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->buf);
    free(st->path);
    memset(st, 0, sizeof *st);
}

/* cJSON reports out-of-memory by returning NULL/false; like nn_xmalloc we
 * treat that as fatal rather than write a silently incomplete header. */
static cJSON *must(cJSON *item) {
    if (!item) nn_fatal("out of memory building a safetensors header");
    return item;
}

static void add(cJSON *container, const char *key, cJSON *item) {
    int ok = key ? cJSON_AddItemToObject(container, key, must(item)) : cJSON_AddItemToArray(container, must(item));
    if (!ok) nn_fatal("out of memory building a safetensors header");
}

/* Integers are written as raw text: cJSON would print a double, which turns
 * into exponent notation for very large values. */
static cJSON *json_int(uint64_t v) {
    char text[24];
    snprintf(text, sizeof text, "%" PRIu64, v);
    return cJSON_CreateRaw(text);
}

/* Validates what the caller passed and fills sizes[] and the data section's
 * total length. */
static int check_entries(const char *path, const nn_st_entry *tensors, int n_tensors, const char *const *meta_keys,
                         const char *const *meta_values, int n_meta, size_t *sizes, size_t *data_len) {
    if (n_tensors < 0 || n_meta < 0) return nn_error("%s: negative tensor or metadata count", path);
    *data_len = 0;
    for (int i = 0; i < n_tensors; i++) {
        const nn_st_entry *e = &tensors[i];
        if (!e->name || strcmp(e->name, "__metadata__") == 0)
            return nn_error("%s: tensor %d has an invalid name", path, i);
        if (e->ndim < 0 || e->ndim > NN_ST_MAX_DIMS || (e->ndim > 0 && !e->shape))
            return nn_error("%s: tensor '%s' has an invalid number of dims (%d)", path, e->name, e->ndim);
        if (!tensor_bytes(e->ndim, e->shape, 4, &sizes[i]) || sizes[i] > MAX_EXACT_INT) {
            char shape_str[256];
            format_shape(shape_str, sizeof shape_str, e->ndim, e->shape);
            return nn_error("%s: tensor '%s' has an invalid shape %s", path, e->name, shape_str);
        }
        if (sizes[i] && !e->data) return nn_error("%s: tensor '%s' has no data", path, e->name);
        if (sizes[i] > MAX_EXACT_INT - *data_len)
            return nn_error("%s: tensors too large in total for one file", path);
        *data_len += sizes[i];
    }
    for (int i = 0; i < n_meta; i++)
        if (!meta_keys[i] || !meta_values[i]) return nn_error("%s: metadata entry %d is NULL", path, i);

    char **names = nn_xmalloc((size_t)(n_tensors > n_meta ? n_tensors : n_meta) * sizeof *names);
    for (int i = 0; i < n_tensors; i++) names[i] = (char *)tensors[i].name;
    const char *dup = find_duplicate(names, n_tensors);
    int rc = dup ? nn_error("%s: duplicate tensor name '%s'", path, dup) : 0;
    if (rc == 0) {
        for (int i = 0; i < n_meta; i++) names[i] = (char *)meta_keys[i];
        dup = find_duplicate(names, n_meta);
        if (dup) rc = nn_error("%s: duplicate metadata key '%s'", path, dup);
    }
    free(names);
    return rc;
}

int nn_st_save(const char *path, const nn_st_entry *tensors, int n_tensors, const char *const *meta_keys,
               const char *const *meta_values, int n_meta) {
    size_t *sizes = nn_xmalloc((size_t)(n_tensors > 0 ? n_tensors : 0) * sizeof *sizes);
    size_t data_len;
    if (check_entries(path, tensors, n_tensors, meta_keys, meta_values, n_meta, sizes, &data_len) != 0) {
        free(sizes);
        return -1;
    }

    cJSON *root = must(cJSON_CreateObject());
    if (n_meta > 0) {
        cJSON *meta = must(cJSON_CreateObject());
        for (int i = 0; i < n_meta; i++) add(meta, meta_keys[i], cJSON_CreateString(meta_values[i]));
        add(root, "__metadata__", meta);
    }
    size_t pos = 0;
    for (int i = 0; i < n_tensors; i++) {
        const nn_st_entry *e = &tensors[i];
        cJSON *t = must(cJSON_CreateObject());
        add(t, "dtype", cJSON_CreateString("F32"));
        cJSON *shape = must(cJSON_CreateArray());
        for (int d = 0; d < e->ndim; d++) add(shape, NULL, json_int((uint64_t)e->shape[d]));
        add(t, "shape", shape);
        cJSON *offs = must(cJSON_CreateArray());
        add(offs, NULL, json_int(pos));
        add(offs, NULL, json_int(pos + sizes[i]));
        add(t, "data_offsets", offs);
        add(root, e->name, t);
        pos += sizes[i];
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) nn_fatal("out of memory printing a safetensors header");

    /* Pad with spaces so the data section starts 8-byte aligned. */
    size_t json_len = strlen(json), hlen = (json_len + 7) / 8 * 8;
    size_t total = 8 + hlen + data_len;
    unsigned char *out = nn_xmalloc(total);
    put_le64(out, hlen);
    memcpy(out + 8, json, json_len);
    memset(out + 8 + json_len, ' ', hlen - json_len);
    cJSON_free(json);
    unsigned char *p = out + 8 + hlen;
    for (int i = 0; i < n_tensors; i++)
        for (size_t k = 0; k < sizes[i] / 4; k++, p += 4) put_f32le(p, tensors[i].data[k]);
    free(sizes);

    int rc = nn_write_file_atomic(path, out, total);
    free(out);
    return rc;
}
