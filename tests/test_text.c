/* Text data (nn/text.h): strict UTF-8, vocabularies and their metadata
 * string, the layout rule, the splits of the real data sets (read from the
 * committed datasets/, else data/), and the batches the training loop draws. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "nn/error.h"
#include "nn/text.h"

/* ---- a scratch folder, removed at exit ---- */

static char scratch[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_scratch(void) {
    nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* scratch/name in a static buffer (one of a few, reused in turn). */
static const char *tmp(const char *name) {
    static char bufs[8][256];
    static int next;
    if (!scratch[0]) {
        strcpy(scratch, "/tmp/nn_test_text_XXXXXX");
        if (!mkdtemp(scratch)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(remove_scratch);
    }
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", scratch, name);
    return b;
}

static const char *make_dir(const char *name) {
    const char *path = tmp(name);
    if (mkdir(path, 0755) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}

static const char *write_file(const char *name, const void *data, size_t len) {
    const char *path = tmp(name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}

static const char *write_text(const char *name, const char *text) {
    return write_file(name, text, strlen(text));
}

static bool has(const char *haystack, const char *needle) {
    return strstr(haystack, needle) != NULL;
}

#define CHECK_ERROR(call, ...)                                                      \
    do {                                                                            \
        int rc_ = (call);                                                           \
        CHECKF(rc_ == -1, "%s returned %d", #call, rc_);                            \
        const char *want_[] = {__VA_ARGS__};                                        \
        for (size_t k_ = 0; k_ < sizeof want_ / sizeof want_[0]; k_++)              \
            CHECKF(has(nn_last_error(), want_[k_]), "error '%s' lacks '%s'",        \
                   nn_last_error(), want_[k_]);                                     \
        CHECKF(!strchr(nn_last_error(), '\n'), "error on several lines: %s",         \
               nn_last_error());                                                    \
    } while (0)

/* The committed copy of a data set, else the one `make data` put in data/. */
static const char *dataset_path(const char *name) {
    static char path[256];
    struct stat st;
    snprintf(path, sizeof path, "datasets/%s", name);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return path;
    snprintf(path, sizeof path, "data/%s", name);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return path;
    return NULL;
}

/* ---- UTF-8 ---- */

static void test_utf8_decodes_every_length(void) {
    /* "a", "é" (2 bytes), "€" (3), "😀" (4), and the edges of each length */
    static const char text[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"
                               "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80"
                               "\xF4\x8F\xBF\xBF";
    static const uint32_t want[] = {'a',    0xE9,   0x20AC, 0x1F600, 0x7F,    0x80,
                                    0x7FF,  0x800,  0xFFFF, 0x10000, 0x10FFFF};
    uint32_t *cps;
    size_t n;
    CHECK(nn_utf8_decode(&cps, &n, text, sizeof text - 1, "t") == 0);
    CHECK(n == sizeof want / sizeof want[0]);
    for (size_t i = 0; i < n && i < sizeof want / sizeof want[0]; i++)
        CHECKF(cps[i] == want[i], "code point %zu: U+%04X, expected U+%04X", i, cps[i], want[i]);
    /* and back, byte for byte */
    char out[64];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int k = nn_utf8_encode(out + len, sizeof out - len, cps[i]);
        CHECK(k >= 1 && k <= 4);
        len += (size_t)k;
    }
    CHECK(len == sizeof text - 1 && memcmp(out, text, len) == 0);
    free(cps);
    CHECK(nn_utf8_decode(&cps, &n, "", 0, "t") == 0 && n == 0 && cps);
    free(cps);
}

static void test_utf8_refuses_bad_sequences(void) {
    static const struct {
        const char *bytes;
        const char *what;
    } bad[] = {
        {"ab\xC0\xAF", "overlong 2-byte"},        /* "/" in two bytes */
        {"ab\xC1\xBF", "overlong 2-byte"},
        {"ab\xE0\x80\xAF", "overlong 3-byte"},
        {"ab\xF0\x80\x80\xAF", "overlong 4-byte"},
        {"ab\xED\xA0\x80", "surrogate U+D800"},
        {"ab\xED\xBF\xBF", "surrogate U+DFFF"},
        {"ab\xE2\x82", "truncated"},              /* ends inside a 3-byte sequence */
        {"ab\xF0\x9F\x98", "truncated"},
        {"ab\xC3", "truncated"},
        {"ab\xE2\x41\x41", "truncated"},          /* a non-continuation byte inside */
        {"ab\xF4\x90\x80\x80", "above U+10FFFF"},
        {"ab\x80z", "continuation byte 0x80"},
        {"ab\xBFz", "continuation byte 0xBF"},
        {"ab\xFF", "0xFF never occurs"},
        {"ab\xFE", "0xFE never occurs"},
        {"ab\xF8\x88\x80\x80\x80", "0xF8 never occurs"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t *cps = (uint32_t *)1;
        size_t n = 99;
        CHECK_ERROR(nn_utf8_decode(&cps, &n, bad[i].bytes, strlen(bad[i].bytes), "src.txt"),
                    "src.txt: invalid UTF-8 at byte 2: ", bad[i].what);
        CHECK(cps == NULL && n == 0);
    }
    /* Through a file: the file and the offset (2 + 3 + 1 bytes before it). */
    const char *path = write_text("bad-utf8.txt", "ab\xE2\x82\xAC" "c\xC0\xAF" "d");
    nn_text t;
    CHECK_ERROR(nn_text_load(&t, path, NN_TEXT_AUTO, 1, NULL), path,
                "invalid UTF-8 at byte 6: overlong");
    CHECK(t.vocab.chars == NULL && t.train.ids == NULL);
}

static void test_utf8_encode_refuses_non_characters(void) {
    char buf[4];
    CHECK_ERROR(nn_utf8_encode(buf, 4, 0xD800), "U+D800", "surrogate");
    CHECK_ERROR(nn_utf8_encode(buf, 4, 0x110000), "U+110000");
    CHECK_ERROR(nn_utf8_encode(buf, 2, 0x20AC), "U+20AC needs 3 bytes");
    CHECK(nn_utf8_encode(buf, 1, 'x') == 1 && buf[0] == 'x');
}

/* ---- vocabularies ---- */

static void build_vocab(nn_vocab *v, nn_vocab_special special, const char *text) {
    uint32_t *cps;
    size_t n;
    if (nn_utf8_decode(&cps, &n, text, strlen(text), "vocab text") != 0 ||
        nn_vocab_build(v, special, cps, n) != 0) {
        fprintf(stderr, "%s\n", nn_last_error());
        exit(1);
    }
    free(cps);
}

static bool same_vocab(const nn_vocab *a, const nn_vocab *b) {
    return a->special == b->special && a->size == b->size &&
           memcmp(a->chars, b->chars, (size_t)a->size * sizeof *a->chars) == 0;
}

static void test_vocab_sorted_with_special_first(void) {
    nn_vocab v;
    build_vocab(&v, NN_VOCAB_BOUNDARY, "banana\xC3\xA9");
    CHECK(v.size == 5); /* boundary, a, b, n, é */
    CHECK(v.chars[0] == 0 && v.chars[1] == 'a' && v.chars[2] == 'b' && v.chars[3] == 'n' &&
          v.chars[4] == 0xE9);
    CHECK(nn_vocab_id(&v, 'a') == 1 && nn_vocab_id(&v, 0xE9) == 4 && nn_vocab_id(&v, 'z') == -1);
    CHECK(nn_vocab_id(&v, 0) == -1); /* the special token is no character */
    int ids[] = {0, 2, 1, 3, 4, 0, 3};
    char *s = nn_vocab_decode(&v, ids, 7);
    CHECK(strcmp(s, "\nban\xC3\xA9\nn") == 0); /* the boundary ends a line */
    free(s);
    char tok[5];
    CHECK(nn_vocab_token(&v, 4, tok, sizeof tok) == 2 && strcmp(tok, "\xC3\xA9") == 0);
    nn_vocab_free(&v);
    nn_vocab_free(&v); /* harmless twice */

    build_vocab(&v, NN_VOCAB_NONE, "ba");
    CHECK(v.size == 2 && v.chars[0] == 'a' && nn_vocab_id(&v, 'a') == 0);
    nn_vocab_free(&v);
    build_vocab(&v, NN_VOCAB_PAD, "ba");
    CHECK(v.size == 3 && nn_vocab_token(&v, 0, tok, sizeof tok) == 0 && tok[0] == '\0');
    nn_vocab_free(&v);

    uint32_t nul = 0, surrogate = 0xDC00;
    CHECK_ERROR(nn_vocab_build(&v, NN_VOCAB_NONE, &nul, 1), "U+0000");
    CHECK_ERROR(nn_vocab_build(&v, NN_VOCAB_NONE, &surrogate, 1), "U+DC00");
    CHECK_ERROR(nn_vocab_build(&v, NN_VOCAB_NONE, &nul, 0), "no characters");
}

static void test_vocab_encode_refuses_unknown_character(void) {
    nn_vocab v;
    build_vocab(&v, NN_VOCAB_NONE, "abc \n");
    size_t n;
    int *ids = nn_vocab_encode(&v, "cab a\n", 6, &n);
    CHECK(ids && n == 6 && ids[0] == nn_vocab_id(&v, 'c') && ids[5] == nn_vocab_id(&v, '\n'));
    free(ids);
    static const struct {
        const char *text, *want;
    } unknown[] = {
        {"abZ", "character 'Z' (U+005A) is not in the vocabulary (character 3 "},
        {"a\xC3\xA9", "character '\xC3\xA9' (U+00E9) is not in the vocabulary (character 2 "},
        {"\xF0\x9F\x98\x80", "'\xF0\x9F\x98\x80' (U+1F600)"},
        {"a\tb", "'\\t' (U+0009)"},
        {"a\x01", "'\\x01' (U+0001)"},
    };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ids = nn_vocab_encode(&v, unknown[i].text, strlen(unknown[i].text), &n);
        CHECK(ids == NULL && n == 0);
        CHECKF(has(nn_last_error(), unknown[i].want), "'%s' lacks '%s'", nn_last_error(),
               unknown[i].want);
    }
    CHECK(nn_vocab_encode(&v, "a\xFF", 2, &n) == NULL && has(nn_last_error(), "byte 1"));
    ids = nn_vocab_encode(&v, "", 0, &n);
    CHECK(ids && n == 0);
    free(ids);
    nn_vocab_free(&v);
}

static void test_vocab_string_round_trip(void) {
    static const struct {
        nn_vocab_special special;
        const char *text, *string;
    } cases[] = {
        {NN_VOCAB_NONE, "hello, world:\n", "none:\n ,:dehlorw"},
        {NN_VOCAB_BOUNDARY, "emma", "boundary:aem"},
        {NN_VOCAB_PAD, "\xC5\xBB\xC3\xA9z\xF0\x9F\x98\x80\xE2\x82\xAC",
         "pad:z\xC3\xA9\xC5\xBB\xE2\x82\xAC\xF0\x9F\x98\x80"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_vocab v, back;
        build_vocab(&v, cases[i].special, cases[i].text);
        char *s = nn_vocab_to_string(&v);
        CHECKF(strcmp(s, cases[i].string) == 0, "'%s', expected '%s'", s, cases[i].string);
        CHECK(nn_vocab_parse(&back, s, "model.safetensors") == 0);
        CHECK(same_vocab(&v, &back));
        free(s);
        nn_vocab_free(&v);
        nn_vocab_free(&back);
    }
    nn_vocab v;
    CHECK_ERROR(nn_vocab_parse(&v, "abc", "m.st"), "m.st: vocabulary: no ':'");
    CHECK_ERROR(nn_vocab_parse(&v, "bos:abc", "m.st"), "m.st: vocabulary: unknown special token 'bos'");
    CHECK_ERROR(nn_vocab_parse(&v, "none:", "m.st"), "m.st: vocabulary: no characters");
    CHECK_ERROR(nn_vocab_parse(&v, "none:acb", "m.st"), "'b' (U+0062) after 'c' (U+0063)",
                "increasing order");
    CHECK_ERROR(nn_vocab_parse(&v, "pad:abb", "m.st"), "'b' (U+0062) after 'b'");
    CHECK_ERROR(nn_vocab_parse(&v, "none:ab\xC0\xAF", "m.st"),
                "m.st: vocabulary: invalid UTF-8 at byte 7: overlong");
    CHECK(v.chars == NULL && v.size == 0);
}

/* ---- the layout rule and the files ---- */

static void test_layout_rule(void) {
    static const char *const names = "emma\nolivia\r\nava\nisabella\nsophia\n";
    nn_text t;
    /* A folder of one .txt (a README and a hidden file beside it): a stream... */
    const char *dir = make_dir("stream");
    write_text("stream/book.txt", "To be, or not to be.");
    write_text("stream/README.md", "not data");
    write_text("stream/.notes.txt", "hidden");
    CHECK(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0 && t.kind == NN_TEXT_STREAM);
    CHECK(t.train.n_ids == 18 && t.val.n_ids == 2 && t.train.n_seqs == 0 && !t.train.offsets);
    CHECK(t.vocab.special == NN_VOCAB_NONE);
    nn_text_free(&t);
    /* ... so is a file given directly, whatever its name ... */
    const char *file = write_text("book", "0123456789abcdefghij");
    CHECK(nn_text_load(&t, file, NN_TEXT_AUTO, 1, NULL) == 0 && t.kind == NN_TEXT_STREAM);
    nn_text_free(&t);
    /* ... but names.txt and *.lines.txt are one sequence per line ... */
    dir = make_dir("names");
    write_text("names/names.txt", names);
    write_text("names/LICENSE", "MIT");
    CHECK(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0 && t.kind == NN_TEXT_LINES);
    CHECK(t.train.n_seqs + t.val.n_seqs == 5 && t.val.n_seqs == 1);
    CHECK(t.vocab.special == NN_VOCAB_BOUNDARY && nn_vocab_id(&t.vocab, '\r') < 0);
    nn_text_free(&t);
    file = write_text("pets.lines.txt", names);
    CHECK(nn_text_load(&t, file, NN_TEXT_AUTO, 1, NULL) == 0 && t.kind == NN_TEXT_LINES);
    nn_text_free(&t);
    /* ... unless a kind is given. */
    CHECK(nn_text_load(&t, file, NN_TEXT_STREAM, 1, NULL) == 0 && t.kind == NN_TEXT_STREAM);
    CHECK(t.train.n_ids + t.val.n_ids == strlen(names));
    nn_text_free(&t);
    /* Two or more .txt files: one per class, classes in the order of their
     * names without ".txt" ("a-b" sorts before "a" as a file name, not as a name). */
    dir = make_dir("classes");
    write_text("classes/a.txt", "x1\nx2\nx3\nx4\nx5\nx6\nx7\n");
    write_text("classes/a-b.txt", "y1\ny2\ny3\ny4\ny5\ny6\ny7\n");
    write_text("classes/README.md", "ignored");
    CHECK(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0 && t.kind == NN_TEXT_CLASSES);
    CHECK(t.n_classes == 2 && strcmp(t.class_names[0], "a") == 0 &&
          strcmp(t.class_names[1], "a-b") == 0);
    CHECK(t.vocab.special == NN_VOCAB_PAD && t.train.labels && t.val.n_seqs == 2);
    for (int i = 0; i < t.train.n_seqs; i++) {
        int first = t.train.ids[t.train.offsets[i]];
        CHECK(t.train.lengths[i] == 2 &&
              first == nn_vocab_id(&t.vocab, t.train.labels[i] == 0 ? 'x' : 'y'));
    }
    nn_text_free(&t);
    CHECK_ERROR(nn_text_load(&t, dir, NN_TEXT_STREAM, 1, NULL), dir, "2 .txt files");
}

static void test_bad_layouts_and_files(void) {
    nn_text t;
    const char *dir = make_dir("one-class");
    write_text("one-class/English.txt", "Smith\nJones\n");
    CHECK_ERROR(nn_text_load(&t, dir, NN_TEXT_CLASSES, 1, NULL), dir, "one class only (English)");
    dir = make_dir("no-txt");
    write_text("no-txt/README.md", "nothing");
    CHECK_ERROR(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL), dir, "no .txt file");
    CHECK_ERROR(nn_text_load(&t, tmp("missing"), NN_TEXT_AUTO, 1, NULL), "missing: ");
    const char *empty = write_file("empty.txt", "", 0);
    CHECK_ERROR(nn_text_load(&t, empty, NN_TEXT_AUTO, 1, NULL), empty, ": empty file");
    dir = make_dir("empty-class");
    write_text("empty-class/A.txt", "x\ny\n");
    const char *empty_class = write_file("empty-class/B.txt", "", 0);
    CHECK_ERROR(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL), empty_class, ": empty file");
    const char *nul = write_file("nul.txt", "ab\xC3\xA9\0c", 6);
    CHECK_ERROR(nn_text_load(&t, nul, NN_TEXT_AUTO, 1, NULL), nul, "NUL character", "byte 4");
    const char *blank = write_text("blank.lines.txt", "ann\nbob\n\ncid\n");
    CHECK_ERROR(nn_text_load(&t, blank, NN_TEXT_AUTO, 1, NULL), blank, "line 3 is empty");
    const char *one = write_text("one.lines.txt", "ann\n");
    CHECK_ERROR(nn_text_load(&t, one, NN_TEXT_AUTO, 1, NULL), one, "one line");
    const char *tiny = write_text("tiny.txt", "a");
    CHECK_ERROR(nn_text_load(&t, tiny, NN_TEXT_AUTO, 1, NULL), tiny, "too short");
    dir = make_dir("small-classes");
    write_text("small-classes/A.txt", "x\ny\n");
    write_text("small-classes/B.txt", "z\n");
    CHECK_ERROR(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL), dir, "validation");
    CHECK(t.kind == NN_TEXT_AUTO && t.vocab.chars == NULL && t.class_names == NULL);
}

static void test_load_with_a_given_vocabulary(void) {
    nn_vocab v, stream_vocab;
    build_vocab(&v, NN_VOCAB_BOUNDARY, "abcdemnor");
    build_vocab(&stream_vocab, NN_VOCAB_NONE, "abcdemnor");
    nn_text t;
    const char *ok = write_text("ok.lines.txt", "ann\nbob\ncarmen\ndora\n");
    CHECK(nn_text_load(&t, ok, NN_TEXT_AUTO, 1, &v) == 0 && same_vocab(&t.vocab, &v));
    nn_text_free(&t);
    /* 'é' of "zoé" starts at byte 15: "ann\nbob\ncarmen\nzo" */
    const char *bad = write_text("bad.lines.txt", "ann\nbob\ncarmen\nzo\xC3\xA9\n");
    CHECK_ERROR(nn_text_load(&t, bad, NN_TEXT_AUTO, 1, &v), bad,
                "byte 15: character 'z' (U+007A) is not in the vocabulary");
    CHECK_ERROR(nn_text_load(&t, ok, NN_TEXT_AUTO, 1, &stream_vocab), ok,
                "lines data needs a vocabulary with a boundary token");
    nn_vocab_free(&v);
    nn_vocab_free(&stream_vocab);
}

/* ---- the real data sets ---- */

static void test_tinyshakespeare(void) {
    const char *dir = dataset_path("tinyshakespeare");
    if (!dir) {
        SKIP("no datasets/tinyshakespeare nor data/tinyshakespeare (make data DATASET=tinyshakespeare)");
        return;
    }
    nn_text t;
    if (nn_text_load(&t, dir, NN_TEXT_AUTO, 1234, NULL) != 0) {
        CHECKF(0, "%s", nn_last_error());
        return;
    }
    CHECK(t.kind == NN_TEXT_STREAM);
    CHECKF(t.train.n_ids == 1003854 && t.val.n_ids == 111540, "%zu / %zu", t.train.n_ids,
           t.val.n_ids);
    CHECK(t.vocab.size == 65 && t.vocab.special == NN_VOCAB_NONE);
    /* built from the training split: each of the 65 occurs there */
    bool seen[65] = {false};
    for (size_t i = 0; i < t.train.n_ids; i++) seen[t.train.ids[i]] = true;
    for (int id = 0; id < 65; id++) CHECKF(seen[id], "id %d not in the training split", id);
    char *s = nn_vocab_to_string(&t.vocab);
    CHECK(strcmp(s, "none:\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == 0);
    nn_vocab back;
    CHECK(nn_vocab_parse(&back, s, "shakespeare") == 0 && same_vocab(&back, &t.vocab));
    nn_vocab_free(&back);
    free(s);
    char *head = nn_vocab_decode(&t.vocab, t.train.ids, 14);
    CHECK(strcmp(head, "First Citizen:") == 0);
    free(head);
    /* a stream's split does not depend on the seed */
    nn_text u;
    CHECK(nn_text_load(&u, dir, NN_TEXT_AUTO, 99, NULL) == 0);
    CHECK(u.val.n_ids == t.val.n_ids &&
          memcmp(u.val.ids, t.val.ids, t.val.n_ids * sizeof *t.val.ids) == 0);
    nn_text_free(&u);
    nn_text_free(&t);
}

static void test_names(void) {
    const char *dir = dataset_path("names");
    if (!dir) {
        SKIP("no datasets/names nor data/names (make data DATASET=names)");
        return;
    }
    nn_text t;
    if (nn_text_load(&t, dir, NN_TEXT_AUTO, 42, NULL) != 0) {
        CHECKF(0, "%s", nn_last_error());
        return;
    }
    CHECK(t.kind == NN_TEXT_LINES);
    /* 32,033 names (wc -l says 32,032: the last line has no line break) */
    CHECKF(t.train.n_seqs == 28829 && t.val.n_seqs == 3204, "%d / %d", t.train.n_seqs,
           t.val.n_seqs);
    char *s = nn_vocab_to_string(&t.vocab);
    CHECK(strcmp(s, "boundary:abcdefghijklmnopqrstuvwxyz") == 0 && t.vocab.size == 27);
    free(s);
    const nn_text_split *splits[] = {&t.train, &t.val};
    for (int k = 0; k < 2; k++) {
        const nn_text_split *sp = splits[k];
        size_t total = 0;
        bool ok = true;
        for (int i = 0; i < sp->n_seqs; i++) {
            const int *seq = sp->ids + sp->offsets[i];
            int len = sp->lengths[i];
            ok &= len >= 3 && len <= sp->max_len && seq[0] == NN_TEXT_BOUNDARY &&
                  seq[len - 1] == NN_TEXT_BOUNDARY && sp->offsets[i] == total;
            for (int j = 1; j < len - 1; j++) ok &= seq[j] != NN_TEXT_BOUNDARY;
            total += (size_t)len;
        }
        CHECK(ok && total == sp->n_ids && sp->labels == NULL);
    }
    CHECK(t.train.max_len == 17 || t.val.max_len == 17); /* 15 letters and two boundaries */
    nn_text_free(&t);
}

static void test_names_by_language(void) {
    const char *dir = dataset_path("names-by-language");
    if (!dir) {
        SKIP("no datasets/names-by-language nor data/names-by-language (make data "
             "DATASET=names-by-language)");
        return;
    }
    nn_text t;
    if (nn_text_load(&t, dir, NN_TEXT_AUTO, 7, NULL) != 0) {
        CHECKF(0, "%s", nn_last_error());
        return;
    }
    static const char *const langs[] = {
        "Arabic", "Chinese", "Czech",    "Dutch",   "English", "French",
        "German", "Greek",   "Irish",    "Italian", "Japanese", "Korean",
        "Polish", "Portuguese", "Russian", "Scottish", "Spanish", "Vietnamese"};
    CHECK(t.kind == NN_TEXT_CLASSES && t.n_classes == 18);
    for (int c = 0; c < t.n_classes && c < 18; c++) CHECK(strcmp(t.class_names[c], langs[c]) == 0);
    CHECKF(t.train.n_seqs + t.val.n_seqs == 20050, "%d + %d", t.train.n_seqs, t.val.n_seqs);
    /* 15% of each class, rounded down: Arabic 2000 -> 300, Korean 94 -> 14 */
    int val_of[18] = {0}, train_of[18] = {0};
    for (int i = 0; i < t.val.n_seqs; i++) val_of[t.val.labels[i]]++;
    for (int i = 0; i < t.train.n_seqs; i++) train_of[t.train.labels[i]]++;
    CHECK(val_of[0] == 300 && train_of[0] == 1700 && val_of[11] == 14 && train_of[11] == 80);
    for (int c = 0; c < 18; c++) CHECK(val_of[c] == (val_of[c] + train_of[c]) * 15 / 100);
    CHECK(t.vocab.special == NN_VOCAB_PAD && nn_vocab_id(&t.vocab, 0xC9) > 0); /* É */
    /* the same vocabulary for another seed: every character of the files */
    nn_text u;
    CHECK(nn_text_load(&u, dir, NN_TEXT_AUTO, 8, NULL) == 0 && same_vocab(&u.vocab, &t.vocab));
    nn_text_free(&u);
    nn_text_free(&t);
}

/* ---- seeded splits ---- */

static const char *many_lines(void) {
    static const char *path;
    if (!path) {
        char text[4000], *p = text;
        for (int i = 0; i < 300; i++) p += sprintf(p, "n%c%c\n", 'a' + i % 26, 'a' + i / 26);
        path = strdup(write_text("many.lines.txt", text));
    }
    return path;
}

static bool same_split(const nn_text_split *a, const nn_text_split *b) {
    return a->n_seqs == b->n_seqs && a->n_ids == b->n_ids &&
           memcmp(a->ids, b->ids, a->n_ids * sizeof *a->ids) == 0 &&
           memcmp(a->lengths, b->lengths, (size_t)a->n_seqs * sizeof *a->lengths) == 0;
}

static void test_seeded_splits_reproducible(void) {
    nn_text a, b, c;
    CHECK(nn_text_load(&a, many_lines(), NN_TEXT_AUTO, 5, NULL) == 0);
    CHECK(nn_text_load(&b, many_lines(), NN_TEXT_AUTO, 5, NULL) == 0);
    CHECK(nn_text_load(&c, many_lines(), NN_TEXT_AUTO, 6, NULL) == 0);
    CHECK(a.train.n_seqs == 270 && a.val.n_seqs == 30);
    CHECK(same_split(&a.train, &b.train) && same_split(&a.val, &b.val));
    CHECK(c.val.n_seqs == 30 && !same_split(&a.val, &c.val));
    CHECK(same_vocab(&a.vocab, &c.vocab));
    nn_text_free(&a);
    nn_text_free(&b);
    nn_text_free(&c);
}

/* ---- batches ---- */

static nn_text_split stream_of(int n) {
    nn_text_split s = {0};
    s.ids = malloc((size_t)n * sizeof *s.ids);
    for (int i = 0; i < n; i++) s.ids[i] = i;
    s.n_ids = (size_t)n;
    return s;
}

static void test_window_sampler(void) {
    enum { N = 5000, B = 8, T = 16 };
    nn_text_split s = stream_of(N);
    nn_text_sampler a, b, c;
    CHECK(nn_text_sampler_init(&a, &s, T, 11) == 0);
    CHECK(nn_text_sampler_init(&b, &s, T, 11) == 0);
    CHECK(nn_text_sampler_init(&c, &s, T, 12) == 0);
    int xa[B * T], ya[B * T], xb[B * T], yb[B * T], xc[B * T], yc[B * T];
    for (int step = 0; step < 200; step++) {
        nn_text_sampler_next(&a, B, xa, ya);
        nn_text_sampler_next(&b, B, xb, yb);
        CHECK(memcmp(xa, xb, sizeof xa) == 0 && memcmp(ya, yb, sizeof ya) == 0);
        for (int i = 0; i < B; i++) {
            const int *x = xa + i * T, *y = ya + i * T;
            /* a window of the stream: consecutive ids here */
            bool ok = true;
            for (int t = 1; t < T; t++) ok &= x[t] == x[t - 1] + 1;
            /* targets are the inputs shifted by one */
            for (int t = 0; t + 1 < T; t++) ok &= y[t] == x[t + 1];
            ok &= y[T - 1] == x[T - 1] + 1 && x[0] >= 0 && y[T - 1] <= N - 1;
            CHECK(ok);
        }
    }
    nn_text_sampler_next(&c, B, xc, yc);
    nn_text_sampler_next(&a, B, xa, ya);
    CHECK(memcmp(xa, xc, sizeof xa) != 0); /* another seed, other windows */
    nn_text_split small = stream_of(T);
    CHECK_ERROR(nn_text_sampler_init(&c, &small, T, 1), "16 tokens, too few for a window of 16 + 1");
    free(small.ids);
    /* the last window that fits is drawn: a stream of T + 1 tokens has one */
    small = stream_of(T + 1);
    CHECK(nn_text_sampler_init(&c, &small, T, 1) == 0);
    nn_text_sampler_next(&c, 1, xc, yc);
    CHECK(xc[0] == 0 && yc[T - 1] == T);
    nn_text_sampler_free(&c);
    free(small.ids);
    free(s.ids);
}

static void test_validation_windows_fixed(void) {
    enum { N = 1001, T = 10 };
    nn_text_split s = stream_of(N);
    nn_text_windows w1, w2, spread;
    CHECK(nn_text_windows_init(&w1, &s, T, 0) == 0);
    CHECK(nn_text_windows_init(&w2, &s, T, 0) == 0);
    CHECK(w1.count == 100 && w2.count == 100); /* (1001 - 1) / 10 side by side */
    CHECK(memcmp(w1.starts, w2.starts, 100 * sizeof *w1.starts) == 0);
    for (int k = 0; k < 100; k++) CHECK(w1.starts[k] == (size_t)k * T);
    int x1[7 * T], y1[7 * T], x2[7 * T], y2[7 * T];
    int got = 0;
    for (int first = 0; first < w1.count; first += 7) {
        int n1 = nn_text_windows_batch(&w1, first, 7, x1, y1);
        int n2 = nn_text_windows_batch(&w2, first, 7, x2, y2);
        CHECK(n1 == n2 && memcmp(x1, x2, (size_t)n1 * T * sizeof *x1) == 0 &&
              memcmp(y1, y2, (size_t)n1 * T * sizeof *y1) == 0);
        for (int i = 0; i < n1; i++)
            for (int t = 0; t < T; t++)
                CHECK(x1[i * T + t] == (first + i) * T + t && y1[i * T + t] == x1[i * T + t] + 1);
        got += n1;
    }
    CHECK(got == 100 && nn_text_windows_batch(&w1, 100, 7, x1, y1) == 0);
    /* max_count at or above what fits: the side-by-side set */
    CHECK(nn_text_windows_init(&spread, &s, T, 500) == 0 && spread.count == 100);
    nn_text_windows_free(&spread);
    /* fewer: spread evenly from the first token to the last */
    CHECK(nn_text_windows_init(&spread, &s, T, 5) == 0 && spread.count == 5);
    CHECK(spread.starts[0] == 0 && spread.starts[4] == N - T - 1 && spread.starts[2] == 495);
    nn_text_windows_free(&spread);
    nn_text_windows_free(&w1);
    nn_text_windows_free(&w2);
    nn_text_windows_free(&w2); /* harmless twice */
    free(s.ids);
}

static void test_padded_batches(void) {
    nn_text t;
    const char *dir = make_dir("batches");
    write_text("batches/A.txt", "a\nbb\nccc\ndddd\neeeee\nf\ngg\n");
    write_text("batches/B.txt", "hhhhhhh\ni\njj\nkkk\nll\nm\nnnnn\n");
    CHECK(nn_text_load(&t, dir, NN_TEXT_AUTO, 3, NULL) == 0);
    CHECK(t.train.n_seqs == 12 && t.val.n_seqs == 2);
    nn_text_batcher b;
    CHECK(nn_text_batcher_init(&b, &t.train, 5, true, 9) == 0);
    CHECK(nn_text_batcher_num_batches(&b) == 3);
    int ids[5 * 7], lengths[5], labels[5], width, seen[12] = {0};
    for (int epoch = 0; epoch < 2; epoch++) {
        nn_text_batcher_start_epoch(&b);
        int n, total = 0, batches = 0;
        while ((n = nn_text_batcher_next(&b, ids, lengths, labels, &width)) > 0) {
            int longest = 0;
            for (int i = 0; i < n; i++) {
                longest = lengths[i] > longest ? lengths[i] : longest;
                /* find the sequence: its ids, then padding */
                int match = -1;
                for (int q = 0; q < t.train.n_seqs; q++)
                    if (t.train.lengths[q] == lengths[i] && t.train.labels[q] == labels[i] &&
                        memcmp(t.train.ids + t.train.offsets[q], ids + i * width,
                               (size_t)lengths[i] * sizeof *ids) == 0)
                        match = q;
                CHECK(match >= 0);
                if (match >= 0 && epoch == 0) seen[match]++;
                for (int p = lengths[i]; p < width; p++) CHECK(ids[i * width + p] == NN_TEXT_PAD);
            }
            CHECK(width == longest);
            total += n;
            batches++;
        }
        CHECK(total == 12 && batches == 3);
    }
    for (int q = 0; q < 12; q++) CHECK(seen[q] == 1); /* each once an epoch */
    /* the same seed, the same batches; no shuffle, file order */
    nn_text_batcher c, d;
    CHECK(nn_text_batcher_init(&c, &t.train, 5, true, 9) == 0);
    CHECK(nn_text_batcher_init(&d, &t.train, 4, false, 9) == 0);
    nn_text_batcher_start_epoch(&b);
    nn_text_batcher_start_epoch(&c);
    nn_text_batcher_start_epoch(&d);
    int ids2[5 * 7], lengths2[5], labels2[5], width2;
    /* b is in its third epoch now: compare c's first with a fresh b's first */
    nn_text_batcher_free(&b);
    CHECK(nn_text_batcher_init(&b, &t.train, 5, true, 9) == 0);
    nn_text_batcher_start_epoch(&b);
    int n1 = nn_text_batcher_next(&b, ids, lengths, labels, &width);
    int n2 = nn_text_batcher_next(&c, ids2, lengths2, labels2, &width2);
    CHECK(n1 == n2 && width == width2 && memcmp(ids, ids2, (size_t)n1 * width * sizeof *ids) == 0 &&
          memcmp(labels, labels2, (size_t)n1 * sizeof *labels) == 0);
    CHECK(nn_text_batcher_next(&d, ids, lengths, NULL, &width) == 4);
    for (int i = 0; i < 4; i++) CHECK(lengths[i] == t.train.lengths[i]);
    nn_text_batcher_free(&b);
    nn_text_batcher_free(&c);
    nn_text_batcher_free(&d);
    /* a stream holds no sequences */
    nn_text_split s = stream_of(100);
    CHECK_ERROR(nn_text_batcher_init(&b, &s, 4, false, 1), "no sequences");
    free(s.ids);
    nn_text_free(&t);
}

static void test_kind_names(void) {
    nn_text_kind k;
    CHECK(nn_text_kind_parse("lines", &k) == 0 && k == NN_TEXT_LINES);
    CHECK(strcmp(nn_text_kind_name(NN_TEXT_CLASSES), "classes") == 0);
    CHECK_ERROR(nn_text_kind_parse("words", &k), "'words'", "auto, stream, lines or classes");
}

TEST_MAIN(TEST(test_utf8_decodes_every_length), TEST(test_utf8_refuses_bad_sequences),
          TEST(test_utf8_encode_refuses_non_characters), TEST(test_vocab_sorted_with_special_first),
          TEST(test_vocab_encode_refuses_unknown_character), TEST(test_vocab_string_round_trip),
          TEST(test_layout_rule), TEST(test_bad_layouts_and_files),
          TEST(test_load_with_a_given_vocabulary), TEST(test_tinyshakespeare), TEST(test_names),
          TEST(test_names_by_language), TEST(test_seeded_splits_reproducible),
          TEST(test_window_sampler), TEST(test_validation_windows_fixed),
          TEST(test_padded_batches), TEST(test_kind_names))
