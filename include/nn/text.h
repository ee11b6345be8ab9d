/* Text data for the sequence models: UTF-8, vocabularies of characters, the
 * three kinds of text data set, and the batches the training loop draws.
 *
 * Characters are Unicode code points. Files are decoded as strict UTF-8
 * (RFC 3629): a stray or missing continuation byte, an overlong form, a
 * surrogate or a value above U+10FFFF is refused with a one-line error naming
 * the file and the byte offset (counted from 0) where the bad sequence starts;
 * so are an empty file and a NUL character.
 *
 * The three kinds, and how a path tells which it holds (NN_TEXT_AUTO):
 *
 *   - a folder whose .txt files are exactly "train.lines.txt" and
 *     "test.lines.txt": one sequence per line (LINES) with the split given by
 *     the files: the lines of train.lines.txt train, those of test.lines.txt
 *     are the held-out split (nn_text.val), whatever the seed (data/addition,
 *     written by `make data DATASET=addition`, nn/seq2seq.h);
 *   - any other folder with two or more .txt files: one file per class (CLASSES).
 *     Each line of a file is one example; its label is the file's name
 *     without ".txt" (data/names-by-language/Arabic.txt: class "Arabic").
 *     Classes are numbered in the byte order of their names.
 *   - a file given directly (any name), or a folder with exactly one .txt
 *     file: one sequence per line (LINES) when the file is named "names.txt"
 *     or its name ends in ".lines.txt" (data/names/names.txt); otherwise one
 *     text stream (STREAM), the whole file, line breaks included
 *     (data/tinyshakespeare/input.txt, or --data book.txt).
 *
 * In a folder only regular files whose names end in ".txt" and do not start
 * with "." count: a README or LICENSE beside the data is ignored. A kind given
 * explicitly overrides the names: a folder of one .txt file read as CLASSES is
 * an error (one class), and so is a folder of several read as a STREAM or LINES
 * (but the train/test pair as LINES); the pair read as CLASSES is two classes.
 *
 * Lines (LINES and CLASSES) end at "\n"; a "\r" before it is dropped; the
 * last line needs no line break; an empty line is an error.
 *
 * Splits (in nn_text.train and nn_text.val):
 *   STREAM   the first 90% of the characters train, the rest validation
 *            (floor(n * 9 / 10), as nanoGPT: Tiny Shakespeare gives
 *            1,003,854 / 111,540);
 *   LINES    floor(n * 9 / 10) of the lines train, chosen by the seed (a
 *            train.lines.txt / test.lines.txt folder: the files' lines);
 *   CLASSES  within each class floor(n_c * 15 / 100) of its lines go to
 *            validation, chosen by the seed, the rest train.
 * In each split the sequences keep their file order (class after class).
 *
 * The vocabulary: id 0 is the reserved token of the kind, if it has one (the
 * boundary of LINES, NN_TEXT_BOUNDARY; the padding of CLASSES, NN_TEXT_PAD),
 * then every character in increasing code point order. It is built from the
 * training split, together with any character only the validation split
 * holds, so that validation can always be encoded: in effect it is every
 * character of the data set, the same for every seed (names-by-language has
 * 13 characters that occur once, which a split by seed may send either way).
 * It travels in a checkpoint as a string (nn_vocab_to_string, nn_vocab_parse).
 *
 * Usage (a character language model):
 *     nn_text t;
 *     if (nn_text_load(&t, "data/tinyshakespeare", NN_TEXT_AUTO, seed, NULL) != 0) ...
 *     nn_text_sampler s;   nn_text_sampler_init(&s, &t.train, T, seed);
 *     nn_text_windows w;   nn_text_windows_init(&w, &t.val, T, 0);
 *     each step: nn_text_sampler_next(&s, B, x, y);        x, y: [B, T]
 *     evaluation: for (i = 0; i < w.count; i += B) nn_text_windows_batch(&w, i, B, x, y);
 *     nn_text_windows_free(&w); nn_text_sampler_free(&s); nn_text_free(&t);
 */
#ifndef NN_TEXT_H
#define NN_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/api.h"
#include "nn/rng.h"

NN_BEGIN_DECLS

/* ---- UTF-8 ---- */

