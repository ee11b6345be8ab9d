/* nn serve's HTTP server (libmicrohttpd): a drawing page at GET / and digit
 * classification at POST /predict.
 *
 *   GET /           the page (app/serve/page.html, embedded at build time)
 *   POST /predict   a PNG or PGM body -> {"digit": 7, "probabilities": [10],
 *                   "input": [784 values in 0..1, the 28x28 image the model sees]}
 *
 * Anything else gets a 4xx with {"error": "..."}: 400 for a body that is not
 * a readable image (empty, truncated, more than max_pixels), 404 for an
 * unknown path, 405 for a wrong method, 411 for a body without a length,
 * 413 for one longer than max_body (refused from its Content-Length, before
 * any of it is read). A pool of threads serves the connections, each request
 * classified on one core with a context of its own; one line per request goes
 * to the log: method, path, status, bytes sent, milliseconds. */
#ifndef NN_APP_SERVE_SERVER_H
#define NN_APP_SERVE_SERVER_H

#include <stddef.h>
#include <stdio.h>

#include "nn/model.h"

typedef struct serve_config {
    const char *host;  /* numeric IPv4/IPv6 address or a name that resolves to one */
    int port;          /* 0: the kernel picks a free one (see server_port) */
    int threads;       /* connection threads */
    unsigned timeout_s; /* an idle or stalled connection is closed after this */
    size_t max_body;   /* bytes */
    size_t max_pixels; /* decoded image size bound */
    FILE *log;         /* request lines; NULL: none */
} serve_config;

#define SERVE_DEFAULT_MAX_BODY ((size_t)8 << 20)     /* 8 MiB */
#define SERVE_DEFAULT_MAX_PIXELS ((size_t)2048 * 2048) /* 32 MiB of decode buffers a request */
#define SERVE_DEFAULT_TIMEOUT_S 10u

typedef struct server server;

/* Starts serving `model` (borrowed: it must outlive the server; a model
 * that does not take 1x28x28 inputs is refused). Returns NULL with the error
 * set (bad host, port in use, ...). Block SIGPIPE, SIGINT and SIGTERM
 * before: the server's threads inherit the caller's signal mask. */
server *server_start(nn_model *model, const serve_config *cfg);
/* The port it listens on (the kernel's choice when cfg->port was 0). */
int server_port(const server *s);
/* Stops accepting, finishes or drops the open connections, joins the
 * threads and frees everything but the model. */
void server_stop(server *s);

#endif
