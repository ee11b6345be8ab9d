/* What server.c shares with the routes in the files beside it: the server,
 * the record each request carries, and the helpers that answer it. */
#ifndef NN_APP_SERVE_INTERNAL_H
#define NN_APP_SERVE_INTERNAL_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "serve/server.h"

#define LOG_PATH_MAX 96

struct server {
    struct MHD_Daemon *daemon;
    nn_model *model;
    serve_config cfg;
    int port;
    struct MHD_Response *page;
    pthread_mutex_t lock;
    /* Contexts not in use: at most one per thread ever gets created. */
    nn_ctx **idle; /* cfg.threads long */
    int n_idle;
    int generating;          /* generations running, under lock: at most cfg.max_generations */
    pthread_cond_t generation_ended; /* signalled when generating goes down */
    atomic_bool stopping;    /* set by server_stop: generations end at their next character */
};

typedef struct request {
    double start;
    char method[16], path[LOG_PATH_MAX];
    bool routed;            /* the first handler call (headers read) is past */
    unsigned status;        /* of the response queued, 0 while none */
    size_t sent;            /* bytes of its body (a stream's, as they go) */
    char why[160];          /* for the log: what was wrong with a 4xx */
    unsigned char *body;
    size_t len, cap, expected;
} request;

/* Queues resp (consumed; NULL: out of memory) with status and records it. */
enum MHD_Result serve_send(struct MHD_Connection *c, request *r, unsigned status, struct MHD_Response *resp,
                           size_t body_len);
/* A JSON document (consumed) with status. */
enum MHD_Result serve_send_json(struct MHD_Connection *c, request *r, unsigned status, cJSON *json);
/* {"error": "..."} with a 4xx or 5xx status; allow names the methods for a 405. */
enum MHD_Result serve_send_error(struct MHD_Connection *c, request *r, unsigned status, const char *allow,
                                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* generate.c: POST /generate (the request's JSON body is in r->body) and
 * GET /model for a language model. */
enum MHD_Result serve_generate(server *s, struct MHD_Connection *c, request *r);
/* GET /model: what the page shows about the model, either kind. */
enum MHD_Result serve_model_info(server *s, struct MHD_Connection *c, request *r);

#endif
