/* safetensors: round trip, the exact bytes of the format (assembled by hand,
 * independently of the writer), every rejected malformation, atomic saves. */
#include "nn/safetensors.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"
#include "nn/error.h"
#include "core/util.h"

static char tmp_dir[64];
static const char *const tmp_names[] = {"rt.safetensors",    "golden.safetensors", "hand.safetensors",
                                        "small.safetensors", "trunc.safetensors",  "keep.safetensors"};

static void remove_tmp_dir(void) {
    char path[128];
    for (size_t i = 0; i < sizeof tmp_names / sizeof tmp_names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp_dir, tmp_names[i]);
        unlink(path);
    }
    rmdir(tmp_dir);
}

/* A path in a private scratch folder, removed at exit; `name` must be listed
 * in tmp_names. The result is overwritten by the next call. */
static const char *tmp_path(const char *name) {
    static char path[128];
    if (!tmp_dir[0]) {
        strcpy(tmp_dir, "/tmp/nn_test_st_XXXXXX");
        if (!mkdtemp(tmp_dir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(remove_tmp_dir);
    }
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    return path;
}

static unsigned char *slurp(const char *path, size_t *len) {
    unsigned char *buf = nn_read_file(path, len, 0);
    CHECKF(buf != NULL, "%s", nn_last_error());
    return buf;
}

static void spit(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, len, f) == len);
    if (f) fclose(f);
}

/* A file by hand: the 8-byte little-endian length of `json`, then `json`, then
 * `dlen` data bytes. */
static unsigned char *assemble(const char *json, const void *data, size_t dlen, size_t *len) {
    size_t n = strlen(json);
    unsigned char *buf = malloc(8 + n + dlen);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    if (dlen) memcpy(buf + 8 + n, data, dlen);
    *len = 8 + n + dlen;
    return buf;
}

/* Parsing must fail with a message that starts with the name and contains `want`. */
static void expect_bad_buf(const unsigned char *buf, size_t len, const char *want) {
    nn_safetensors st;
    int rc = nn_st_parse(&st, buf, len, "bad.safetensors");
    CHECKF(rc == -1, "accepted, expected an error containing '%s'", want);
    if (rc == 0) {
        nn_st_free(&st);
        return;
    }
    const char *msg = nn_last_error();
    CHECKF(strncmp(msg, "bad.safetensors: ", 17) == 0 && strstr(msg, want), "error '%s', expected '%s'", msg,
           want);
    CHECK(st.buf == NULL && st.tensors == NULL && st.n_tensors == 0); /* zeroed on failure */
    nn_st_free(&st);                                                   /* and harmless to free */
}

