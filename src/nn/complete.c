/* Greedy completion of prompts by a language model, many at once, and the
 * exact-match score of held-out "PROMPT=ANSWER" lines (nn/seq2seq.h). */
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "nn/seq2seq.h"

#define GREEDY_BATCH 256

/* One chunk of prompts, first .. first + n - 1, completed together. Each step
 * runs the rows still writing as one batch [A, W] padded to the longest (the
 * padding comes after a row's last real token, so causal scores up to it do
 * not see it) and appends to each row its most probable next token, read at
 * the row's last position. */
static int complete_chunk(nn_model *m, nn_ctx *ctx, const int *ids, const size_t *offsets, const int *lengths,
                          int first, int n, int max_new, int stop, int *out, int *out_lens) {
    int longest = 0;
    for (int i = 0; i < n; i++)
        if (lengths[first + i] > longest) longest = lengths[first + i];
    int width = longest + max_new, context = m->in_shape[0], rc = 0;
    int *seqs = nn_xmalloc((size_t)n * (size_t)width * sizeof *seqs); /* row i: prompt, then completion */
    int *len = nn_xmalloc((size_t)n * sizeof *len), *active = nn_xmalloc((size_t)n * sizeof *active);
    int *x = nn_xmalloc((size_t)n * (size_t)width * sizeof *x), *xlen = nn_xmalloc((size_t)n * sizeof *xlen);
    int n_active = 0;
    for (int i = 0; i < n; i++) {
        memcpy(seqs + (size_t)i * width, ids + offsets[first + i], (size_t)lengths[first + i] * sizeof *seqs);
        len[i] = lengths[first + i];
        out_lens[first + i] = 0;
        if (max_new > 0) active[n_active++] = i;
    }
    while (n_active > 0 && rc == 0) {
        int W = 0;
        for (int a = 0; a < n_active; a++)
            if (len[active[a]] > W) W = len[active[a]];
        if (context > 0 && W > context) {
            rc = nn_error("a sequence of %d tokens (a prompt and its completion so far) is longer than the model's "
                          "context of %d",
                          W, context);
            break;
        }
        for (int a = 0; a < n_active; a++) {
            int i = active[a];
            int *row = x + (size_t)a * W;
            memcpy(row, seqs + (size_t)i * width, (size_t)len[i] * sizeof *row);
            for (int t = len[i]; t < W; t++) row[t] = stop;
            xlen[a] = len[i];
        }
        nn_ctx_reset(ctx);
        nn_tensor *logits = nn_model_forward_tokens(m, ctx, x, n_active, W, xlen, NULL); /* [A, W, V] */
        int still = 0;
        for (int a = 0; a < n_active; a++) {
            int i = active[a];
            const float *z = logits->data + ((size_t)a * W + (size_t)(len[i] - 1)) * m->vocab;
            int next = nn_sample_token(z, m->vocab, 0.0f, 0, NULL);
            int *made = &out_lens[first + i];
            if (next == stop) continue;
            out[(size_t)(first + i) * max_new + *made] = next;
            seqs[(size_t)i * width + len[i]++] = next;
            if (++*made < max_new) active[still++] = i;
        }
        n_active = still;
    }
    free(seqs);
    free(len);
    free(active);
    free(x);
    free(xlen);
    return rc;
}

int nn_complete_greedy(nn_model *m, const int *ids, const size_t *offsets, const int *lengths, int n, int max_new,
                       int stop, int batch, int *out, int *out_lens) {
    NN_CHECK(n >= 0 && max_new >= 0 && batch >= 1, "nn_complete_greedy: %d prompts, %d tokens, batch %d", n, max_new,
             batch);
    for (int i = 0; i < n; i++) NN_CHECK(lengths[i] >= 1, "nn_complete_greedy: prompt %d is empty", i);
    if (m->vocab <= 0 || m->classes != m->vocab || m->layers[m->n_layers - 1].out_ndim != 2)
        return nn_error("'%s' is not a language model (it must score every token of the vocabulary at every "
                        "position)",
                        m->spec);
    NN_CHECK(stop >= 0 && stop < m->vocab, "nn_complete_greedy: stop token %d not in [0, %d)", stop, m->vocab);
    nn_ctx *ctx = nn_ctx_new(0);
    nn_set_grad_enabled(ctx, false);
    nn_set_training(ctx, false);
    int rc = 0;
    for (int first = 0; first < n && rc == 0; first += batch)
        rc = complete_chunk(m, ctx, ids, offsets, lengths, first, n - first < batch ? n - first : batch, max_new, stop,
                            out, out_lens);
    nn_ctx_free(ctx);
    return rc;
}

