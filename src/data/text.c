/* Text data sets: which kind a path holds, reading and decoding its files,
 * the train/validation split and the token ids of each split (the rules are
 * in nn/text.h). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/error.h"
#include "nn/text.h"
#include "core/util.h"
#include "data/text_internal.h"

/* Independent of the streams the same seed drives elsewhere (initialisation,
 * dropout, the loaders' shuffles). */
#define SPLIT_RNG_STREAM 0x73706c6974ULL /* "split" */

#define STREAM_TRAIN_TENTHS 9  /* STREAM and LINES: floor(n * 9 / 10) train */
#define CLASSES_VAL_PERCENT 15 /* CLASSES: floor(n_c * 15 / 100) validation */
/* LINES split by the files: train.lines.txt trains, test.lines.txt is held out. */
#define GIVEN_TRAIN "train"
#define GIVEN_TEST "test"

typedef struct text_file {
    char *path;    /* as opened, for messages */
    char *name;    /* the file name without ".txt": a class name */
    uint32_t *cps; /* the decoded text */
    size_t n;
} text_file;

/* One line of a file: cps[start .. start + len) of files[file]. */
typedef struct text_line {
    int file;
    size_t start, len;
} text_line;

typedef struct text_reader {
    const char *path;
    text_file *files;
    int n_files;
    text_line *lines;
    int n_lines;
    bool given_split; /* a folder of exactly train.lines.txt and test.lines.txt */
} text_reader;

static const char *const kind_names[] = {
    [NN_TEXT_AUTO] = "auto",
    [NN_TEXT_STREAM] = "stream",
    [NN_TEXT_LINES] = "lines",
    [NN_TEXT_CLASSES] = "classes",
};

const char *nn_text_kind_name(nn_text_kind kind) {
    if ((unsigned)kind >= sizeof kind_names / sizeof kind_names[0])
        nn_fatal("nn_text_kind_name: kind %d", (int)kind);
    return kind_names[kind];
}

int nn_text_kind_parse(const char *name, nn_text_kind *kind) {
    for (int k = 0; k < (int)(sizeof kind_names / sizeof kind_names[0]); k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *kind = (nn_text_kind)k;
            return 0;
        }
    }
    return nn_error("unknown text kind '%s' (expected auto, stream, lines or classes)", name);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The byte offset of code point i in the UTF-8 the code points came from. */
static size_t byte_offset(const uint32_t *cps, size_t i) {
    size_t off = 0;
    for (size_t k = 0; k < i; k++) off += cps[k] < 0x80 ? 1 : cps[k] < 0x800 ? 2 : cps[k] < 0x10000 ? 3 : 4;
    return off;
}

static int compare_files(const void *a, const void *b) {
    return strcmp(((const text_file *)a)->name, ((const text_file *)b)->name);
}

static void add_file(text_reader *r, int *cap, char *path) {
    if (r->n_files == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        r->files = nn_xrealloc(r->files, (size_t)*cap * sizeof *r->files);
    }
    text_file *f = &r->files[r->n_files++];
    memset(f, 0, sizeof *f);
    f->path = path;
    const char *base = base_name(path);
    size_t len = strlen(base);
    if (ends_with(base, ".txt")) len -= 4;
    f->name = nn_xmalloc(len + 1);
    memcpy(f->name, base, len);
    f->name[len] = '\0';
}

/* The files of the data set: the path itself, or the folder's .txt files in
 * the order of their names without ".txt". */
static int list_files(text_reader *r) {
    struct stat st;
    int cap = 0;
    if (stat(r->path, &st) != 0) return nn_error("%s: %s", r->path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        add_file(r, &cap, nn_xstrdup(r->path));
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) return nn_error("%s: not a file or a folder", r->path);
    DIR *dir = opendir(r->path);
    if (!dir) return nn_error("%s: %s", r->path, strerror(errno));
    bool slash = ends_with(r->path, "/");
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".txt")) continue;
        size_t len = strlen(r->path) + strlen(e->d_name) + 2;
        char *file = nn_xmalloc(len);
        snprintf(file, len, "%s%s%s", r->path, slash ? "" : "/", e->d_name);
        if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(file);
            continue;
        }
        add_file(r, &cap, file);
    }
    closedir(dir);
    if (r->n_files == 0) return nn_error("%s: no .txt file in the folder", r->path);
    qsort(r->files, (size_t)r->n_files, sizeof *r->files, compare_files);
    /* In name order the held-out file comes first. */
    r->given_split = r->n_files == 2 && strcmp(r->files[0].name, GIVEN_TEST ".lines") == 0 &&
                     strcmp(r->files[1].name, GIVEN_TRAIN ".lines") == 0;
    return 0;
}