static void expect_bad(const char *json, size_t dlen, const char *want) {
    unsigned char zeros[64] = {0};
    size_t len;
    unsigned char *buf = assemble(json, zeros, dlen, &len);
    expect_bad_buf(buf, len, want);
    free(buf);
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void test_round_trip(void) {
    const int64_t s_w[] = {2, 3}, s_b[] = {5}, s_e[] = {0, 4};
    const float w[] = {1.0f, -2.5f, 3.25f, -0.0f, 1e-38f, 3.4e38f};
    const float b[] = {0.1f, 0.2f, -0.3f, INFINITY, 7.0f};
    const float scalar = 42.0f;
    const nn_st_entry entries[] = {
        {"fc1.weight", 2, s_w, w},
        {"fc1.bias", 1, s_b, b},
        {"step", 0, NULL, &scalar},
        {"empty", 2, s_e, NULL},
    };
    const char *keys[] = {"nn.arch", "nn.layers", "note"};
    const char *values[] = {"mlp", "784,1024,10", "quotes \" and \\ and \xc3\xa9"};
    const char *path = tmp_path("rt.safetensors");
    CHECKF(nn_st_save(path, entries, 4, keys, values, 3) == 0, "%s", nn_last_error());

    size_t len;
    unsigned char *raw = slurp(path, &len);
    if (!raw) return;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    CHECKF(hlen % 8 == 0 && 8 + hlen <= len, "header length %llu", (unsigned long long)hlen);
    CHECK(len == 8 + hlen + sizeof w + sizeof b + sizeof scalar);
    size_t json_end = hlen; /* the JSON object, then only padding spaces */
    while (json_end > 0 && raw[8 + json_end - 1] == ' ') json_end--;
    CHECK(raw[8] == '{' && json_end > 0 && raw[8 + json_end - 1] == '}' && hlen - json_end < 8);
    /* The data section starts with fc1.weight, little-endian: 1.0f = 0x3f800000. */
    CHECK(memcmp(raw + 8 + hlen, "\x00\x00\x80\x3f", 4) == 0);
    free(raw);

    nn_safetensors st;
    CHECKF(nn_st_load(&st, path) == 0, "%s", nn_last_error());
    if (st.n_tensors != 4) {
        CHECKF(0, "%d tensors", st.n_tensors);
        nn_st_free(&st);
        return;
    }
    CHECK(((uintptr_t)(st.data - st.buf)) % 8 == 0);
    for (int i = 0; i < 4; i++) {
        const nn_st_tensor *t = &st.tensors[i];
        CHECKF(strcmp(t->name, entries[i].name) == 0, "tensor %d is %s", i, t->name);
        CHECK(strcmp(t->dtype, "F32") == 0);
        CHECK(t->ndim == entries[i].ndim);
        for (int d = 0; d < t->ndim; d++) CHECK(t->shape[d] == entries[i].shape[d]);
    }
    CHECK(st.tensors[0].offset == 0 && st.tensors[0].nbytes == sizeof w); /* order given, no gaps */
    CHECK(st.tensors[1].offset == sizeof w && st.tensors[2].offset == sizeof w + sizeof b);
    CHECK(st.tensors[3].nbytes == 0);

    float w2[6], b2[5], s2;
    CHECKF(nn_st_read_f32(&st, "fc1.weight", 2, s_w, w2) == 0, "%s", nn_last_error());
    CHECKF(nn_st_read_f32(&st, "fc1.bias", 1, s_b, b2) == 0, "%s", nn_last_error());
    CHECKF(nn_st_read_f32(&st, "step", 0, NULL, &s2) == 0, "%s", nn_last_error());
    CHECKF(nn_st_read_f32(&st, "empty", 2, s_e, NULL) == 0, "%s", nn_last_error());
    for (int i = 0; i < 6; i++) CHECKF(same_bits(w[i], w2[i]), "w[%d] = %g", i, w2[i]);
    for (int i = 0; i < 5; i++) CHECKF(same_bits(b[i], b2[i]), "b[%d] = %g", i, b2[i]);
    CHECK(s2 == 42.0f);

    CHECK(st.n_meta == 3);
    for (int i = 0; i < 3; i++) {
        const char *v = nn_st_meta(&st, keys[i]);
        CHECKF(v && strcmp(v, values[i]) == 0, "%s = %s", keys[i], v ? v : "(null)");
    }
    CHECK(nn_st_meta(&st, "absent") == NULL);
    CHECK(nn_st_find(&st, "absent") == NULL);
    nn_st_free(&st);
}

/* The writer's exact bytes for a tiny file: pins the format independently of
 * the reader. */
static void test_writer_bytes(void) {
    const int64_t shape[] = {2};
    const float v[] = {1.5f, -2.0f};
    const nn_st_entry e = {"w", 1, shape, v};
    const char *k[] = {"format"}, *val[] = {"pt"};
    const char *path = tmp_path("golden.safetensors");
    CHECKF(nn_st_save(path, &e, 1, k, val, 1) == 0, "%s", nn_last_error());

    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    unsigned char want[256] = {0};
    want[0] = (unsigned char)padded; /* < 256, so the other 7 length bytes are 0 */
    memcpy(want + 8, json, n);
    memset(want + 8 + n, ' ', padded - n);
    memcpy(want + 8 + padded, "\x00\x00\xc0\x3f\x00\x00\x00\xc0", 8); /* 1.5f, -2.0f */

    size_t len;
    unsigned char *got = slurp(path, &len);
    if (!got) return;
    CHECKF(len == 16 + padded, "file is %zu bytes, expected %zu", len, 16 + padded);
    CHECKF(len == 16 + padded && memcmp(got, want, len) == 0, "header written: %.*s", (int)(len > 8 ? len - 8 : 0),
           (const char *)got + 8);
    free(got);
}

/* A file assembled byte by byte, as another writer might lay it out: other
 * key order, F16 next to F32, an unaligned data section, padding spaces. */
static void test_hand_assembled(void) {
    const char *json = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[2,10]},"
                       "\"__metadata__\":{\"format\":\"pt\"},"
                       "\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}   ";
    /* F16 1.0 = 0x3c00, then F32 1.5 and -2.0, all little-endian. */
    const unsigned char data[] = {0x00, 0x3c, 0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    size_t len;
    unsigned char *buf = assemble(json, data, sizeof data, &len);
    const char *path = tmp_path("hand.safetensors");
    spit(path, buf, len);
    free(buf);

    nn_safetensors st;
    CHECKF(nn_st_load(&st, path) == 0, "%s", nn_last_error());
    CHECK(st.n_tensors == 2 && st.n_meta == 1);
    CHECK(st.data_len == sizeof data);
    const nn_st_tensor *a = nn_st_find(&st, "a"), *b = nn_st_find(&st, "b");
    CHECK(a && strcmp(a->dtype, "F16") == 0 && a->offset == 0 && a->nbytes == 2);
    CHECK(b && b->ndim == 2 && b->shape[0] == 1 && b->shape[1] == 2 && b->offset == 2);
    float v[2] = {0};
    const int64_t shape[] = {1, 2};
    CHECKF(nn_st_read_f32(&st, "b", 2, shape, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == 1.5f && v[1] == -2.0f);
    const char *meta = nn_st_meta(&st, "format");
    CHECK(meta && strcmp(meta, "pt") == 0);

    /* F16 reads as floats too (exactly). */
    const int64_t one[] = {1};
    CHECKF(nn_st_read_f32(&st, "a", 1, one, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == 1.0f);
    nn_st_free(&st);
}

/* Parses a hand-assembled file that must be valid; returns 0 with *st set. */
static int parse_ok(const char *json, const void *data, size_t dlen, nn_safetensors *st) {
    size_t len;
    unsigned char *buf = assemble(json, data, dlen, &len);
    int rc = nn_st_parse(st, buf, len, "dt.safetensors");
    CHECKF(rc == 0, "%s", nn_last_error());
    free(buf);
    return rc;
}

/* One tensor `t` of this dtype and shape [n] over the bytes given, read as
 * floats into out: returns nn_st_read_f32's result. */
static int read_one(const char *dtype, int64_t n, const void *bytes, size_t nbytes, float *out) {
    char json[256];
    snprintf(json, sizeof json, "{\"t\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[0,%zu]}}", dtype,
             (long long)n, nbytes);
    nn_safetensors st;
    if (parse_ok(json, bytes, nbytes, &st) != 0) return -2;
    int rc = nn_st_read_f32(&st, "t", 1, &n, out);
    nn_st_free(&st);
    return rc;
}

/* The other dtypes PyTorch writes: integer counts (BatchNorm's
 * num_batches_tracked is int64 in a state_dict), little-endian and
 * sign-extended, accepted when exact as float32; F16/BF16 exactly; F64
 * rounded. Bytes are written out by hand, independently of the reader. */
static void test_read_other_dtypes(void) {
    /* A PyTorch-style file: an I64 scalar count next to F32 weights. */
    const char *json = "{\"bn1.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]}}";
    const unsigned char data[16] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, /* 1.0f, 2.0f */
                                    0xd2, 0x04, 0, 0, 0, 0, 0, 0};  /* 1234 */
    nn_safetensors st;
    if (parse_ok(json, data, sizeof data, &st) == 0) {
        float count = -1, w[2];
        const int64_t two[] = {2};
        CHECKF(nn_st_read_f32(&st, "bn1.num_batches_tracked", 0, NULL, &count) == 0, "%s", nn_last_error());
        CHECK(count == 1234.0f);
        CHECK(nn_st_read_f32(&st, "bn1.weight", 1, two, w) == 0 && w[0] == 1.0f && w[1] == 2.0f);
        /* The shape is still checked for an integer tensor. */
        CHECK(nn_st_read_f32(&st, "bn1.num_batches_tracked", 1, two, &count) == -1);
        CHECKF(strstr(nn_last_error(), "tensor 'bn1.num_batches_tracked' has shape [], expected [2]"), "%s",
               nn_last_error());
        nn_st_free(&st);
    }

    float v[8];
    /* I64: negative values are two's complement, little-endian; +-2^24 is the exact limit. */
    const unsigned char i64[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  /* -1 */
                                 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff,  /* -2^24 */
                                 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  /* 2^24 */
                                 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}; /* 258 */
    CHECKF(read_one("I64", 4, i64, sizeof i64, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == -1.0f && v[1] == -16777216.0f && v[2] == 16777216.0f && v[3] == 258.0f);
    const unsigned char i32[] = {0xf9, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0x00}; /* -7, 65536 */
    CHECKF(read_one("I32", 2, i32, sizeof i32, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == -7.0f && v[1] == 65536.0f);
    const unsigned char i16[] = {0x00, 0x80, 0xff, 0x7f, 0xfe, 0xff}; /* -32768, 32767, -2 */
    CHECKF(read_one("I16", 3, i16, sizeof i16, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == -32768.0f && v[1] == 32767.0f && v[2] == -2.0f);
    const unsigned char i8[] = {0x80, 0x7f, 0xff}; /* -128, 127, -1 */
    CHECKF(read_one("I8", 3, i8, sizeof i8, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == -128.0f && v[1] == 127.0f && v[2] == -1.0f);
    const unsigned char u8[] = {0x00, 0xff, 0x80}; /* unsigned: no sign extension */
    CHECKF(read_one("U8", 3, u8, sizeof u8, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == 0.0f && v[1] == 255.0f && v[2] == 128.0f);
    const unsigned char u16[] = {0xff, 0xff};
    CHECK(read_one("U16", 1, u16, sizeof u16, v) == 0 && v[0] == 65535.0f);
    const unsigned char u32[] = {0x00, 0x00, 0x00, 0x01}; /* 2^24 */
    CHECK(read_one("U32", 1, u32, sizeof u32, v) == 0 && v[0] == 16777216.0f);
    const unsigned char u64[] = {0x03, 0, 0, 0, 0, 0, 0, 0};
    CHECK(read_one("U64", 1, u64, sizeof u64, v) == 0 && v[0] == 3.0f);

    /* A value float32 cannot hold exactly: refused, naming tensor, value and index. */
    const unsigned char big[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0}; /* 0, 2^24 + 1 */
    CHECK(read_one("I64", 2, big, sizeof big, v) == -1);
    CHECKF(strstr(nn_last_error(), "dt.safetensors: tensor 't' holds I64 value 16777217 at index 1, not exact as "
                                   "float32 (|v| <= 2^24)"),
           "%s", nn_last_error());
    CHECK(strchr(nn_last_error(), '\n') == NULL);
    const unsigned char neg_big[] = {0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff}; /* -2^24 - 1 */
    CHECK(read_one("I64", 1, neg_big, sizeof neg_big, v) == -1);
    CHECKF(strstr(nn_last_error(), "holds I64 value -16777217 at index 0"), "%s", nn_last_error());
    const unsigned char min64[] = {0, 0, 0, 0, 0, 0, 0, 0x80}; /* INT64_MIN: no overflow in |v| */
    CHECK(read_one("I64", 1, min64, sizeof min64, v) == -1);
    CHECKF(strstr(nn_last_error(), "holds I64 value -9223372036854775808"), "%s", nn_last_error());
    const unsigned char max_u64[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    CHECK(read_one("U64", 1, max_u64, sizeof max_u64, v) == -1);
    CHECKF(strstr(nn_last_error(), "holds U64 value 18446744073709551615 at index 0"), "%s", nn_last_error());
    const unsigned char max_i32[] = {0xff, 0xff, 0xff, 0x7f};
    CHECK(read_one("I32", 1, max_i32, sizeof max_i32, v) == -1);
    CHECKF(strstr(nn_last_error(), "holds I32 value 2147483647"), "%s", nn_last_error());
    const unsigned char max_u32[] = {0xff, 0xff, 0xff, 0xff};
    CHECK(read_one("U32", 1, max_u32, sizeof max_u32, v) == -1);
    CHECKF(strstr(nn_last_error(), "holds U32 value 4294967295"), "%s", nn_last_error());

    /* F16: normal, negative, largest, smallest subnormal (2^-24), infinity. */
    const unsigned char f16[] = {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c, 0x00, 0x80};
    CHECKF(read_one("F16", 6, f16, sizeof f16, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == 1.0f && v[1] == -2.0f && v[2] == 65504.0f && v[3] == ldexpf(1.0f, -24) && isinf(v[4]) && v[4] > 0);
    CHECK(v[5] == 0.0f && signbit(v[5])); /* -0 */
    /* BF16: the top 16 bits of a float. */
    const unsigned char bf16[] = {0xc0, 0x3f, 0x49, 0xc0}; /* 1.5, -3.140625 */
    CHECKF(read_one("BF16", 2, bf16, sizeof bf16, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == 1.5f && v[1] == -3.140625f);
    /* F64: rounded to the nearest float; beyond float32's range refused. */
    double d[3] = {0.1, -2.5, 1e-300};
    unsigned char f64[24];
    for (int i = 0; i < 3; i++) {
        uint64_t u;
        memcpy(&u, &d[i], 8);
        for (int b = 0; b < 8; b++) f64[8 * i + b] = (unsigned char)(u >> (8 * b));
    }
    CHECKF(read_one("F64", 3, f64, sizeof f64, v) == 0, "%s", nn_last_error());
    CHECK(v[0] == 0.1f && v[1] == -2.5f && v[2] == 0.0f);
    const unsigned char f64_big[] = {0, 0, 0, 0, 0, 0, 0xf0, 0x47}; /* 2^128 */
    CHECK(read_one("F64", 1, f64_big, sizeof f64_big, v) == -1);
    CHECKF(strstr(nn_last_error(), "tensor 't' holds F64 value 3.4028236692093846e+38 at index 0, beyond float32's "
                                   "range"),
           "%s", nn_last_error());

    /* BOOL and the F8 types are no numbers to read. */
    const unsigned char one_byte[] = {1};
    CHECK(read_one("BOOL", 1, one_byte, 1, v) == -1);
    CHECKF(strstr(nn_last_error(), "tensor 't' has dtype BOOL, expected F32"), "%s", nn_last_error());
    CHECK(read_one("F8_E4M3", 1, one_byte, 1, v) == -1);
    CHECKF(strstr(nn_last_error(), "has dtype F8_E4M3, expected F32"), "%s", nn_last_error());
}

static void test_read_f32_errors(void) {
    const int64_t shape[] = {2, 3}, transposed[] = {3, 2};
    const float v[6] = {0};
    const nn_st_entry e = {"fc1.weight", 2, shape, v};
    const char *path = tmp_path("small.safetensors");
    CHECKF(nn_st_save(path, &e, 1, NULL, NULL, 0) == 0, "%s", nn_last_error());
    nn_safetensors st;
    CHECKF(nn_st_load(&st, path) == 0, "%s", nn_last_error());
    float dst[6];
    CHECK(nn_st_read_f32(&st, "fc2.weight", 2, shape, dst) == -1);
    CHECKF(strstr(nn_last_error(), "small.safetensors: no tensor named 'fc2.weight'"), "%s", nn_last_error());
    /* Same element count, wrong layout: refused, both shapes named. */
    CHECK(nn_st_read_f32(&st, "fc1.weight", 2, transposed, dst) == -1);
    CHECKF(strstr(nn_last_error(), "tensor 'fc1.weight' has shape [2, 3], expected [3, 2]"), "%s", nn_last_error());
    CHECK(nn_st_read_f32(&st, "fc1.weight", 1, shape, dst) == -1);
    CHECKF(strstr(nn_last_error(), "has shape [2, 3], expected [2]"), "%s", nn_last_error());
    CHECK(st.n_meta == 0 && nn_st_meta(&st, "x") == NULL);
    nn_st_free(&st);

    CHECK(nn_st_load(&st, tmp_path("missing.safetensors")) == -1);
    CHECKF(strstr(nn_last_error(), "missing.safetensors: No such file or directory"), "%s", nn_last_error());
}

#define T(json) "{\"t\":" json "}"

static void test_malformed_framing(void) {
    expect_bad_buf((const unsigned char *)"\x05\x00\x00", 3, "file is 3 bytes, too short");
    expect_bad_buf((const unsigned char *)"", 0, "file is 0 bytes");

    unsigned char buf[20] = {0};
    expect_bad_buf(buf, sizeof buf, "header length 0");
    buf[0] = 0x7f, buf[1] = 0x96, buf[2] = 0x98; /* 9999999 */
    expect_bad_buf(buf, sizeof buf, "header length 9999999 exceeds file size 20");
    memset(buf, 0xff, 8); /* 2^64 - 1: no wrap-around in the bound */
    expect_bad_buf(buf, sizeof buf, "header length 18446744073709551615 exceeds file size 20");
    buf[0] = 13, memset(buf + 1, 0, 7); /* one byte past the end */
    expect_bad_buf(buf, sizeof buf, "header length 13 exceeds file size 20");

    /* A header above 100 MB is refused even when the file is that large. */
    size_t big = 100 * 1000 * 1000 + 1;
    unsigned char *huge = calloc(8 + big, 1);
    if (huge) {
        for (int i = 0; i < 8; i++) huge[i] = (unsigned char)((uint64_t)big >> (8 * i));
        expect_bad_buf(huge, 8 + big, "header length 100000001 exceeds the 100000000-byte limit");
        free(huge);
    }

    /* Truncated on disk: the reader sees fewer bytes than the header claims. */
    const int64_t shape[] = {4};
    const float v[4] = {1, 2, 3, 4};
    const nn_st_entry e = {"x", 1, shape, v};
    const char *path = tmp_path("trunc.safetensors");
    CHECKF(nn_st_save(path, &e, 1, NULL, NULL, 0) == 0, "%s", nn_last_error());
    size_t len;
    unsigned char *whole = slurp(path, &len);
    if (!whole) return;
    expect_bad_buf(whole, len - 1, "data_offsets end 16 is past the data section (15 bytes)");
    expect_bad_buf(whole, 20, "exceeds file size 20");
    expect_bad_buf(whole, 4, "file is 4 bytes");
    spit(path, whole, len - 3);
    nn_safetensors st;
    CHECK(nn_st_load(&st, path) == -1);
    CHECKF(strstr(nn_last_error(), "trunc.safetensors: tensor 'x': data_offsets end 16 is past"), "%s",
           nn_last_error());
    free(whole);
}

static void test_malformed_json(void) {
    expect_bad("{\"t\": ", 0, "header is not valid JSON");
    expect_bad("[1, 2]", 0, "header is not a JSON object");
    expect_bad("\"x\"", 0, "header is not a JSON object");
    expect_bad("{} x", 0, "text after the JSON object (byte 3)");
    expect_bad("{\"\xff\": 1}", 0, "not valid UTF-8 (byte 2)");
    expect_bad("{\"\xc0\xaf\": 1}", 0, "not valid UTF-8");     /* overlong '/' */
    expect_bad("{\"\xed\xa0\x80\": 1}", 0, "not valid UTF-8"); /* surrogate */
    unsigned char nul[] = {3, 0, 0, 0, 0, 0, 0, 0, '{', 0, '}'};
    expect_bad_buf(nul, sizeof nul, "not valid UTF-8 (byte 1)");
    expect_bad("{}", 4, "4 bytes of data but no tensors");
}

static void test_malformed_tensors(void) {
    expect_bad(T("3"), 0, "tensor 't': entry is not an object");
    expect_bad(T("{\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "tensor 't': missing or non-string dtype");
    expect_bad(T("{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "tensor 't': unknown dtype 'F33'");
    expect_bad(T("{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}"), 4, "unknown dtype 'f32'");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}"), 4, "missing or non-array shape");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1,-2],\"data_offsets\":[0,4]}"), 4,
               "shape[1] is not a non-negative integer");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}"), 4, "shape[0] is not a non-negative");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}"), 4, "shape[0] is not");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}"), 4, "shape[0] is not");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[9007199254740994],\"data_offsets\":[0,4]}"), 4, "shape[0] is not");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}"), 4,
               "shape has 9 dims (limit 8)");
    /* Element count times element size overflows 64 bits; a zero dim later does not excuse it. */
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}"), 0,
               "shape [4294967296, 4294967296] is too large");
    expect_bad(T("{\"dtype\":\"F64\",\"shape\":[9007199254740992,512],\"data_offsets\":[0,0]}"), 0, "too large");
    expect_bad(T("{\"dtype\":\"U8\",\"shape\":[9007199254740992,9007199254740992,0],\"data_offsets\":[0,0]}"), 0,
               "too large");

    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1]}"), 4, "data_offsets is not a pair of non-negative integers");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}"), 4, "data_offsets is not a pair");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}"), 8, "data_offsets is not a pair");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}"), 4, "data_offsets is not a pair");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}"), 8, "data_offsets is not a pair");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}"), 4, "data_offsets [4, 0] begin after end");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"), 4,
               "tensor 't': data_offsets end 8 is past the data section (4 bytes)");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}"), 12, "end 16 is past the data section");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}"), 4,
               "tensor 't': data_offsets span 4 bytes but F32 shape [2] needs 8");
    expect_bad(T("{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,4]}"), 4, "BF16 shape [2, 2] needs 8");
}