int nn_greedy_completer(void *model, const int *ids, const size_t *offsets, const int *lengths, int n, int max_new,
                        int stop, int *out, int *out_lens) {
    return nn_complete_greedy(model, ids, offsets, lengths, n, max_new, stop, GREEDY_BATCH, out, out_lens);
}

int nn_line_answer(const nn_text_split *lines, int i, int sep, size_t *start, int *len) {
    NN_CHECK(lines->lengths && i >= 0 && i < lines->n_seqs, "nn_line_answer: line %d of %d (or not lines)", i,
             lines->n_seqs);
    const int *seq = lines->ids + lines->offsets[i];
    for (int t = 1; t < lines->lengths[i] - 1; t++) {
        if (seq[t] != sep) continue;
        *start = lines->offsets[i] + (size_t)t + 1;
        *len = lines->lengths[i] - 1 - (t + 1);
        return 0;
    }
    return nn_error("line %d of the split has no separator (each line is a prompt, the separator, the answer)", i + 1);
}

int nn_answer_needs(const nn_text_split *lines, int sep, int **needs) {
    *needs = NULL;
    if (!lines->lengths || lines->labels)
        return nn_error("an answer-only loss needs lines of text (each a prompt, the separator and the answer)");
    int *n = nn_xcalloc(lines->n_ids ? lines->n_ids : 1, sizeof *n);
    for (int i = 0; i < lines->n_seqs; i++) {
        size_t start;
        int len;
        if (nn_line_answer(lines, i, sep, &start, &len) != 0) {
            free(n);
            return -1;
        }
        for (size_t k = start; k <= start + (size_t)len; k++) /* the answer and the closing boundary */
            n[k] = (int)(k - lines->offsets[i]);
    }
    *needs = n;
    return 0;
}

int nn_exact_match_eval(const nn_text_split *split, int sep, nn_completer complete, void *user, int max_mistakes,
                        nn_exact_match *r) {
    memset(r, 0, sizeof *r);
    NN_CHECK(max_mistakes >= 0, "nn_exact_match_eval: %d mistakes to keep", max_mistakes);
    if (!split->lengths || split->labels || split->n_seqs < 1)
        return nn_error("exact match needs lines of text (each a prompt, the separator and the answer)");
    int n = split->n_seqs, max_answer = 0, rc = 0;
    size_t *answer = nn_xmalloc((size_t)n * sizeof *answer);
    int *answer_len = nn_xmalloc((size_t)n * sizeof *answer_len), *prompt_len = nn_xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n && rc == 0; i++) {
        rc = nn_line_answer(split, i, sep, &answer[i], &answer_len[i]);
        if (rc) break;
        prompt_len[i] = (int)(answer[i] - split->offsets[i]);
        if (answer_len[i] > max_answer) max_answer = answer_len[i];
    }
    int max_new = max_answer + 1, *out = NULL, *out_lens = NULL;
    if (rc == 0) {
        out = nn_xmalloc((size_t)n * (size_t)max_new * sizeof *out);
        out_lens = nn_xmalloc((size_t)n * sizeof *out_lens);
        rc = complete(user, split->ids, split->offsets, prompt_len, n, max_new, NN_TEXT_BOUNDARY, out, out_lens);
    }
    if (rc == 0) {
        r->total = n;
        r->mistakes = nn_xmalloc((size_t)(max_mistakes ? max_mistakes : 1) * sizeof *r->mistakes);
        for (int i = 0; i < n; i++) {
            const int *got = out + (size_t)i * max_new;
            if (out_lens[i] == answer_len[i] &&
                memcmp(got, split->ids + answer[i], (size_t)answer_len[i] * sizeof *got) == 0) {
                r->correct++;
            } else if (r->n_mistakes < max_mistakes) {
                nn_completion_mistake *e = &r->mistakes[r->n_mistakes++];
                e->index = i;
                e->n = out_lens[i];
                e->ids = nn_xmalloc((size_t)(e->n ? e->n : 1) * sizeof *e->ids);
                memcpy(e->ids, got, (size_t)e->n * sizeof *e->ids);
            }
        }
    }
    free(answer);
    free(answer_len);
    free(prompt_len);
    free(out);
    free(out_lens);
    return rc;
}

void nn_exact_match_free(nn_exact_match *r) {
    for (int i = 0; i < r->n_mistakes; i++) free(r->mistakes[i].ids);
    free(r->mistakes);
    memset(r, 0, sizeof *r);
}