static int resolve_kind(const text_reader *r, nn_text_kind *kind) {
    if (*kind == NN_TEXT_AUTO) {
        const char *base = base_name(r->files[0].path);
        if (r->given_split)
            *kind = NN_TEXT_LINES;
        else if (r->n_files >= 2)
            *kind = NN_TEXT_CLASSES;
        else if (strcmp(base, "names.txt") == 0 || ends_with(base, ".lines.txt"))
            *kind = NN_TEXT_LINES;
        else
            *kind = NN_TEXT_STREAM;
        return 0;
    }
    if (*kind == NN_TEXT_CLASSES && r->n_files < 2)
        return nn_error("%s: one class only (%s): one file per class needs a folder of at least "
                        "two .txt files",
                        r->path, r->files[0].name);
    if (*kind == NN_TEXT_LINES && r->given_split) return 0;
    if (*kind != NN_TEXT_CLASSES && r->n_files >= 2)
        return nn_error("%s: %d .txt files, but a %s is one file (a folder of several is one "
                        "file per class)",
                        r->path, r->n_files, *kind == NN_TEXT_STREAM ? "text stream" : "file of lines");
    return 0;
}

static int read_file(text_file *f) {
    size_t len;
    char *bytes = (char *)nn_read_file(f->path, &len, 0);
    if (!bytes) return -1;
    int rc = 0;
    if (len == 0)
        rc = nn_error("%s: empty file", f->path);
    else
        rc = nn_utf8_decode(&f->cps, &f->n, bytes, len, f->path);
    free(bytes);
    if (rc != 0) return -1;
    for (size_t i = 0; i < f->n; i++)
        if (f->cps[i] == 0)
            return nn_error("%s: NUL character (U+0000) at byte %zu", f->path,
                            byte_offset(f->cps, i));
    return 0;
}

/* Splits every file into lines: "\n" ends one, a "\r" before it is dropped,
 * the last needs no "\n"; an empty line is an error. */
static int split_lines(text_reader *r) {
    int cap = 0;
    for (int fi = 0; fi < r->n_files; fi++) {
        const text_file *f = &r->files[fi];
        size_t start = 0, number = 0;
        while (start < f->n) {
            size_t end = start;
            while (end < f->n && f->cps[end] != '\n') end++;
            size_t len = end - start;
            number++;
            if (len > 0 && f->cps[start + len - 1] == '\r') len--;
            if (len == 0)
                return nn_error("%s: line %zu is empty (one example per line)", f->path, number);
            if (len > INT_MAX - 2)
                return nn_error("%s: line %zu: %zu characters, too long", f->path, number, len);
            if (r->n_lines == INT_MAX) return nn_error("%s: more than %d lines", r->path, INT_MAX);
            if (r->n_lines == cap) {
                cap = cap ? (cap > INT_MAX / 2 ? INT_MAX : 2 * cap) : 1024;
                r->lines = nn_xrealloc(r->lines, (size_t)cap * sizeof *r->lines);
            }
            r->lines[r->n_lines++] = (text_line){fi, start, len};
            start = end + 1;
        }
    }
    return 0;
}

/* Encodes cps[start .. start + len) of file f into out; a character the
 * vocabulary lacks is an error naming the file and its byte offset. */
static int encode_run(const nn_vocab *v, const text_file *f, size_t start, size_t len, int *out) {
    for (size_t i = 0; i < len; i++) {
        int id = nn_vocab_id(v, f->cps[start + i]);
        if (id < 0) {
            char name[TEXT_CHAR_NAME_CAP];
            text_char_name(name, f->cps[start + i]);
            return nn_error("%s: byte %zu: character %s is not in the vocabulary", f->path,
                            byte_offset(f->cps, start + i), name);
        }
        out[i] = id;
    }
    return 0;
}

static nn_vocab_special special_of(nn_text_kind kind) {
    return kind == NN_TEXT_LINES ? NN_VOCAB_BOUNDARY
           : kind == NN_TEXT_CLASSES ? NN_VOCAB_PAD
                                     : NN_VOCAB_NONE;
}

