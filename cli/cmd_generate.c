/* nn generate: text from a language model, streamed as it is made. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "flags.h"
#include "nn/model.h"
#include "nn/safetensors.h"
#include "nn/text.h"
#include "plot/plot.h"

static const char *const usage_text =
    "usage: nn generate --model FILE.safetensors [OPTIONS]\n"
    "\n"
    "Writes text with a language model trained by nn train on text: the prompt,\n"
    "then one character at a time, each drawn from the model's probabilities\n"
    "and fed back in (the recurrent state is carried, the prefix never\n"
    "recomputed). The same seed gives the same text. For a model of lines\n"
    "(names), --count N writes N of them, each ended by the boundary token.\n"
    "\n"
    "With --attention FILE.png it first draws what each head of each attention\n"
    "layer (a GPT's) attends to over the prompt: a heat map per layer and head,\n"
    "a row per character of the prompt and its weights over the characters up\n"
    "to it; then it generates as usual.\n"
    "\n";

typedef struct generate_opts {
    const char *model_path, *prompt, *attention_path;
    int length, top_k, count;
    float temperature;
    uint64_t seed;
} generate_opts;

typedef struct writer {
    const nn_vocab *vocab;
    bool lines; /* the boundary token ends a line: stop there */
} writer;

static int write_token(void *user, int id) {
    const writer *w = user;
    char buf[8];
    nn_vocab_token(w->vocab, id, buf, sizeof buf);
    fputs(buf, stdout);
    fflush(stdout);
    return w->lines && id == NN_TEXT_BOUNDARY;
}

/* The prompt's ids; for lines, the boundary that starts every sequence first. */
static int *encode_prompt(const nn_vocab *v, const char *prompt, bool lines, int *n) {
    size_t len;
    int *text = nn_vocab_encode(v, prompt, strlen(prompt), &len);
    if (!text) return NULL;
    int *ids = malloc((len + 1) * sizeof *ids);
    size_t k = 0;
    if (lines || len == 0) ids[k++] = lines ? NN_TEXT_BOUNDARY : 0;
    memcpy(ids + k, text, len * sizeof *ids);
    free(text);
    *n = (int)(k + len);
    return ids;
}

/* The attention weights over the prompt's ids (its last `context` or
 * NN_ATTENTION_MAX_DRAWN, whichever is fewer, when it is longer: those are
 * what generation reads) drawn into o->attention_path. */
static int draw_attention(const generate_opts *o, nn_model *m, const nn_vocab *v, const int *ids, int n) {
    int keep = m->in_shape[0] && m->in_shape[0] < NN_ATTENTION_MAX_DRAWN ? m->in_shape[0] : NN_ATTENTION_MAX_DRAWN;
    if (n > keep) {
        fprintf(stderr, "nn generate: --attention draws the prompt's last %d of %d characters (%s)\n", keep, n,
                keep == m->in_shape[0] ? "the model's context" : "the most a picture shows");
        ids += n - keep;
        n = keep;
    }
    nn_attention_map *maps;
    int n_maps = nn_model_attention_maps(m, ids, n, &maps);
    if (n_maps < 0) return runtime_error();
    if (n_maps == 0)
        return usage_error("generate", "--attention needs a model with attention layers; %s has none ('%s')",
                           o->model_path, nn_model_spec(m));
    char (*text)[8] = malloc((size_t)n * sizeof *text);
    const char **tokens = malloc((size_t)n * sizeof *tokens);
    for (int t = 0; t < n; t++) {
        nn_vocab_token(v, ids[t], text[t], sizeof text[t]);
        tokens[t] = text[t];
    }
    int rc = nn_plot_attention(o->attention_path, maps, n_maps, tokens, o->model_path);
    if (rc == 0)
        fprintf(stderr, "nn generate: attention weights of %d layer%s over %d characters drawn in %s\n", n_maps,
                n_maps == 1 ? "" : "s", n, o->attention_path);
    free(tokens);
    free(text);
    nn_attention_maps_free(maps, n_maps);
    return rc == 0 ? 0 : runtime_error();
}

