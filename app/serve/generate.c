/* nn serve for a language model: POST /generate, and GET /model for both
 * kinds of model.
 *
 * A request's JSON is checked whole before a character is made, so each
 * mistake gets a 400 that names it. The prompt is encoded as nn generate
 * encodes it and the same nn_generate draws from the same seed, so the
 * server writes what nn generate writes.
 *
 * Without "stream" the generation runs on the connection's thread and the
 * answer is one JSON document. With it, nn_generate runs on a thread of its
 * own and appends each character to a buffer; MHD's content reader hands
 * each new stretch of the buffer to the client as a chunk of a chunked
 * response. When nothing new has been made yet, the reader suspends the
 * connection and the generating thread resumes it after the next character,
 * so a stream holds no connection thread while it waits and the server
 * answers other requests meanwhile. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/internal.h"
#include "nn/error.h"
#include "nn/report.h"
#include "core/util.h"

/* One generation: what the request asked for, and what has been made. */
typedef struct generation {
    int *ids; /* the prompt's ids */
    int n_ids;
    int length, top_k;
    double temperature; /* as sent, to echo back; the model gets it as a float */
    uint64_t seed;
    bool stream;
    bool lines; /* a model of lines: the boundary token ends the text and is not part of it */
    const nn_vocab *vocab;
    atomic_bool *stopping; /* the server's */
    char *text;            /* the continuation so far; 4 bytes a character at most */
    size_t len;
    int characters;
} generation;

static void generation_free(generation *g) {
    free(g->ids);
    free(g->text);
}

/* Appends the token; non-zero ends the generation. */
static int generation_add(generation *g, int id) {
    if (g->lines && id == NN_TEXT_BOUNDARY) return 1; /* the end of the line */
    g->len += (size_t)nn_vocab_token(g->vocab, id, g->text + g->len, 5);
    g->characters++;
    return atomic_load(g->stopping);
}

static int add_token(void *user, int id) { return generation_add(user, id); }

/* nn_generate from the request's seed (a generator seeded as nn generate
 * seeds its own), on this thread's one core. */
static void generation_run(nn_model *m, generation *g, int (*on_token)(void *, int), void *user) {
    omp_set_num_threads(1);
    nn_rng rng;
    nn_rng_seed(&rng, g->seed, 0);
    nn_generate(m, g->ids, g->n_ids, g->length, (float)g->temperature, g->top_k, &rng, on_token, user);
}

/* ---- the request --------------------------------------------------------- */

static const char *const known_fields[] = {"prompt", "length", "temperature", "top_k", "seed", "stream"};
#define N_FIELDS (int)(sizeof known_fields / sizeof *known_fields)
#define FIELD_LIST "prompt, length, temperature, top_k, seed, stream"
#define EXAMPLE "{\"prompt\": \"ROMEO:\", \"length\": 200, \"temperature\": 0.8}"

/* A number field within [lo, hi] (whole when `whole`) into *out; absent
 * leaves *out. Returns false with why written. */
static bool number_field(const cJSON *json, const char *name, bool whole, double lo, double hi, double *out,
                         char *why, size_t cap) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(json, name);
    if (!f) return true;
    double v = cJSON_IsNumber(f) ? f->valuedouble : NAN;
    if (!(v >= lo && v <= hi) || (whole && v != floor(v))) {
        snprintf(why, cap, "\"%s\" must be %s from %.10g to %.10g", name, whole ? "a whole number" : "a number", lo, hi);
        return false;
    }
    *out = v;
    return true;
}

/* Reads the request body into g (the prompt's text into *prompt, owned by
 * *json). Returns false with why written. */