/* Decodes `len` bytes of strict UTF-8 into *cps (malloc'd, the caller frees)
 * and their number *n. `source` names the bytes in messages (a path). Returns
 * 0, or -1 with *cps NULL and the error "SOURCE: invalid UTF-8 at byte N:
 * WHAT". Zero bytes decode to zero code points (*cps is then non-NULL). */
int nn_utf8_decode(uint32_t **cps, size_t *n, const char *bytes, size_t len, const char *source);

/* Writes code point cp as UTF-8 into buf (cap bytes; no NUL is added).
 * Returns the number of bytes (1 to 4), or -1 with the error set when cp is
 * not a Unicode scalar value (a surrogate, or above U+10FFFF) or does not fit. */
int nn_utf8_encode(char *buf, size_t cap, uint32_t cp);

/* ---- vocabularies ---- */

/* What id 0 of a vocabulary is. */
typedef enum nn_vocab_special {
    NN_VOCAB_NONE,     /* nothing: id 0 is the first character (STREAM) */
    NN_VOCAB_BOUNDARY, /* the boundary that starts and ends each sequence (LINES) */
    NN_VOCAB_PAD,      /* padding after a sequence's end (CLASSES) */
} nn_vocab_special;

#define NN_TEXT_BOUNDARY 0 /* id of the boundary token of LINES data */
#define NN_TEXT_PAD 0      /* id that pads sequences in nn_text_batcher's batches */

typedef struct nn_vocab {
    nn_vocab_special special;
    int size;        /* ids 0..size-1: the special token if any, then the characters */
    uint32_t *chars; /* [size]: the code point of each id; 0 for the special token */
} nn_vocab;

/* The vocabulary of the n code points cps: `special` at id 0 unless
 * NN_VOCAB_NONE, then the distinct code points in increasing order. Returns
 * 0, or -1 with the error set when there is no character or one that is not
 * a Unicode scalar value or is U+0000. */
int nn_vocab_build(nn_vocab *v, nn_vocab_special special, const uint32_t *cps, size_t n);
/* Frees and zeroes; harmless on a zeroed vocabulary. */
void nn_vocab_free(nn_vocab *v);

/* The id of code point cp, or -1 when the vocabulary lacks it (no error set). */
int nn_vocab_id(const nn_vocab *v, uint32_t cp);

/* Encodes `len` bytes of UTF-8 text into a malloc'd array of ids (the caller
 * frees) and their number *n. Returns NULL with the error set when the text
 * is not valid UTF-8 or holds a character the vocabulary lacks: "character
 * 'Z' (U+005A), the 3rd of the text, is not in the vocabulary". Empty text
 * gives a non-NULL array and *n = 0. */
int *nn_vocab_encode(const nn_vocab *v, const char *text, size_t len, size_t *n);

/* Writes token `id` as UTF-8 into buf (cap >= 5 bytes) with a terminating
 * NUL and returns its length: the boundary token is a line break ("\n", the
 * end of a line), padding is "". An id outside 0..size-1 is fatal. */
int nn_vocab_token(const nn_vocab *v, int id, char *buf, size_t cap);

/* The n ids as a UTF-8 string, each as nn_vocab_token writes it; malloc'd and
 * NUL-terminated, the caller frees. An id outside 0..size-1 is fatal. */
char *nn_vocab_decode(const nn_vocab *v, const int *ids, size_t n);

/* The vocabulary as one string for a checkpoint's string metadata: the
 * special token's name ("none", "boundary" or "pad"), a colon, then the
 * characters in id order as UTF-8, e.g. "boundary:abcdefghijklmnopqrstuvwxyz"
 * (in Python: special, chars = s.split(":", 1)). Malloc'd; the caller frees. */
char *nn_vocab_to_string(const nn_vocab *v);

/* Parses a string written by nn_vocab_to_string into *v, checking all of it:
 * the special token's name, valid UTF-8, at least one character, code points
 * strictly increasing. `source` names the string in messages (the checkpoint's
 * path). Returns 0, or -1 with *v empty and the error "SOURCE: vocabulary: ...". */
int nn_vocab_parse(nn_vocab *v, const char *s, const char *source);

