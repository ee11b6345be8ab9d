/* Sequence-to-sequence the GPT way: a task whose input and output are both
 * sequences, learned by a language model that reads the input as a prompt and
 * writes the output after it (docs/seq2seq.md).
 *
 *   - the addition data set: sums written as text, one per line,
 *     "12+34=46" (operands and sum in decimal, no leading zeros), a training
 *     file and a held-out test file with no sum in common;
 *   - greedy completion: the model's most probable next token, appended and
 *     fed back, until it writes the end of the line;
 *   - exact match: the share of held-out lines "PROMPT=ANSWER" whose prompt
 *     (everything up to and including the first "=") the model completes
 *     with exactly ANSWER and then the end of the line;
 *   - an answer-only loss: training counts only the targets the model is
 *     scored on, the answer's characters and the end of the line
 *     (nn_answer_needs; `nn train --targets answer`).
 *
 * Usage (what `nn eval` does with a language model of lines):
 *     nn_text t;       nn_text_load(&t, "data/addition", NN_TEXT_AUTO, 0, &vocab);
 *     nn_exact_match r;
 *     nn_exact_match_eval(&t.val, nn_vocab_id(&t.vocab, NN_ANSWER_SEP), nn_greedy_completer, &model, 5, &r);
 *     printf("%d of %d\n", r.correct, r.total);
 *     nn_exact_match_free(&r);
 */
#ifndef NN_SEQ2SEQ_H
#define NN_SEQ2SEQ_H

#include <stddef.h>
#include <stdint.h>

#include "nn/api.h"
#include "nn/model.h"
#include "nn/text.h"

NN_BEGIN_DECLS

/* The character that ends a prompt: a line's answer is what follows its
 * first NN_ANSWER_SEP ("12+34=" and "46"). Its id in a vocabulary is
 * nn_vocab_id(&vocab, NN_ANSWER_SEP). */
#define NN_ANSWER_SEP '='

/* ---- the addition data set ---- */

#define NN_ADDITION_SEED 1 /* the seed of `make data DATASET=addition` (and addition3) */
#define NN_ADDITION_MAX_DIGITS 3

typedef struct nn_addition_config {
    int digits;    /* the operands are in [0, 10^digits): 1 to NN_ADDITION_MAX_DIGITS */
    int n_test;    /* held-out sums, at least 1 */
    int n_train;   /* training sums; 0: every pair not held out */
    uint64_t seed; /* chooses the pairs and their order */
} nn_addition_config;

/* The data set of `make data` for operands of `digits` digits, seed
 * NN_ADDITION_SEED: 1 digit: 10 test, the other 90 train; 2 digits: 1,000
 * test, the other 9,000 train (every pair once); 3 digits: 10,000 test and
 * 100,000 train of the 1,000,000 pairs. Other digits: fatal. */
nn_addition_config nn_addition_defaults(int digits);

/* The sums as text: the ordered pairs (a, b) of operands are put in an order
 * drawn from the seed (the same bits on every machine); the first n_test
 * make the test set, the next n_train (0: all the rest) the training set, so
 * that no sum is in both ("12+34" and "34+12" are different pairs). Each sum
 * is one line "a+b=c\n". *train and *test are malloc'd, NUL-terminated; the
 * caller frees them. Returns 0, or -1 with the error set (digits out of
 * range, fewer than one test sum, more sums than pairs). */
int nn_addition_generate(const nn_addition_config *c, char **train, char **test);

/* ---- greedy completion ---- */

/* Completes n prompts greedily: prompt i is the token ids ids[offsets[i]
 * .. offsets[i] + lengths[i]) (lengths[i] >= 1); the most probable next token
 * (the first of equals, as nn_sample_token at temperature 0) is appended and
 * the model run again, until it writes `stop` (left out of the completion) or
 * has written max_new tokens. Completion i goes to out[i * max_new ..] and
 * its length to out_lens[i] (max_new when it never stopped).
 *
 * Each step runs the model on the whole sequence so far, as nanoGPT's
 * generate does, rather than carrying a state: right for any model whose
 * scores at a position depend on the tokens up to it (recurrent layers,
 * causal attention), with no cache to keep in step; for short completions
 * it costs a few times a carried state's work. The prompts run `batch` at a
 * time (>= 1), each row padded to the longest; a model with learned
 * positions takes sequences up to its context: a longer one is an error.
 * Runs in evaluation mode without gradients. Returns 0, or -1 with the error
 * set (not a language model; a sequence longer than the model's context). */