static bool parse_request(server *s, const request *r, cJSON **json, const char **prompt, generation *g, char *why,
                          size_t cap) {
    if (r->len == 0) {
        snprintf(why, cap, "empty body: POST a JSON object such as %s", EXAMPLE);
        return false;
    }
    const char *end = NULL;
    *json = cJSON_ParseWithLengthOpts((const char *)r->body, r->len, &end, false);
    size_t at = end ? (size_t)(end - (const char *)r->body) : 0;
    while (*json && at < r->len && strchr(" \t\r\n", r->body[at])) at++;
    if (!*json || at < r->len) {
        snprintf(why, cap, "the body is not JSON (at byte %zu): POST an object such as %s", at, EXAMPLE);
        return false;
    }
    if (!cJSON_IsObject(*json)) {
        snprintf(why, cap, "the body must be a JSON object such as %s", EXAMPLE);
        return false;
    }
    for (const cJSON *f = (*json)->child; f; f = f->next) {
        bool known = false;
        for (int k = 0; k < N_FIELDS && !known; k++) known = strcmp(f->string, known_fields[k]) == 0;
        if (!known) {
            snprintf(why, cap, "unknown field \"%.40s\" (the fields are " FIELD_LIST ")", f->string);
            return false;
        }
    }
    /* nn generate's defaults */
    double length = 500, temperature = 1, top_k = 0, seed = 1;
    if (length > s->cfg.max_length) length = s->cfg.max_length;
    if (!number_field(*json, "length", true, 0, s->cfg.max_length, &length, why, cap) ||
        !number_field(*json, "temperature", false, 0, 100, &temperature, why, cap) ||
        !number_field(*json, "top_k", true, 0, 1000000, &top_k, why, cap) ||
        !number_field(*json, "seed", true, 0, 2147483647, &seed, why, cap))
        return false;
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(*json, "stream");
    if (stream && !cJSON_IsBool(stream)) {
        snprintf(why, cap, "\"stream\" must be true or false");
        return false;
    }
    g->lines = s->cfg.vocab->special == NN_VOCAB_BOUNDARY;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(*json, "prompt");
    if (text && !cJSON_IsString(text)) {
        snprintf(why, cap, "\"prompt\" must be a string");
        return false;
    }
    *prompt = text ? text->valuestring : g->lines ? "" : "\n";

    /* The prompt's ids as nn generate makes them: for lines, the boundary
     * that starts every line first; an empty prompt starts from id 0. */
    size_t n;
    int *chars = nn_vocab_encode(s->cfg.vocab, *prompt, strlen(*prompt), &n);
    if (!chars) {
        snprintf(why, cap, "prompt: %s", nn_last_error());
        return false;
    }
    if (n > (size_t)s->cfg.max_prompt) {
        snprintf(why, cap, "the prompt is %zu characters, more than the limit of %d", n, s->cfg.max_prompt);
        free(chars);
        return false;
    }
    size_t k = g->lines || n == 0;
    g->ids = nn_xmalloc((n + 1) * sizeof *g->ids);
    if (k) g->ids[0] = g->lines ? NN_TEXT_BOUNDARY : 0;
    memcpy(g->ids + k, chars, n * sizeof *chars);
    free(chars);
    g->n_ids = (int)(n + k);
    /* A model with learned positions takes no more than its context at once. */
    int context = s->model->in_shape[0];
    if (context > 0 && g->n_ids > context) {
        snprintf(why, cap, "the prompt is %d tokens, more than the model's context of %d", g->n_ids, context);
        return false;
    }
    g->length = (int)length;
    g->temperature = temperature;
    g->top_k = (int)top_k;
    g->seed = (uint64_t)seed;
    g->stream = cJSON_IsTrue(stream);
    g->vocab = s->cfg.vocab;
    g->stopping = &s->stopping;
    g->text = nn_xmalloc((size_t)g->length * 4 + 5);
    g->text[0] = 0;
    return true;
}

/* ---- a streamed generation ----------------------------------------------- */

typedef struct stream {
    server *s;
    struct MHD_Connection *conn;
    request *req; /* valid while MHD reads: it calls the reader only before the request completes */
    generation g;
    pthread_t thread;
    pthread_mutex_t lock; /* g.len and g.text's growth, done, cancel, suspended */
    bool done, cancel;
    bool suspended; /* the reader found nothing new and suspended the connection */
} stream;