/* The vocabulary to encode with: a copy of the given one, whose special
 * token must be the kind's, or one built from every character read. */
static int make_vocab(nn_text *t, const text_reader *r, const nn_vocab *given) {
    nn_vocab_special special = special_of(t->kind);
    if (given) {
        if (given->special != special) {
            static const char *const names[] = {"none", "a boundary token", "a padding token"};
            return nn_error("%s: %s data needs a vocabulary with %s at id 0, this one has %s",
                            r->path, nn_text_kind_name(t->kind), names[special],
                            names[given->special]);
        }
        text_vocab_copy(&t->vocab, given);
        return 0;
    }
    if (t->kind == NN_TEXT_STREAM)
        return nn_vocab_build(&t->vocab, special, r->files[0].cps, r->files[0].n);
    size_t total = 0;
    for (int i = 0; i < r->n_lines; i++) total += r->lines[i].len;
    uint32_t *all = nn_xmalloc(total * sizeof *all), *p = all;
    for (int i = 0; i < r->n_lines; i++) {
        const text_line *l = &r->lines[i];
        memcpy(p, r->files[l->file].cps + l->start, l->len * sizeof *p);
        p += l->len;
    }
    int rc = nn_vocab_build(&t->vocab, special, all, total);
    free(all);
    return rc;
}

static int load_stream(nn_text *t, const text_reader *r) {
    const text_file *f = &r->files[0];
    if (f->n < 2)
        return nn_error("%s: one character: too short to split into train and validation",
                        f->path);
    /* floor(n * 9 / 10) without overflow */
    size_t n_train = f->n / 10 * STREAM_TRAIN_TENTHS + f->n % 10 * STREAM_TRAIN_TENTHS / 10;
    t->train.n_ids = n_train;
    t->val.n_ids = f->n - n_train;
    t->train.ids = nn_xmalloc(t->train.n_ids * sizeof *t->train.ids);
    t->val.ids = nn_xmalloc(t->val.n_ids * sizeof *t->val.ids);
    if (encode_run(&t->vocab, f, 0, n_train, t->train.ids) != 0) return -1;
    return encode_run(&t->vocab, f, n_train, t->val.n_ids, t->val.ids);
}

/* Marks the lines that go to validation. */
static int choose_validation(const nn_text *t, const text_reader *r, uint64_t seed, bool *is_val) {
    if (r->given_split) { /* the test file (files[0]) is validation, whatever the seed */
        for (int i = 0; i < r->n_lines; i++) is_val[i] = r->lines[i].file == 0;
        return 0;
    }
    if (t->kind == NN_TEXT_LINES && r->n_lines < 2)
        return nn_error("%s: one line: too few to split into train and validation",
                        r->files[0].path);
    nn_rng rng;
    nn_rng_seed(&rng, seed, SPLIT_RNG_STREAM);
    int *order = nn_xmalloc((size_t)r->n_lines * sizeof *order);
    int n_val = 0;
    /* LINES: one group, all lines; CLASSES: one group per file. */
    for (int first = 0; first < r->n_lines;) {
        int last = first + 1;
        if (t->kind == NN_TEXT_CLASSES)
            while (last < r->n_lines && r->lines[last].file == r->lines[first].file) last++;
        else
            last = r->n_lines;
        int n = last - first;
        int group_val = t->kind == NN_TEXT_CLASSES
                            ? (int)((long long)n * CLASSES_VAL_PERCENT / 100)
                            : n - (int)((long long)n * STREAM_TRAIN_TENTHS / 10);
        for (int i = 0; i < n; i++) order[i] = first + i;
        nn_rng_shuffle(&rng, order, n);
        for (int i = 0; i < group_val; i++) is_val[order[i]] = true;
        n_val += group_val;
        first = last;
    }
    free(order);
    if (n_val == 0)
        return nn_error("%s: too few lines for a validation split: %d%% of each class, rounded "
                        "down, is none",
                        r->path, CLASSES_VAL_PERCENT);
    return 0;
}

