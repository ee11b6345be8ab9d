/* Vocabularies of characters: id 0 the special token if the kind has one,
 * then the code points in increasing order, so an id is found by binary
 * search and the whole vocabulary is written as the characters in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/text.h"
#include "core/util.h"
#include "data/text_internal.h"

#define MAX_CODE_POINT 0x10FFFFu

static const char *const special_names[] = {
    [NN_VOCAB_NONE] = "none",
    [NN_VOCAB_BOUNDARY] = "boundary",
    [NN_VOCAB_PAD] = "pad",
};

static int first_char_id(const nn_vocab *v) {
    return v->special == NN_VOCAB_NONE ? 0 : 1;
}

static bool is_scalar_value(uint32_t cp) {
    return cp <= MAX_CODE_POINT && !(cp >= 0xD800 && cp <= 0xDFFF);
}

void text_char_name(char buf[TEXT_CHAR_NAME_CAP], uint32_t cp) {
    static const char escapes[][3] = {['\t'] = "\\t", ['\n'] = "\\n", ['\r'] = "\\r"};
    if (cp < 0x20 && escapes[cp][0]) {
        snprintf(buf, TEXT_CHAR_NAME_CAP, "'%s' (U+%04X)", escapes[cp], (unsigned)cp);
    } else if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) {
        snprintf(buf, TEXT_CHAR_NAME_CAP, "'\\x%02X' (U+%04X)", (unsigned)cp, (unsigned)cp);
    } else {
        char utf8[5] = {0};
        if (nn_utf8_encode(utf8, 4, cp) < 0) {
            snprintf(buf, TEXT_CHAR_NAME_CAP, "U+%04X", (unsigned)cp);
            return;
        }
        snprintf(buf, TEXT_CHAR_NAME_CAP, "'%s' (U+%04X)", utf8, (unsigned)cp);
    }
}

void text_vocab_copy(nn_vocab *dst, const nn_vocab *src) {
    dst->special = src->special;
    dst->size = src->size;
    dst->chars = nn_xmalloc((size_t)src->size * sizeof *dst->chars);
    memcpy(dst->chars, src->chars, (size_t)src->size * sizeof *dst->chars);
}

int nn_vocab_build(nn_vocab *v, nn_vocab_special special, const uint32_t *cps, size_t n) {
    memset(v, 0, sizeof *v);
    if (n == 0) return nn_error("no characters to build a vocabulary from");
    /* One bit per code point (136 KiB): marking is one pass, and reading
     * the bits in order gives the characters sorted. */
    uint64_t *seen = nn_xcalloc(MAX_CODE_POINT / 64 + 1, sizeof *seen);
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = cps[i];
        if (cp == 0 || !is_scalar_value(cp)) {
            free(seen);
            return nn_error("U+%04X cannot be in a vocabulary (%s)", (unsigned)cp,
                            cp == 0 ? "NUL" : "not a Unicode scalar value");
        }
        seen[cp / 64] |= (uint64_t)1 << (cp % 64);
    }
    int reserved = special == NN_VOCAB_NONE ? 0 : 1, count = reserved;
    for (uint32_t w = 0; w <= MAX_CODE_POINT / 64; w++) count += __builtin_popcountll(seen[w]);
    v->special = special;
    v->size = count;
    v->chars = nn_xmalloc((size_t)count * sizeof *v->chars);
    int id = 0;
    if (reserved) v->chars[id++] = 0;
    for (uint32_t w = 0; w <= MAX_CODE_POINT / 64; w++)
        for (uint64_t bits = seen[w]; bits; bits &= bits - 1)
            v->chars[id++] = w * 64 + (uint32_t)__builtin_ctzll(bits);
    free(seen);
    return 0;
}

void nn_vocab_free(nn_vocab *v) {
    free(v->chars);
    memset(v, 0, sizeof *v);
}