/* A generation is over: one fewer running (server_stop waits for none). */
static void generation_ended(server *s) {
    pthread_mutex_lock(&s->lock);
    s->generating--;
    pthread_cond_broadcast(&s->generation_ended);
    pthread_mutex_unlock(&s->lock);
}

/* After a new character or the end: wake the connection if it waits. It is
 * resumed outside the lock, and only by this thread, so that MHD's locks are
 * never taken under ours; a suspended connection is never closed (its
 * client's leaving shows only once it is resumed), so it is still there. */
static void stream_wake(stream *st, bool done) {
    pthread_mutex_lock(&st->lock);
    if (done) st->done = true;
    bool wake = st->suspended;
    st->suspended = false;
    pthread_mutex_unlock(&st->lock);
    if (wake) MHD_resume_connection(st->conn);
}

static int stream_token(void *user, int id) {
    stream *st = user;
    pthread_mutex_lock(&st->lock);
    int stop = generation_add(&st->g, id) || st->cancel;
    pthread_mutex_unlock(&st->lock);
    stream_wake(st, false);
    return stop;
}

static void *stream_main(void *user) {
    stream *st = user;
    server *s = st->s;
    generation_run(s->model, &st->g, stream_token, st);
    stream_wake(st, true);
    generation_ended(s); /* st may be freed from here on */
    return NULL;
}

/* MHD's content reader: the bytes made since pos; when there are none yet,
 * the connection is suspended until the generating thread resumes it
 * (returning 0 without that, MHD would call again at once: a busy loop). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    pthread_mutex_lock(&st->lock);
    size_t n = pos < st->g.len ? st->g.len - (size_t)pos : 0;
    if (n > max) n = max;
    memcpy(buf, st->g.text + pos, n);
    bool end = n == 0 && st->done;
    if (n == 0 && !end) {
        st->suspended = true;
        MHD_suspend_connection(st->conn); /* under the lock: before the thread can see suspended */
    }
    pthread_mutex_unlock(&st->lock);
    if (end) return MHD_CONTENT_READER_END_OF_STREAM;
    st->req->sent += n;
    return (ssize_t)n;
}

/* When MHD is done with the response (sent, or the client gone): stop the
 * generation at its next character and free it. */
static void stream_free(void *cls) {
    stream *st = cls;
    pthread_mutex_lock(&st->lock);
    st->cancel = true;
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->thread, NULL);
    generation_free(&st->g);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* Starts the generating thread and queues the response it feeds; g is the
 * stream's from then on (zeroed here), else left to the caller. */
static enum MHD_Result start_stream(server *s, struct MHD_Connection *c, request *r, generation *g) {
    stream *st = nn_xcalloc(1, sizeof *st);
    st->s = s;
    st->conn = c;
    st->req = r;
    st->g = *g;
    pthread_mutex_init(&st->lock, NULL);
    if (pthread_create(&st->thread, NULL, stream_main, st) != 0) {
        pthread_mutex_destroy(&st->lock);
        free(st);
        return serve_send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "cannot start a thread to generate on");
    }
    memset(g, 0, sizeof *g);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    /* No Cache-Control: a POST's answer is not cached anyway, and Chromium
     * reports a no-store body read in pieces as aborted once it has ended
     * (microsoft/playwright#42742). */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    return serve_send(c, r, MHD_HTTP_OK, resp, 0); /* r->sent grows as the reader hands out bytes */
}

/* ---- POST /generate ------------------------------------------------------ */