/* ---- text data sets ---- */

typedef enum nn_text_kind {
    NN_TEXT_AUTO,    /* tell by the path's layout (see the top of this file) */
    NN_TEXT_STREAM,  /* one text stream */
    NN_TEXT_LINES,   /* one sequence per line */
    NN_TEXT_CLASSES, /* one file per class, one example per line */
} nn_text_kind;

/* "auto", "stream", "lines", "classes". */
const char *nn_text_kind_name(nn_text_kind kind);
/* The kind named `name` (as nn_text_kind_name writes it). Returns 0, or -1
 * with the error listing the names. */
int nn_text_kind_parse(const char *name, nn_text_kind *kind);

/* One split of a data set, as token ids.
 *   STREAM:  ids holds the split's characters in file order; n_seqs is 0.
 *   LINES:   sequence i is ids[offsets[i] .. offsets[i] + lengths[i]): the
 *            boundary, the line's characters, the boundary (makemore's
 *            ".emma."), so inputs are its first lengths[i] - 1 ids and
 *            next-token targets its last lengths[i] - 1.
 *   CLASSES: sequence i is the example's characters (no boundaries) and
 *            labels[i] its class. */
typedef struct nn_text_split {
    int *ids;
    size_t n_ids;
    int n_seqs;
    size_t *offsets; /* [n_seqs]; NULL for a stream */
    int *lengths;    /* [n_seqs]; NULL for a stream */
    int *labels;     /* [n_seqs] for CLASSES; NULL otherwise */
    int max_len;     /* the longest sequence; 0 for a stream */
} nn_text_split;

typedef struct nn_text {
    nn_text_kind kind; /* the kind read: never NN_TEXT_AUTO */
    nn_vocab vocab;
    nn_text_split train, val;
    int n_classes;      /* CLASSES: at least 2; 0 otherwise */
    char **class_names; /* [n_classes], in label order */
} nn_text;

/* Reads the data set at `path` (a file or a folder) as `kind` (NN_TEXT_AUTO:
 * by the layout), splits it and encodes it. `seed` chooses the validation
 * lines of LINES and CLASSES (a stream's split does not depend on it).
 * `vocab` NULL builds the vocabulary from the data; otherwise a copy of
 * *vocab is used (the one a checkpoint was trained with): its special token
 * must be the kind's, and a character it lacks is an error naming the file,
 * the byte offset and the character. Returns 0, or -1 with *t empty and the
 * error set, naming the file or folder. */
int nn_text_load(nn_text *t, const char *path, nn_text_kind kind, uint64_t seed,
                 const nn_vocab *vocab);
/* The kind the layout of `path` gives (NN_TEXT_AUTO's rules at the top of
 * this file), from the path's name or the folder's listing alone: no file is
 * read. Returns 0, or -1 with the error set (no such path, no .txt file). */
int nn_text_layout_kind(const char *path, nn_text_kind *kind);
/* Frees and zeroes; harmless on a zeroed data set. */
void nn_text_free(nn_text *t);

/* ---- batches ---- */

/* A LINES split as one stream to draw windows from: the lines joined with
 * one boundary between two and one at each end, as in makemore's
 * ".emma.olivia.", so that a boundary is followed by a line's first
 * character, never by a second boundary. *stream gets the ids (malloc'd;
 * free(stream->ids)) and is a stream's split (n_seqs 0). With needs not
 * NULL (one value per token of lines->ids, e.g. nn_answer_needs') *stream_needs
 * gets the value of each token kept (malloc'd, [stream->n_ids]; the caller
 * frees it); a line's opening boundary is the one dropped, so its closing
 * boundary keeps its value, and a count back to a line's opening boundary
 * still ends on the boundary before the line. */
void nn_text_join_lines(const nn_text_split *lines, const int *needs, nn_text_split *stream, int **stream_needs);

/* Random windows of block + 1 consecutive tokens of a split (as nanoGPT's
 * get_batch): x is a window's first block tokens, y its last block, so
 * y[t] = x[t + 1] and y's last is the token after x's. The starts are uniform
 * over the split and depend only on the seed. The sampler only reads the
 * split, which must outlive it. */