int nn_vocab_id(const nn_vocab *v, uint32_t cp) {
    int lo = first_char_id(v), hi = v->size - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (v->chars[mid] == cp) return mid;
        if (v->chars[mid] < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

int *nn_vocab_encode(const nn_vocab *v, const char *text, size_t len, size_t *n) {
    uint32_t *cps;
    size_t count;
    *n = 0;
    if (nn_utf8_decode(&cps, &count, text, len, "text") != 0) return NULL;
    int *ids = nn_xmalloc((count ? count : 1) * sizeof *ids);
    for (size_t i = 0; i < count; i++) {
        ids[i] = nn_vocab_id(v, cps[i]);
        if (ids[i] < 0) {
            char name[TEXT_CHAR_NAME_CAP];
            text_char_name(name, cps[i]);
            nn_error("character %s is not in the vocabulary (character %zu of the text, counted "
                     "from 1)",
                     name, i + 1);
            free(cps);
            free(ids);
            return NULL;
        }
    }
    free(cps);
    *n = count;
    return ids;
}

int nn_vocab_token(const nn_vocab *v, int id, char *buf, size_t cap) {
    if (id < 0 || id >= v->size) nn_fatal("nn_vocab_token: id %d outside 0..%d", id, v->size - 1);
    if (cap < 5) nn_fatal("nn_vocab_token: buffer of %zu bytes, needs 5", cap);
    int len = 0;
    if (id < first_char_id(v)) {
        if (v->special == NN_VOCAB_BOUNDARY) buf[len++] = '\n';
    } else {
        len = nn_utf8_encode(buf, cap, v->chars[id]);
        if (len < 0) nn_fatal("nn_vocab_token: %s", nn_last_error());
    }
    buf[len] = '\0';
    return len;
}

char *nn_vocab_decode(const nn_vocab *v, const int *ids, size_t n) {
    char *out = nn_xmalloc(4 * n + 1), *p = out;
    for (size_t i = 0; i < n; i++) p += nn_vocab_token(v, ids[i], p, 5);
    *p = '\0';
    return out;
}

char *nn_vocab_to_string(const nn_vocab *v) {
    const char *name = special_names[v->special];
    size_t name_len = strlen(name);
    char *out = nn_xmalloc(name_len + 1 + 4 * (size_t)v->size + 1);
    memcpy(out, name, name_len);
    char *p = out + name_len;
    *p++ = ':';
    for (int id = first_char_id(v); id < v->size; id++) {
        int len = nn_utf8_encode(p, 4, v->chars[id]);
        if (len < 0) nn_fatal("nn_vocab_to_string: %s", nn_last_error());
        p += len;
    }
    *p = '\0';
    return out;
}

int nn_vocab_parse(nn_vocab *v, const char *s, const char *source) {
    memset(v, 0, sizeof *v);
    const char *colon = strchr(s, ':');
    if (!colon)
        return nn_error("%s: vocabulary: no ':' after the special token's name (none, boundary "
                        "or pad)",
                        source);
    size_t name_len = (size_t)(colon - s);
    int special = -1;
    for (int k = 0; k < (int)(sizeof special_names / sizeof special_names[0]); k++)
        if (strlen(special_names[k]) == name_len && memcmp(s, special_names[k], name_len) == 0)
            special = k;
    if (special < 0)
        return nn_error("%s: vocabulary: unknown special token '%.*s' (expected none, boundary "
                        "or pad)",
                        source, name_len > 40 ? 40 : (int)name_len, s);
    /* The whole string is decoded, so byte offsets in messages count from its start. */
    size_t len = strlen(s), count;
    uint32_t *cps;
    size_t src_len = strlen(source) + sizeof ": vocabulary";
    char *src = nn_xmalloc(src_len);
    snprintf(src, src_len, "%s: vocabulary", source);
    int rc = nn_utf8_decode(&cps, &count, s, len, src);
    free(src);
    if (rc != 0) return -1;
    const uint32_t *chars = cps + name_len + 1; /* the name and ':' are ASCII */
    size_t n_chars = count - name_len - 1;
    int reserved = special == NN_VOCAB_NONE ? 0 : 1;
    if (n_chars == 0) {
        free(cps);
        return nn_error("%s: vocabulary: no characters after '%s:'", source, special_names[special]);
    }
    if (n_chars > (size_t)(INT32_MAX - reserved)) {
        free(cps);
        return nn_error("%s: vocabulary: %zu characters, too many", source, n_chars);
    }
    for (size_t i = 1; i < n_chars; i++) {
        if (chars[i] <= chars[i - 1]) {
            char a[TEXT_CHAR_NAME_CAP], b[TEXT_CHAR_NAME_CAP];
            text_char_name(a, chars[i - 1]);
            text_char_name(b, chars[i]);
            free(cps);
            return nn_error("%s: vocabulary: %s after %s (character %zu): the characters must be "
                            "in increasing order, each once",
                            source, b, a, i + 1);
        }
    }
    v->special = (nn_vocab_special)special;
    v->size = (int)n_chars + reserved;
    v->chars = nn_xmalloc((size_t)v->size * sizeof *v->chars);
    if (reserved) v->chars[0] = 0;
    memcpy(v->chars + reserved, chars, n_chars * sizeof *chars);
    free(cps);
    return 0;
}