static void alloc_split(nn_text_split *s, int n_seqs, size_t n_ids, bool labels) {
    s->n_seqs = n_seqs;
    s->n_ids = n_ids;
    s->ids = nn_xmalloc((n_ids ? n_ids : 1) * sizeof *s->ids);
    s->offsets = nn_xmalloc((n_seqs ? (size_t)n_seqs : 1) * sizeof *s->offsets);
    s->lengths = nn_xmalloc((n_seqs ? (size_t)n_seqs : 1) * sizeof *s->lengths);
    s->labels = labels ? nn_xmalloc((n_seqs ? (size_t)n_seqs : 1) * sizeof *s->labels) : NULL;
    s->n_seqs = 0; /* counts up again as sequences are added */
    s->n_ids = 0;
}

static int load_lines(nn_text *t, const text_reader *r, uint64_t seed) {
    bool lines = t->kind == NN_TEXT_LINES, classes = !lines;
    int extra = lines ? 2 : 0; /* the two boundaries */
    bool *is_val = nn_xcalloc((size_t)r->n_lines, sizeof *is_val);
    if (choose_validation(t, r, seed, is_val) != 0) {
        free(is_val);
        return -1;
    }
    int seqs[2] = {0, 0};
    size_t ids[2] = {0, 0};
    for (int i = 0; i < r->n_lines; i++) {
        seqs[is_val[i]]++;
        ids[is_val[i]] += r->lines[i].len + (size_t)extra;
    }
    alloc_split(&t->train, seqs[0], ids[0], classes);
    alloc_split(&t->val, seqs[1], ids[1], classes);
    int rc = 0;
    for (int i = 0; i < r->n_lines && rc == 0; i++) {
        const text_line *l = &r->lines[i];
        nn_text_split *s = is_val[i] ? &t->val : &t->train;
        int *out = s->ids + s->n_ids;
        int len = (int)l->len + extra;
        if (lines) out[0] = out[len - 1] = NN_TEXT_BOUNDARY;
        rc = encode_run(&t->vocab, &r->files[l->file], l->start, l->len, out + extra / 2);
        s->offsets[s->n_seqs] = s->n_ids;
        s->lengths[s->n_seqs] = len;
        if (classes) s->labels[s->n_seqs] = l->file;
        if (len > s->max_len) s->max_len = len;
        s->n_seqs++;
        s->n_ids += (size_t)len;
    }
    free(is_val);
    if (rc != 0 || lines) return rc;
    t->n_classes = r->n_files;
    t->class_names = nn_xmalloc((size_t)r->n_files * sizeof *t->class_names);
    for (int i = 0; i < r->n_files; i++) t->class_names[i] = nn_xstrdup(r->files[i].name);
    return 0;
}

static void reader_free(text_reader *r) {
    for (int i = 0; i < r->n_files; i++) {
        free(r->files[i].path);
        free(r->files[i].name);
        free(r->files[i].cps);
    }
    free(r->files);
    free(r->lines);
}

int nn_text_layout_kind(const char *path, nn_text_kind *kind) {
    text_reader r = {.path = path};
    nn_text_kind k = NN_TEXT_AUTO;
    int rc = list_files(&r);
    if (rc == 0) rc = resolve_kind(&r, &k);
    reader_free(&r);
    if (rc == 0) *kind = k;
    return rc;
}

int nn_text_load(nn_text *t, const char *path, nn_text_kind kind, uint64_t seed,
                 const nn_vocab *vocab) {
    memset(t, 0, sizeof *t);
    if ((unsigned)kind > NN_TEXT_CLASSES) nn_fatal("nn_text_load: kind %d", (int)kind);
    text_reader r = {.path = path};
    int rc = list_files(&r);
    if (rc == 0) rc = resolve_kind(&r, &kind);
    for (int i = 0; i < r.n_files && rc == 0; i++) rc = read_file(&r.files[i]);
    t->kind = kind;
    if (rc == 0 && kind != NN_TEXT_STREAM) rc = split_lines(&r);
    if (rc == 0) rc = make_vocab(t, &r, vocab);
    if (rc == 0) rc = kind == NN_TEXT_STREAM ? load_stream(t, &r) : load_lines(t, &r, seed);
    reader_free(&r);
    if (rc != 0) nn_text_free(t);
    return rc;
}

static void split_free(nn_text_split *s) {
    free(s->ids);
    free(s->offsets);
    free(s->lengths);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

void nn_text_free(nn_text *t) {
    nn_vocab_free(&t->vocab);
    split_free(&t->train);
    split_free(&t->val);
    for (int i = 0; i < t->n_classes; i++) free(t->class_names[i]);
    free(t->class_names);
    memset(t, 0, sizeof *t);
}
