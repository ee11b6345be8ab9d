/* Sequence-to-sequence the GPT way (nn/seq2seq.h): the addition data set is
 * the same on every run, its sums are right and its train and test sets share
 * none; the loader reads its folder as lines split by the files; exact match
 * counts right (a stub completer whose mistakes are known); batched greedy
 * completion writes what nn_generate writes one prompt at a time, and a
 * GPT's completions do not depend on the batch they run in; the
 * answer-only loss counts the targets after each line's first '=' and its
 * end where the window holds the whole line before them, and nothing on
 * data that is not such lines; a short LSTM run learns
 * to add two-digit numbers; nn eval reports it. */
#include <omp.h>
#include <stdint.h>
#include <sys/stat.h>

#include "check.h"
#include "run_nn.h"
#include "nn/seq2seq.h"
#include "nn/train.h"
#include "core/util.h"

/* Parses "a+b=c" (no leading zeros, the right sum); returns the pair
 * a * base + b, or -1. */
static long parse_sum(const char *line, size_t len, int base) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    int a, b, c, n = 0;
    if (sscanf(buf, "%d+%d=%d%n", &a, &b, &c, &n) != 3 || (size_t)n != len) return -1;
    if (a < 0 || b < 0 || a >= base || b >= base || c != a + b) return -1;
    char again[64];
    snprintf(again, sizeof again, "%d+%d=%d", a, b, c);
    if (strcmp(again, buf) != 0) return -1; /* a leading zero or a sign */
    return (long)a * base + b;
}

/* Checks every line of text and marks its pair in seen (a pair seen before,
 * in this text or another, is a failure); returns the number of lines. */
static int check_sums(const char *text, int base, unsigned char *seen, const char *what) {
    int lines = 0, bad = 0, again = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        if (!end) {
            bad++; /* every line ends with a line break */
            break;
        }
        long pair = parse_sum(p, (size_t)(end - p), base);
        if (pair < 0)
            bad++;
        else if (seen[pair]++)
            again++;
        lines++;
        p = end + 1;
    }
    CHECKF(bad == 0 && again == 0, "%s: %d malformed or wrong lines, %d sums seen before", what, bad, again);
    return lines;
}

static void test_generator_deterministic(void) {
    nn_addition_config c = nn_addition_defaults(2);
    CHECK(c.digits == 2 && c.n_test == 1000 && c.n_train == 0 && c.seed == NN_ADDITION_SEED);
    char *train, *test, *train2, *test2;
    CHECKF(nn_addition_generate(&c, &train, &test) == 0, "%s", nn_last_error());
    CHECK(nn_addition_generate(&c, &train2, &test2) == 0);
    CHECK(strcmp(train, train2) == 0 && strcmp(test, test2) == 0);
    /* The first lines of make data DATASET=addition: if they change, so do
     * the files' SHA-256 in scripts/fetch_data.sh. */
    CHECKF(strncmp(test, "89+0=89\n74+91=165\n73+70=143\n", 27) == 0, "test begins %.27s", test);
    CHECKF(strncmp(train, "59+94=153\n75+0=75\n16+28=44\n", 27) == 0, "train begins %.27s", train);
    free(train2);
    free(test2);
    c.seed = 2;
    CHECK(nn_addition_generate(&c, &train2, &test2) == 0);
    CHECK(strcmp(train, train2) != 0 && strcmp(test, test2) != 0);
    free(train2);
    free(test2);
    free(train);
    free(test);
}

