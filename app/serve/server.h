/* nn serve's HTTP server (libmicrohttpd). For an image classifier, a drawing
 * page and digit classification:
 *
 *   GET /           the page (app/serve/page.html, embedded at build time)
 *   POST /predict   a PNG or PGM body -> {"digit": 7, "probabilities": [10],
 *                   "input": [784 values in 0..1, the 28x28 image the model sees]}
 *
 * For a language model (cfg.vocab set), a page to write with it and text
 * generation:
 *
 *   GET /           the page (app/serve/text_page.html)
 *   POST /generate  a JSON body {"prompt": "ROMEO:", "length": 200,
 *                   "temperature": 0.8, "top_k": 0, "seed": 1} (all optional;
 *                   the defaults are nn generate's) -> {"text": "the
 *                   continuation", "prompt": ..., "characters": N, ...};
 *                   with "stream": true the continuation instead, as plain
 *                   UTF-8 text sent in chunks as the characters are made
 *
 * and for both, GET /model: {"kind": ..., "spec": ..., ...}.
 *
 * Anything else gets a 4xx with {"error": "..."}: 400 for a body that is not
 * a readable image (empty, truncated, more than max_pixels) or not a valid
 * generation request (bad JSON, a field out of range, a prompt character the
 * vocabulary lacks, named), 404 for an unknown path, 405 for a wrong method,
 * 411 for a body without a length, 413 for one longer than max_body
 * (max_text_body for /generate; refused from its Content-Length, before any
 * of it is read); 503 when max_generations are running already. A pool of
 * threads serves the connections, each request classified on one core with a
 * context of its own; a generation runs on one core too (a streamed one on a
 * thread of its own, its connection suspended while it waits for the next
 * character); one line per request goes to the log: method, path, status,
 * bytes sent, milliseconds. */
#ifndef NN_APP_SERVE_SERVER_H
#define NN_APP_SERVE_SERVER_H

#include <stddef.h>
#include <stdio.h>

#include "nn/model.h"
#include "nn/text.h"

typedef struct serve_config {
    const char *host;  /* numeric IPv4/IPv6 address or a name that resolves to one */
    int port;          /* 0: the kernel picks a free one (see server_port) */
    int threads;       /* connection threads */
    unsigned timeout_s; /* an idle or stalled connection is closed after this */
    size_t max_body;   /* bytes */
    size_t max_pixels; /* decoded image size bound */
    FILE *log;         /* request lines; NULL: none */
    /* A language model's vocabulary (borrowed): serve text; NULL: images. */
    const nn_vocab *vocab;
    size_t max_text_body; /* /generate's body, bytes */
    int max_length;       /* characters one generation may ask for */
    int max_prompt;       /* characters of a prompt */
    int max_generations;  /* at once; 0: threads */
} serve_config;

#define SERVE_DEFAULT_MAX_BODY ((size_t)8 << 20)     /* 8 MiB */
#define SERVE_DEFAULT_MAX_PIXELS ((size_t)2048 * 2048) /* 32 MiB of decode buffers a request */
#define SERVE_DEFAULT_TIMEOUT_S 10u
#define SERVE_DEFAULT_MAX_TEXT_BODY ((size_t)64 << 10) /* 64 KiB */
#define SERVE_DEFAULT_MAX_LENGTH 2000
#define SERVE_DEFAULT_MAX_PROMPT 4000 /* a prompt runs through the model at once: bounds its activations */

typedef struct server server;

/* Starts serving `model` (borrowed: it must outlive the server): an image
 * classifier must take 1x28x28 inputs; with cfg->vocab, a language model
 * scoring each of its tokens (anything else is refused). Returns NULL with the error
 * set (bad host, port in use, ...). Block SIGPIPE, SIGINT and SIGTERM
 * before: the server's threads inherit the caller's signal mask. */
server *server_start(nn_model *model, const serve_config *cfg);
/* The port it listens on (the kernel's choice when cfg->port was 0). */
int server_port(const server *s);
/* Stops accepting, finishes or drops the open connections, joins the
 * threads and frees everything but the model. */
void server_stop(server *s);

#endif