int nn_complete_greedy(nn_model *m, const int *ids, const size_t *offsets, const int *lengths, int n, int max_new,
                       int stop, int batch, int *out, int *out_lens);

/* What completes prompts for nn_exact_match_eval, with nn_complete_greedy's
 * arguments and results; `user` is the caller's. Returns 0, or -1 with the
 * error set. */
typedef int (*nn_completer)(void *user, const int *ids, const size_t *offsets, const int *lengths, int n,
                            int max_new, int stop, int *out, int *out_lens);

/* nn_complete_greedy as an nn_completer: `model` is the nn_model; 256
 * prompts a batch. */
int nn_greedy_completer(void *model, const int *ids, const size_t *offsets, const int *lengths, int n, int max_new,
                        int stop, int *out, int *out_lens);

/* ---- prompts and answers ---- */

/* Line i of a LINES split (the sequence [boundary, line, boundary]): its
 * answer is the tokens after the line's first `sep`, up to the closing
 * boundary (which is not part of it), at ids[*start .. *start + *len); the
 * prompt is the boundary and the line up to and including that sep. The one
 * definition of a prompt and its answer: exact match scores it and the
 * answer-only loss trains on it. Returns 0, or -1 with the error "line 7 of
 * the split has no separator ..." (numbered from 1). */
int nn_line_answer(const nn_text_split *lines, int i, int sep, size_t *start, int *len);

/* Which tokens of a LINES split an answer-only loss predicts, and what each
 * needs to see: needs[k], for each token k of lines->ids, is 0 for the
 * opening boundary, the prompt and the separator, which are not targets;
 * for a token of its line's answer (nn_line_answer) or the boundary that
 * closes the line it is how far back the line's opening boundary is (the
 * first answer token of ".12+34=46." 7), so that it counts only in a
 * window that holds the whole prompt before it (nn_text_sampler.needs): a
 * window that starts inside a line would otherwise ask for the sum of
 * operands it cut ("2+34=" for "12+34=46"). A language model is trained to
 * write the answer and stop, and neither to guess the prompt nor to add
 * what it cannot see. *needs is malloc'd ([lines->n_ids]; the caller frees
 * it). Returns 0, or -1 with *needs NULL and the error: a split that is not
 * lines, a line without sep. */
int nn_answer_needs(const nn_text_split *lines, int sep, int **needs);

/* ---- exact match ---- */

typedef struct nn_completion_mistake {
    int index; /* the line: sequence `index` of the split */
    int n;     /* what the model wrote: n ids (the stop token left out) */
    int *ids;
} nn_completion_mistake;

typedef struct nn_exact_match {
    int total, correct;
    int n_mistakes; /* the first mistakes in split order, at most max_mistakes */
    nn_completion_mistake *mistakes;
} nn_exact_match;

/* Scores completions of a LINES split (sequences [boundary, line,
 * boundary]) whose every line holds the token `sep`: the prompt and the
 * answer as nn_line_answer draws them. `complete` gets every prompt at once, with max_new = the
 * longest answer + 1 and stop = NN_TEXT_BOUNDARY; a completion is right when
 * it is the answer, stopped (a completion that never stops is max_new
 * tokens long, longer than any answer). Keeps the first max_mistakes (>= 0)
 * wrong completions. Returns 0, or -1 with *r empty and the error set: a
 * split that is not lines, a line without sep ("line 7 of the split has no
 * separator"), or the completer's error. */
int nn_exact_match_eval(const nn_text_split *split, int sep, nn_completer complete, void *user, int max_mistakes,
                        nn_exact_match *r);
/* Frees and zeroes; harmless on a zeroed result. */
void nn_exact_match_free(nn_exact_match *r);

NN_END_DECLS

#endif