static void test_generator_sums(void) {
    /* Two digits: every pair once, 9,000 to train and 1,000 held out. */
    nn_addition_config c = nn_addition_defaults(2);
    char *train, *test;
    CHECK(nn_addition_generate(&c, &train, &test) == 0);
    unsigned char *seen = nn_xcalloc(1000000, 1);
    CHECK(check_sums(test, 100, seen, "test") == 1000);
    CHECK(check_sums(train, 100, seen, "train") == 9000);
    int missing = 0;
    for (int k = 0; k < 10000; k++) missing += !seen[k];
    CHECK(missing == 0);
    free(train);
    free(test);
    /* Three digits: 100,000 and 10,000 of the million pairs, none twice. */
    c = nn_addition_defaults(3);
    CHECK(nn_addition_generate(&c, &train, &test) == 0);
    memset(seen, 0, 1000000);
    CHECK(check_sums(test, 1000, seen, "test") == 10000);
    CHECK(check_sums(train, 1000, seen, "train") == 100000);
    free(train);
    free(test);
    free(seen);
    /* One digit, and sizes of our own. */
    c = (nn_addition_config){.digits = 1, .n_test = 5, .n_train = 7, .seed = 3};
    CHECK(nn_addition_generate(&c, &train, &test) == 0);
    unsigned char small[100] = {0};
    CHECK(check_sums(test, 10, small, "test") == 5 && check_sums(train, 10, small, "train") == 7);
    free(train);
    free(test);
    /* What cannot be made. */
    c = (nn_addition_config){.digits = 4, .n_test = 1};
    CHECK(nn_addition_generate(&c, &train, &test) == -1 && strstr(nn_last_error(), "1 to 3") && !train && !test);
    c = (nn_addition_config){.digits = 1, .n_test = 0};
    CHECK(nn_addition_generate(&c, &train, &test) == -1 && strstr(nn_last_error(), "100 pairs"));
    c = (nn_addition_config){.digits = 1, .n_test = 50, .n_train = 51};
    CHECK(nn_addition_generate(&c, &train, &test) == -1 && strstr(nn_last_error(), "100 pairs"));
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* Writes the default 2-digit set into the scratch folder `name`; returns its path. */
static const char *write_addition(const char *name) {
    static char dir[256];
    snprintf(dir, sizeof dir, "%s", tmp(name));
    CHECK(mkdir(dir, 0777) == 0);
    nn_addition_config c = nn_addition_defaults(2);
    char *train, *test, path[300];
    CHECK(nn_addition_generate(&c, &train, &test) == 0);
    snprintf(path, sizeof path, "%s/train.lines.txt", dir);
    write_text(path, train);
    snprintf(path, sizeof path, "%s/test.lines.txt", dir);
    write_text(path, test);
    free(train);
    free(test);
    return dir;
}

/* Sequence i of a split as text, the boundaries written as '.'. */
static const char *seq_text(const nn_text *t, const nn_text_split *s, int i) {
    static char buf[64];
    int n = s->lengths[i];
    for (int k = 0; k < n && k < 63; k++) {
        int id = s->ids[s->offsets[i] + k];
        buf[k] = id == NN_TEXT_BOUNDARY ? '.' : (char)t->vocab.chars[id];
    }
    buf[n < 63 ? n : 63] = '\0';
    return buf;
}

static void test_folder_kind(void) {
    const char *dir = write_addition("addition");
    nn_text_kind kind = NN_TEXT_AUTO;
    CHECKF(nn_text_layout_kind(dir, &kind) == 0 && kind == NN_TEXT_LINES, "%s", nn_last_error());
    nn_text t;
    CHECKF(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0, "%s", nn_last_error());
    CHECK(t.kind == NN_TEXT_LINES && t.vocab.special == NN_VOCAB_BOUNDARY && t.vocab.size == 13);
    /* train.lines.txt trains, test.lines.txt is held out, in file order. */
    CHECK(t.train.n_seqs == 9000 && t.val.n_seqs == 1000);
    CHECK(strcmp(seq_text(&t, &t.train, 0), ".59+94=153.") == 0);
    CHECK(strcmp(seq_text(&t, &t.val, 0), ".89+0=89.") == 0);
    CHECK(strcmp(seq_text(&t, &t.val, 999), seq_text(&t, &t.val, 999)) == 0);
    /* The seed does not move a line: the files give the split. */
    nn_text u;
    CHECK(nn_text_load(&u, dir, NN_TEXT_LINES, 99, NULL) == 0);
    CHECK(u.val.n_ids == t.val.n_ids && memcmp(u.val.ids, t.val.ids, t.val.n_ids * sizeof(int)) == 0);
    nn_text_free(&u);
    /* Read as classes on request: two classes, named by the files. */
    CHECK(nn_text_load(&u, dir, NN_TEXT_CLASSES, 1, NULL) == 0 && u.n_classes == 2 &&
          strcmp(u.class_names[0], "test.lines") == 0);
    nn_text_free(&u);
    CHECK(nn_text_load(&u, dir, NN_TEXT_STREAM, 1, NULL) == -1 && strstr(nn_last_error(), "2 .txt files"));
    nn_text_free(&t);
    /* A third .txt file makes it one file per class again. */
    char path[300];
    snprintf(path, sizeof path, "%s/more.txt", dir);
    write_text(path, "1+1=2\n");
    CHECK(nn_text_layout_kind(dir, &kind) == 0 && kind == NN_TEXT_CLASSES);
    CHECK(nn_text_load(&t, dir, NN_TEXT_LINES, 1, NULL) == -1 && strstr(nn_last_error(), "3 .txt files"));
    remove(path);
    /* So does a pair with other names. */
    snprintf(path, sizeof path, "%s/train.lines.txt", dir);
    char other[300];
    snprintf(other, sizeof other, "%s/training.lines.txt", dir);
    CHECK(rename(path, other) == 0);
    CHECK(nn_text_layout_kind(dir, &kind) == 0 && kind == NN_TEXT_CLASSES);
    CHECK(rename(other, path) == 0);
}

/* ---- the answer-only loss ---- */

/* What each token needs, as a string of digits. */
static const char *needs_text(const int *needs, size_t n) {
    static char buf[64];
    size_t k = 0;
    for (; k < n && k < 63; k++) buf[k] = (char)('0' + (needs[k] < 10 ? needs[k] : 9));
    buf[k] = '\0';
    return buf;
}

#define I NN_IGNORE_LABEL

static void test_answer_needs(void) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "%s", tmp("answers"));
    CHECK(mkdir(dir, 0777) == 0);
    snprintf(path, sizeof path, "%s/train.lines.txt", dir);
    write_text(path, "12+3=15\n4+5=9\n1=2=3\n"); /* the answer is after the first '=' */
    snprintf(path, sizeof path, "%s/test.lines.txt", dir);
    write_text(path, "1+1=2\n");
    nn_text t;
    CHECKF(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0, "%s", nn_last_error());
    int sep = nn_vocab_id(&t.vocab, NN_ANSWER_SEP);
    int *needs = NULL;
    CHECKF(nn_answer_needs(&t.train, sep, &needs) == 0, "%s", nn_last_error());
    if (!needs) {
        nn_text_free(&t);
        return;
    }
    /* Per line [boundary, line, boundary]: the answer and the closing
     * boundary, each needing the line back to its opening boundary. */
    CHECK(t.train.n_ids == 9 + 7 + 7);
    CHECKF(strcmp(needs_text(needs, t.train.n_ids), "000000678" "0000056" "0003456") == 0, "%s",
           needs_text(needs, t.train.n_ids));
    size_t start;
    int len;
    CHECK(nn_line_answer(&t.train, 2, sep, &start, &len) == 0 && start == 16 + 3 && len == 3);

    /* Joined as the trainer draws its windows: one boundary between two
     * lines, which is the next line's opening boundary. */
    nn_text_split stream;
    int *stream_needs = NULL;
    nn_text_join_lines(&t.train, needs, &stream, &stream_needs);
    CHECK(stream.n_ids == 21 && stream.n_seqs == 0);
    CHECKF(strcmp(needs_text(stream_needs, stream.n_ids), "000000678" "000056" "003456") == 0, "%s",
           needs_text(stream_needs, stream.n_ids));
    /* The stream ".12+3=15.4+5=9.1=2=3.": a target counts where it is an
     * answer's (or the end of its line) and the window holds its line's
     * opening boundary. */
    int B = NN_TEXT_BOUNDARY, one = nn_vocab_id(&t.vocab, '1'), two = nn_vocab_id(&t.vocab, '2');
    int three = nn_vocab_id(&t.vocab, '3'), five = nn_vocab_id(&t.vocab, '5'), nine = nn_vocab_id(&t.vocab, '9');
    int x[20], y[20];
    nn_text_windows w;
    /* Side by side, starting at 0 and 8 (each at a line's opening boundary). */
    CHECK(nn_text_windows_init(&w, &stream, 8, 0) == 0 && w.count == 2);
    w.needs = stream_needs;
    CHECK(nn_text_windows_batch(&w, 0, 2, x, y) == 2);
    const int side[16] = {I, I, I, I, I, one, five, B, I, I, I, I, nine, B, I, I};
    CHECK(memcmp(y, side, sizeof side) == 0);
    nn_text_windows_free(&w);
    /* Three spread windows of 5, at 0, 7 and 15: the one at 15 starts
     * inside "1=2=3", after its boundary, so its "2=3" and its end do not
     * count; nor do the "5" and end of "12+3=15" in the one at 7. */
    CHECK(nn_text_windows_init(&w, &stream, 5, 3) == 0 && w.count == 3 && w.starts[1] == 7 && w.starts[2] == 15);
    w.needs = stream_needs;
    CHECK(nn_text_windows_batch(&w, 1, 2, x, y) == 2);
    bool none = true;
    for (int k = 0; k < 10; k++) none = none && y[k] == I;
    CHECK(none);
    CHECK(memcmp(x + 5, stream.ids + 15, 5 * sizeof *x) == 0); /* the inputs are the text */
    /* Without needs every target counts. */
    w.needs = NULL;
    nn_text_windows_batch(&w, 2, 1, x, y);
    CHECK(memcmp(y, stream.ids + 16, 5 * sizeof *y) == 0);
    nn_text_windows_free(&w);
    /* The sampler alike: windows of 20 have the one start, 0. */
    nn_text_sampler s;
    CHECK(nn_text_sampler_init(&s, &stream, 20, 1) == 0);
    s.needs = stream_needs;
    nn_text_sampler_next(&s, 1, x, y);
    const int whole[20] = {I, I, I, I, I, one, five, B, I, I, I, I, nine, B, I, I, two, sep, three, B};
    CHECK(memcmp(x, stream.ids, sizeof x) == 0 && memcmp(y, whole, sizeof y) == 0);
    nn_text_sampler_free(&s);
    free(stream.ids);
    free(stream_needs);
    free(needs);

    /* A line without the separator, a split that is not lines. */
    snprintf(path, sizeof path, "%s/train.lines.txt", dir);
    write_text(path, "12+3=15\n4+5\n");
    nn_text u;
    CHECKF(nn_text_load(&u, dir, NN_TEXT_AUTO, 1, NULL) == 0, "%s", nn_last_error());
    CHECK(nn_answer_needs(&u.train, nn_vocab_id(&u.vocab, NN_ANSWER_SEP), &needs) == -1 && !needs &&
          strstr(nn_last_error(), "line 2 of the split has no separator"));
    nn_text_free(&u);
    CHECK(nn_text_load(&u, "datasets/names-by-language", NN_TEXT_AUTO, 1, NULL) == 0);
    CHECK(nn_answer_needs(&u.train, 1, &needs) == -1 && strstr(nn_last_error(), "needs lines"));
    nn_text_free(&u);
    nn_text_free(&t);
}