enum MHD_Result serve_generate(server *s, struct MHD_Connection *c, request *r) {
    cJSON *json = NULL;
    const char *prompt = NULL;
    generation g = {0};
    char why[sizeof r->why];
    if (!parse_request(s, r, &json, &prompt, &g, why, sizeof why)) {
        generation_free(&g);
        cJSON_Delete(json);
        return serve_send_error(c, r, MHD_HTTP_BAD_REQUEST, NULL, "%s", why);
    }
    /* Each generation holds a core: beyond the limit, say so at once
     * rather than queue behind the others. */
    pthread_mutex_lock(&s->lock);
    bool stopping = atomic_load(&s->stopping), admitted = !stopping && s->generating < s->cfg.max_generations;
    if (admitted) s->generating++;
    pthread_mutex_unlock(&s->lock);
    if (!admitted) {
        generation_free(&g);
        cJSON_Delete(json);
        if (stopping) return serve_send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "the server is stopping");
        return serve_send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL,
                                "busy: %d generations are running, the most at once; try again", s->cfg.max_generations);
    }
    if (g.stream) {
        cJSON_Delete(json);
        enum MHD_Result ok = start_stream(s, c, r, &g);
        if (g.text) { /* it never started */
            generation_free(&g);
            generation_ended(s);
        }
        return ok;
    }

    double t0 = nn_seconds();
    generation_run(s->model, &g, add_token, &g);
    double seconds = nn_seconds() - t0;
    generation_ended(s);
    if (atomic_load(&s->stopping)) { /* cut short: not the text asked for */
        generation_free(&g);
        cJSON_Delete(json);
        return serve_send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "the server is stopping");
    }
    cJSON *reply = cJSON_CreateObject();
    cJSON_AddStringToObject(reply, "text", g.text);
    cJSON_AddStringToObject(reply, "prompt", prompt);
    cJSON_AddNumberToObject(reply, "characters", g.characters);
    cJSON_AddNumberToObject(reply, "temperature", g.temperature);
    cJSON_AddNumberToObject(reply, "top_k", g.top_k);
    cJSON_AddNumberToObject(reply, "seed", (double)g.seed);
    cJSON_AddNumberToObject(reply, "seconds", round(seconds * 1e4) / 1e4);
    generation_free(&g);
    cJSON_Delete(json);
    return serve_send_json(c, r, MHD_HTTP_OK, reply);
}

/* ---- GET /model ---------------------------------------------------------- */

/* Every character of the vocabulary, the special token left out. */
static char *vocab_characters(const nn_vocab *v) {
    char *text = nn_xmalloc((size_t)v->size * 4 + 5);
    size_t len = 0;
    for (int id = v->special == NN_VOCAB_NONE ? 0 : 1; id < v->size; id++)
        len += (size_t)nn_vocab_token(v, id, text + len, 5);
    text[len] = 0;
    return text;
}

enum MHD_Result serve_model_info(server *s, struct MHD_Connection *c, request *r) {
    const nn_model *m = s->model;
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "spec", m->spec);
    cJSON_AddNumberToObject(json, "parameters", (double)nn_model_param_count(m));
    if (s->cfg.vocab) {
        const nn_vocab *v = s->cfg.vocab;
        bool lines = v->special == NN_VOCAB_BOUNDARY;
        cJSON_AddStringToObject(json, "kind", "language model");
        cJSON_AddNumberToObject(json, "vocabulary", v->size);
        char *chars = vocab_characters(v);
        cJSON_AddStringToObject(json, "characters", chars);
        free(chars);
        cJSON_AddBoolToObject(json, "lines", lines); /* each text one line, ended by the model */
        if (m->in_shape[0] > 0) cJSON_AddNumberToObject(json, "context", m->in_shape[0]);
        else cJSON_AddNullToObject(json, "context");
        cJSON_AddStringToObject(json, "default_prompt", lines ? "" : "\n");
        cJSON_AddNumberToObject(json, "max_length", s->cfg.max_length);
        cJSON_AddNumberToObject(json, "max_prompt", s->cfg.max_prompt);
    } else {
        cJSON_AddStringToObject(json, "kind", "image classifier");
        cJSON_AddNumberToObject(json, "classes", m->classes);
    }
    return serve_send_json(c, r, MHD_HTTP_OK, json);
}