static int generate(const generate_opts *o, nn_model *m, const nn_vocab *v) {
    bool lines = v->special == NN_VOCAB_BOUNDARY;
    const char *prompt = o->prompt ? o->prompt : lines ? "" : "\n";
    int n;
    int *ids = encode_prompt(v, prompt, lines, &n);
    if (!ids) {
        char why[512];
        snprintf(why, sizeof why, "%s", nn_last_error());
        nn_error("--prompt: %s", why);
        return runtime_error();
    }
    if (o->attention_path) {
        int rc = draw_attention(o, m, v, ids, n);
        if (rc != 0) {
            free(ids);
            return rc;
        }
    }
    nn_rng rng;
    nn_rng_seed(&rng, o->seed, 0);
    writer w = {.vocab = v, .lines = lines};
    for (int i = 0; i < (lines ? o->count : 1); i++) {
        fputs(prompt, stdout);
        int made = nn_generate(m, ids, n, o->length, o->temperature, o->top_k, &rng, write_token, &w);
        if (!lines || made == o->length) putchar('\n'); /* a line cut short by --length */
    }
    fflush(stdout);
    free(ids);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    generate_opts o = {.length = 500, .count = 10, .temperature = 1.0f, .seed = 1};
    flag table[] = {
        {"model", FLAG_STRING, &o.model_path, .metavar = "FILE", .def = "required", .help = "the language model"},
        {"prompt", FLAG_STRING, &o.prompt, .metavar = "TEXT", .def = "a line break; for names none",
         .help = "the text to continue"},
        {"length", FLAG_INT, &o.length, 0, 100000000, .metavar = "N", .help = "characters to write (per name: at most)"},
        {"temperature", FLAG_FLOAT, &o.temperature, 0, 100, .metavar = "T",
         .help = "divides the scores before the softmax; 0 = always the most\nprobable character"},
        {"top-k", FLAG_INT, &o.top_k, 0, 1000000, .metavar = "K", .help = "draw from the K most probable only, 0 = all"},
        {"seed", FLAG_U64, &o.seed, 0, 2147483647, .metavar = "S", .help = "seeds the draws"},
        {"count", FLAG_INT, &o.count, 1, 1000000, .metavar = "N", .help = "names to write (a model of lines)"},
        {"attention", FLAG_CUSTOM, &o.attention_path, .parse = flag_picture, .metavar = "FILE", .def = "",
         .help = "draw each head's attention weights over the prompt,\n"
                 "its characters along both axes (.png or .svg); needs\n"
                 "--prompt and a model with attention layers"},
        FLAG_END,
    };
    int status = flags_parse("generate", table, argc, argv, usage_text, NULL, NULL);
    if (status >= 0) return status;
    if (!o.model_path) return usage_error("generate", "--model FILE is required");
    if (o.attention_path && !o.prompt)
        return usage_error("generate", "--attention needs --prompt TEXT: the weights are drawn over the prompt");
    nn_safetensors st;
    if (nn_st_load(&st, o.model_path) != 0) return runtime_error();
    nn_model m = {0};
    nn_vocab v = {0};
    const char *vocab = nn_st_meta(&st, "nn.vocab");
    if (nn_model_load_st(&m, &st, o.model_path) != 0) {
        status = runtime_error();
    } else if (!vocab || m.vocab == 0 || m.classes != m.vocab) {
        nn_error("%s: not a language model (nn train on text writes one: it holds nn.vocab and scores every token)",
                 o.model_path);
        status = runtime_error();
    } else if (nn_vocab_parse(&v, vocab, o.model_path) != 0) {
        status = runtime_error();
    } else if (v.size != m.vocab) {
        nn_error("%s: the vocabulary has %d tokens but the model takes %d", o.model_path, v.size, m.vocab);
        status = runtime_error();
    } else {
        status = generate(&o, &m, &v);
    }
    nn_vocab_free(&v);
    nn_model_free(&m);
    nn_st_free(&st);
    return status;
}