#undef I

/* An answer-only loss on data that is not lines 'PROMPT=ANSWER': one line of
 * error, from the library and from nn train. */
static void test_answer_targets_need_lines(void) {
    const char *text = tmp("stream.txt");
    char buf[2000] = "";
    for (int i = 0; i < 60; i++) strcat(buf, "to be or not\n");
    write_text(text, buf);
    nn_text t;
    CHECKF(nn_text_load(&t, text, NN_TEXT_AUTO, 1, NULL) == 0 && t.kind == NN_TEXT_STREAM, "%s", nn_last_error());
    nn_train_config c = nn_train_config_defaults();
    c.spec = "embed(4) lstm(8) linear(8)";
    c.opt = nn_optim_defaults(NN_OPT_ADAM);
    c.batch_size = 4;
    c.context = 8;
    c.steps = 2;
    c.eval_every = 2;
    c.targets = NN_TARGETS_ANSWER;
    nn_model m;
    nn_lm_history h;
    CHECKF(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FAILED &&
               strstr(nn_last_error(), "answer-only loss (targets answer) needs lines 'PROMPT=ANSWER'") &&
               strstr(nn_last_error(), "this data is one text stream"),
           "%s", nn_last_error());
    nn_model_free(&m);
    nn_lm_history_free(&h);
    c.targets = NN_TARGETS_ALL;
    CHECKF(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    nn_model_free(&m);
    nn_lm_history_free(&h);
    nn_text_free(&t);
    /* Lines without '=' (names): the vocabulary has none. */
    CHECK(nn_text_load(&t, "datasets/names/names.txt", NN_TEXT_AUTO, 1, NULL) == 0);
    c.spec = "embed(4) lstm(8) linear(27)";
    c.targets = NN_TARGETS_ANSWER;
    CHECKF(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FAILED && strstr(nn_last_error(), "this data has no '='"), "%s",
           nn_last_error());
    nn_model_free(&m);
    nn_lm_history_free(&h);
    nn_text_free(&t);
    int rc = nn("train --data %s --targets answer --steps 2 --threads 1", text);
    CHECKF(rc == 1 && one_line_error("needs lines 'PROMPT=ANSWER'"), "rc %d: %s", rc, err_text);
    rc = nn("train --data %s --targets some --steps 2 --threads 1", text);
    CHECKF(rc == 2 && strstr(err_text, "unknown targets 'some' (one of: all, answer)"), "rc %d: %s", rc, err_text);
}

/* ---- exact match ---- */

/* A stub that completes "a+b=" as its test asks: the right sum, except for
 * the prompts it is told to get wrong in one of three ways. */
typedef struct stub {
    const nn_vocab *v;
    int calls;
} stub;

static int digit_id(const nn_vocab *v, int d) { return nn_vocab_id(v, (uint32_t)('0' + d)); }

static int stub_complete(void *user, const int *ids, const size_t *offsets, const int *lengths, int n, int max_new,
                         int stop, int *out, int *out_lens) {
    stub *s = user;
    s->calls++;
    CHECK(stop == NN_TEXT_BOUNDARY && max_new == 4); /* "198" and the end */
    for (int i = 0; i < n; i++) {
        const int *p = ids + offsets[i];
        CHECK(p[0] == NN_TEXT_BOUNDARY && p[lengths[i] - 1] == nn_vocab_id(s->v, '='));
        int a = 0, b = 0, *x = &a;
        for (int k = 1; k < lengths[i] - 1; k++) {
            uint32_t ch = s->v->chars[p[k]];
            if (ch == '+')
                x = &b;
            else
                *x = *x * 10 + (int)(ch - '0');
        }
        int sum = a + b + (i % 5 == 0); /* every fifth: off by one */
        char digits[8];
        int len = snprintf(digits, sizeof digits, "%d", sum);
        int *o = out + (size_t)i * max_new;
        for (int k = 0; k < len; k++) o[k] = digit_id(s->v, digits[k] - '0');
        out_lens[i] = len;
        if (i % 7 == 3) { /* the right digits, then one more: never stopped in time */
            o[len] = digit_id(s->v, 0);
            out_lens[i] = len + 1;
        }
        if (i % 11 == 4) out_lens[i] = len - 1 > 0 ? len - 1 : 0; /* stopped too soon */
    }
    return 0;
}

static void test_exact_match_counts(void) {
    const char *dir = write_addition("exact");
    nn_text t;
    CHECK(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0);
    stub s = {.v = &t.vocab};
    int sep = nn_vocab_id(&t.vocab, '=');
    nn_exact_match r;
    CHECKF(nn_exact_match_eval(&t.val, sep, stub_complete, &s, 6, &r) == 0, "%s", nn_last_error());
    int wrong = 0, first_wrong[6], n_first = 0;
    for (int i = 0; i < 1000; i++) {
        bool bad = i % 5 == 0 || i % 7 == 3 || i % 11 == 4;
        wrong += bad;
        if (bad && n_first < 6) first_wrong[n_first++] = i;
    }
    CHECKF(s.calls == 1 && r.total == 1000 && r.correct == 1000 - wrong, "%d of %d right, expected %d", r.correct,
           r.total, 1000 - wrong);
    CHECK(r.n_mistakes == 6);
    for (int k = 0; k < r.n_mistakes && k < 6; k++) CHECK(r.mistakes[k].index == first_wrong[k]);
    /* Line 0 is "89+0=89": the stub wrote 90. */
    CHECK(r.mistakes[0].n == 2 && r.mistakes[0].ids[0] == digit_id(&t.vocab, 9) &&
          r.mistakes[0].ids[1] == digit_id(&t.vocab, 0));
    nn_exact_match_free(&r);
    CHECK(r.mistakes == NULL && r.n_mistakes == 0);
    /* No mistakes kept on request; the counts stay. */
    CHECK(nn_exact_match_eval(&t.val, sep, stub_complete, &s, 0, &r) == 0 && r.correct == 1000 - wrong &&
          r.n_mistakes == 0);
    nn_exact_match_free(&r);
    /* Lines without the separator, and data that are not lines. */
    int plus = nn_vocab_id(&t.vocab, '+');
    CHECK(nn_exact_match_eval(&t.val, plus + 100, stub_complete, &s, 0, &r) == -1 &&
          strstr(nn_last_error(), "line 1 ") && r.total == 0);
    nn_text_free(&t);
    CHECK(nn_text_load(&t, "datasets/names-by-language", NN_TEXT_AUTO, 1, NULL) == 0);
    CHECK(nn_exact_match_eval(&t.val, 1, stub_complete, &s, 0, &r) == -1 && strstr(nn_last_error(), "lines"));
    nn_text_free(&t);
}

/* ---- greedy completion ---- */

typedef struct collect {
    int ids[16], n;
} collect;

static int collect_until_boundary(void *user, int id) {
    collect *c = user;
    if (id == NN_TEXT_BOUNDARY) return 1;
    c->ids[c->n++] = id;
    return 0;
}

static void test_greedy_matches_generate(void) {
    const char *dir = write_addition("greedy");
    nn_text t;
    CHECK(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0);
    /* A small LSTM trained for a moment: its completions are mostly wrong,
     * some stop and some run on, and must agree token for token. */
    omp_set_num_threads(1);
    nn_train_config c = nn_train_config_defaults();
    c.spec = "embed(8) lstm(16) linear(13)";
    c.opt = nn_optim_defaults(NN_OPT_ADAM);
    c.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 1e-2f};
    c.batch_size = 16;
    c.context = 16;
    c.steps = 100;
    c.eval_every = 100;
    c.eval_windows = 2;
    nn_model m;
    nn_lm_history h;
    CHECKF(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    nn_lm_history_free(&h);
    nn_rng rng;
    nn_rng_seed(&rng, 7, 0);
    enum { N = 40, MAX_NEW = 3 }; /* three-digit sums do not stop in 3 */
    int lengths[N], out[N * MAX_NEW], out_lens[N], sep = nn_vocab_id(&t.vocab, '=');
    for (int i = 0; i < N; i++) { /* the prompts: ".a+b=" of the held-out lines, 4 to 7 tokens */
        const int *seq = t.val.ids + t.val.offsets[i];
        lengths[i] = 1;
        while (seq[lengths[i] - 1] != sep) lengths[i]++;
    }
    CHECKF(nn_complete_greedy(&m, t.val.ids, t.val.offsets, lengths, N, MAX_NEW, NN_TEXT_BOUNDARY, 7, out, out_lens) ==
               0,
           "%s", nn_last_error());
    int differ = 0, stopped = 0;
    for (int i = 0; i < N; i++) {
        collect got = {.n = 0};
        nn_generate(&m, t.val.ids + t.val.offsets[i], lengths[i], MAX_NEW, 0.0f, 0, &rng, collect_until_boundary, &got);
        differ += got.n != out_lens[i] || memcmp(got.ids, out + i * MAX_NEW, (size_t)got.n * sizeof(int)) != 0;
        stopped += out_lens[i] < MAX_NEW;
    }
    CHECKF(differ == 0, "%d of %d completions differ from nn_generate's", differ, N);
    /* The same in one batch, and one prompt at a time. */
    int out1[N * MAX_NEW], lens1[N];
    CHECK(nn_complete_greedy(&m, t.val.ids, t.val.offsets, lengths, N, MAX_NEW, NN_TEXT_BOUNDARY, 1, out1, lens1) ==
          0);
    CHECK(memcmp(lens1, out_lens, sizeof lens1) == 0);
    for (int i = 0; i < N; i++) CHECK(memcmp(out1 + i * MAX_NEW, out + i * MAX_NEW, (size_t)lens1[i] * sizeof(int)) == 0);
    CHECKF(stopped > 0 && stopped < N, "%d of %d completions stopped", stopped, N);
    nn_model_free(&m);
    /* A GPT (learned positions, causal attention), untrained: the padded
     * rows of a batch change nothing, and a sequence longer than its
     * context is refused. */
    CHECKF(nn_model_plan_text_context(&m,
                                      "embed(16) posembed residual(layernorm attention(2)) "
                                      "residual(layernorm linear(32) gelu linear(16)) layernorm unembed",
                                      13, 13, 10) == 0,
           "%s", nn_last_error());
    nn_model_build(&m, &rng);
    CHECKF(nn_complete_greedy(&m, t.val.ids, t.val.offsets, lengths, N, MAX_NEW, NN_TEXT_BOUNDARY, 7, out, out_lens) ==
               0,
           "%s", nn_last_error());
    CHECK(nn_complete_greedy(&m, t.val.ids, t.val.offsets, lengths, N, MAX_NEW, NN_TEXT_BOUNDARY, 1, out1, lens1) ==
          0);
    CHECK(memcmp(lens1, out_lens, sizeof lens1) == 0);
    for (int i = 0; i < N; i++) CHECK(memcmp(out1 + i * MAX_NEW, out + i * MAX_NEW, (size_t)lens1[i] * sizeof(int)) == 0);
    int long_prompt[11] = {0}, long_len = 11, long_out[2], long_made;
    size_t at = 0;
    CHECK(nn_complete_greedy(&m, long_prompt, &at, &long_len, 1, 2, NN_TEXT_BOUNDARY, 1, long_out, &long_made) == -1 &&
          strstr(nn_last_error(), "longer than the model's context of 10"));
    nn_model_free(&m);
    /* Not a language model. */
    CHECK(nn_model_plan_text(&m, "embed(8) lstm(16) last linear(13)", 13, 13) == 0);
    nn_model_build(&m, &rng);
    CHECK(nn_complete_greedy(&m, t.val.ids, t.val.offsets, lengths, N, MAX_NEW, NN_TEXT_BOUNDARY, 7, out, out_lens) ==
              -1 &&
          strstr(nn_last_error(), "not a language model"));
    nn_model_free(&m);
    nn_text_free(&t);
}

/* ---- learning ---- */

/* A small LSTM trained for a few seconds (600 steps; about 3 s of one core)
 * adds two-digit numbers it has never seen far above chance: 176 of the
 * 1,000 held-out sums here, where a guess of the sum is right about 1 time
 * in 100; the bar is 80, room for other machines' rounding. nn eval says
 * the same from its checkpoint. */
static void test_lstm_learns_addition(void) {
    omp_set_num_threads(1); /* the run's numbers depend on the thread count */
    const char *dir = write_addition("learn");
    nn_text t;
    CHECK(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0);
    nn_train_config c = nn_train_config_defaults();
    c.spec = "embed(32) lstm(128) linear(13)";
    c.opt = nn_optim_defaults(NN_OPT_ADAM);
    c.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 1e-2f};
    c.clip = 1.0f;
    c.batch_size = 32;
    c.context = 32;
    /* Under the sanitizers (50 times slower and more) a short run checks the
     * memory and nn eval's agreement only; the bar is the normal build's. */
    bool sanitized = getenv("NN_SANITIZE") != NULL;
    c.steps = sanitized ? 40 : 600;
    c.eval_every = c.steps;
    c.eval_windows = 64;
    char save[256];
    snprintf(save, sizeof save, "%s", tmp("addition.safetensors"));
    c.save_path = save;
    nn_model m;
    nn_lm_history h;
    double t0 = nn_seconds();
    CHECKF(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FINISHED, "%s", nn_last_error());
    double trained = nn_seconds() - t0;
    nn_exact_match r;
    CHECKF(nn_exact_match_eval(&t.val, nn_vocab_id(&t.vocab, '='), nn_greedy_completer, &m, 3, &r) == 0, "%s",
           nn_last_error());
    printf("  LSTM, %ld steps (%.1f s): exact match %d of %d held-out sums\n", c.steps, trained, r.correct, r.total);
    if (sanitized) printf("  (sanitizer build: 40 steps, the bar of 80 is the normal build's check)\n");
    else CHECKF(r.correct >= 80, "exact match %d of %d", r.correct, r.total);
    /* nn eval on the checkpoint: the same count. */
    int rc = nn("eval --model %s --data %s --threads 1", save, dir);
    char want[64];
    snprintf(want, sizeof want, "(%d of %d held-out lines)", r.correct, r.total);
    CHECKF(rc == 0 && strstr(out_text, want) && strstr(out_text, "wrote"), "rc %d: %s%s", rc, out_text, err_text);
    nn_exact_match_free(&r);
    nn_model_free(&m);
    nn_lm_history_free(&h);
    nn_text_free(&t);
}