typedef struct nn_text_sampler {
    const int *ids;
    size_t n_ids;
    int block;
    nn_rng rng;
    /* NULL (init's): every target counts. Otherwise one value per token of
     * the split, what a target needs to count: 0, never; k >= 1, that the
     * window's inputs hold the k tokens before it (its whole prompt, for an
     * answer-only loss: nn_answer_needs). A target that does not count is
     * NN_IGNORE_LABEL in y (nn/core.h: nn_cross_entropy skips it); x is
     * unchanged. Set after init; it must outlive the sampler. The windows
     * drawn do not depend on it. */
    const int *needs;
} nn_text_sampler;

/* block >= 1 (fatal otherwise). Returns 0, or -1 with the error set when the
 * split has fewer than block + 1 tokens. */
int nn_text_sampler_init(nn_text_sampler *s, const nn_text_split *split, int block,
                         uint64_t seed);
/* Fills x [batch, block] and y [batch, block] with `batch` new windows. */
void nn_text_sampler_next(nn_text_sampler *s, int batch, int *x, int *y);
/* Zeroes the sampler (it allocates nothing). */
void nn_text_sampler_free(nn_text_sampler *s);

/* A fixed set of windows of a split, for validation: the same on every run
 * and for every seed, since it depends only on the split and the sizes. With
 * max_count <= 0, or at least the number of windows that fit side by side,
 * they are the side-by-side windows starting at 0, block, 2 block, ... that
 * fit (every token is a target once but the last few); otherwise max_count
 * windows spread evenly from the first token to the last. The set only reads
 * the split, which must outlive it. */
typedef struct nn_text_windows {
    const int *ids;
    int block;
    int count;      /* number of windows */
    size_t *starts; /* [count]: where each window starts in ids */
    const int *needs; /* NULL, or what a target needs to count, as nn_text_sampler's */
} nn_text_windows;

/* block >= 1 (fatal otherwise). Returns 0, or -1 with the error set when the
 * split has fewer than block + 1 tokens. */
int nn_text_windows_init(nn_text_windows *w, const nn_text_split *split, int block,
                         int max_count);
/* Fills x and y [n, block] with windows first .. first + n - 1 (as the
 * sampler does), n = min(batch, count - first); returns n (0 when first >=
 * count). */
int nn_text_windows_batch(const nn_text_windows *w, int first, int batch, int *x, int *y);
void nn_text_windows_free(nn_text_windows *w);

/* Mini-batches of whole sequences of a LINES or CLASSES split, padded with
 * NN_TEXT_PAD to the longest of the batch, with their lengths and labels.
 * Usage as nn_loader's (nn/data.h): start_epoch before each epoch, then next
 * until it returns 0. The batcher only reads the split, which must outlive it. */
typedef struct nn_text_batcher {
    const nn_text_split *split;
    int batch_size;
    bool shuffle;
    nn_rng rng;  /* drives the shuffles, one per epoch */
    int *order;  /* the epoch's sequence indices */
    int pos;     /* next position in order */
} nn_text_batcher;

/* batch_size >= 1 (fatal otherwise). Returns 0, or -1 with the error set when
 * the split holds no sequences (a stream). */
int nn_text_batcher_init(nn_text_batcher *b, const nn_text_split *split, int batch_size,
                         bool shuffle, uint64_t seed);
/* Starts an epoch: with shuffle a fresh seeded permutation, else file order. */
void nn_text_batcher_start_epoch(nn_text_batcher *b);
/* Fills ids [n, *width] (row-major; room for batch_size * split->max_len ids),
 * lengths [n] and, unless NULL, labels [n] (CLASSES only: fatal for a split
 * without labels) with the next n sequences, *width being the longest of
 * them; each row is its sequence then NN_TEXT_PAD. Returns n: batch_size,
 * fewer for the epoch's last batch, 0 once the epoch is over. */
int nn_text_batcher_next(nn_text_batcher *b, int *ids, int *lengths, int *labels, int *width);
/* Number of batches in one epoch (the last may be partial). */
int nn_text_batcher_num_batches(const nn_text_batcher *b);
void nn_text_batcher_free(nn_text_batcher *b);

NN_END_DECLS

#endif