static void test_malformed_layout(void) {
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    /* Listed in the other order: found by sorting, not by header position. */
    expect_bad("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               12, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               4, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               12, "data bytes [4, 8) before tensor 'b' belong to no tensor");
    expect_bad(T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"), 8, "4 trailing bytes after the last tensor");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "duplicate tensor name 'a'");
}

static void test_malformed_metadata(void) {
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value for 'k' is not a string");
    expect_bad("{\"__metadata__\":{\"k\":\"v\",\"j\":null}}", 0, "__metadata__ value for 'j' is not a string");
    expect_bad("{\"__metadata__\":[\"k\"]}", 0, "__metadata__ is not an object");
    expect_bad("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate __metadata__ key 'k'");
    expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__");

    /* Accepted: null metadata, an empty header object, empty data. */
    const char *ok[] = {"{\"__metadata__\":null}", "{}  ", "{\"__metadata__\":{}}"};
    for (int i = 0; i < 3; i++) {
        size_t len;
        unsigned char *buf = assemble(ok[i], NULL, 0, &len);
        nn_safetensors st;
        CHECKF(nn_st_parse(&st, buf, len, "ok") == 0, "%s: %s", ok[i], nn_last_error());
        CHECK(st.n_tensors == 0 && st.n_meta == 0);
        nn_st_free(&st);
        free(buf);
    }
}

static void test_save_rejects_bad_entries(void) {
    const int64_t shape[] = {1}, neg[] = {-1};
    const float v[1] = {0};
    const nn_st_entry dup[] = {{"a", 1, shape, v}, {"a", 1, shape, v}};
    const char *path = tmp_path("never.safetensors");
    CHECK(nn_st_save(path, dup, 2, NULL, NULL, 0) == -1);
    CHECKF(strstr(nn_last_error(), "duplicate tensor name 'a'"), "%s", nn_last_error());
    const nn_st_entry bad_shape = {"a", 1, neg, v};
    CHECK(nn_st_save(path, &bad_shape, 1, NULL, NULL, 0) == -1);
    CHECKF(strstr(nn_last_error(), "tensor 'a' has an invalid shape [-1]"), "%s", nn_last_error());
    const nn_st_entry reserved = {"__metadata__", 1, shape, v};
    CHECK(nn_st_save(path, &reserved, 1, NULL, NULL, 0) == -1);
    const char *k[] = {"k", "k"}, *val[] = {"1", "2"};
    CHECK(nn_st_save(path, NULL, 0, k, val, 2) == -1);
    CHECKF(strstr(nn_last_error(), "duplicate metadata key 'k'"), "%s", nn_last_error());
    CHECK(access(path, F_OK) != 0); /* nothing was written */
}

/* Root ignores directory permissions, so failures are provoked in ways that
 * hold for root too: a missing directory, and a file-size limit that makes
 * write() fail halfway through the temporary file. */
static void test_atomic_save_failures(void) {
    const int64_t shape[] = {1000};
    float *v = calloc(1000, sizeof *v);
    const nn_st_entry e = {"w", 1, shape, v};
    const char *path = tmp_path("keep.safetensors");

    char missing[160];
    snprintf(missing, sizeof missing, "%s/no/such/dir/m.safetensors", tmp_dir);
    CHECK(nn_st_save(missing, &e, 1, NULL, NULL, 0) == -1);
    CHECKF(strstr(nn_last_error(), missing) && strstr(nn_last_error(), strerror(ENOENT)), "%s", nn_last_error());

    const int64_t one[] = {1};
    const float old_value = 7.0f;
    const nn_st_entry old = {"w", 1, one, &old_value};
    CHECKF(nn_st_save(path, &old, 1, NULL, NULL, 0) == 0, "%s", nn_last_error());
    size_t before_len, after_len;
    unsigned char *before = slurp(path, &before_len);

    struct rlimit saved, small;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    small = saved;
    small.rlim_cur = 1024; /* the new file needs ~4 KB */
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    int rc = nn_st_save(path, &e, 1, NULL, NULL, 0);
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    signal(SIGXFSZ, old_handler);
    CHECK(rc == -1);
    CHECKF(strstr(nn_last_error(), path) && strstr(nn_last_error(), strerror(EFBIG)), "%s", nn_last_error());

    unsigned char *after = slurp(path, &after_len);
    CHECK(before && after && before_len == after_len && memcmp(before, after, before_len) == 0);
    nn_safetensors st;
    float got = 0;
    CHECKF(nn_st_load(&st, path) == 0, "%s", nn_last_error());
    CHECK(nn_st_read_f32(&st, "w", 1, one, &got) == 0 && got == 7.0f);
    nn_st_free(&st);
    free(before);
    free(after);
    free(v);
}

TEST_MAIN(TEST(test_round_trip), TEST(test_writer_bytes), TEST(test_hand_assembled), TEST(test_read_other_dtypes),
          TEST(test_read_f32_errors),
          TEST(test_malformed_framing), TEST(test_malformed_json), TEST(test_malformed_tensors),
          TEST(test_malformed_layout), TEST(test_malformed_metadata), TEST(test_save_rejects_bad_entries),
          TEST(test_atomic_save_failures))