/* nn eval's language-model errors. */
static void test_cli_errors(void) {
    const char *dir = write_addition("cli");
    nn_text t;
    CHECK(nn_text_load(&t, dir, NN_TEXT_AUTO, 1, NULL) == 0);
    nn_train_config c = nn_train_config_defaults();
    c.spec = "embed(4) lstm(8) linear(13)";
    c.opt = nn_optim_defaults(NN_OPT_ADAM);
    c.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 3e-3f};
    c.batch_size = 4;
    c.context = 8;
    c.steps = 2;
    c.eval_every = 2;
    c.eval_windows = 2;
    char save[256];
    snprintf(save, sizeof save, "%s", tmp("tiny.safetensors"));
    c.save_path = save;
    nn_model m;
    nn_lm_history h;
    CHECK(nn_train_lm(&c, &t, &m, &h) == NN_TRAIN_FINISHED);
    int rc = nn("eval --model %s --data %s --mistakes 2", save, dir);
    CHECKF(rc == 0 && strstr(out_text, "exact match") && strstr(out_text, "held-out lines") &&
               strstr(out_text, "the first 2 mistakes"),
           "rc %d: %s%s", rc, out_text, err_text);
    rc = nn("eval --model %s --data %s --confusion %s", save, dir, tmp("c.png"));
    CHECKF(rc == 2 && strstr(err_text, "--confusion is for classifiers"), "rc %d: %s", rc, err_text);
    rc = nn("eval --model %s --data datasets/names", save);
    CHECKF(rc == 1 && one_line_error("datasets/names"), "rc %d: %s", rc, err_text);
    /* nn train reads the folder as lines (a language model by steps), not
     * as two classes because it holds two .txt files. */
    rc = nn("train --data %s --arch 'embed(4) lstm(8) linear(13)' --steps 2 --eval-every 2 --eval-windows 2 "
            "--context 8 --batch-size 4 --threads 1",
            dir);
    CHECKF(rc == 0 && strstr(out_text, "(lines)"), "rc %d: %s%s", rc, out_text, err_text);
    nn_model_free(&m);
    nn_lm_history_free(&h);
    nn_text_free(&t);
}

TEST_MAIN(TEST(test_generator_deterministic), TEST(test_generator_sums), TEST(test_folder_kind),
          TEST(test_exact_match_counts), TEST(test_greedy_matches_generate), TEST(test_lstm_learns_addition),
          TEST(test_cli_errors), TEST(test_answer_needs), TEST(test_answer_targets_need_lines))
