/* nn serve's HTTP server on libmicrohttpd (see server.h for the routes;
 * generate.c answers a language model's).
 *
 * Each request carries a small record from the moment its first line is read
 * (MHD's URI log callback) to the moment it is done (the completion
 * callback), which writes the log line; a POST body is gathered into it up
 * to the declared Content-Length. Classification runs on the connection's
 * own thread with an nn_ctx taken from a free list, so requests only share
 * the model's weights, which nothing writes in evaluation mode. */
#define _POSIX_C_SOURCE 200809L
#include "serve/internal.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nn/error.h"
#include "nn/image.h"
#include "nn/report.h"
#include "core/util.h"

/* The pages, generated from app/serve/page.html and text_page.html
 * (app/serve/module.mk). */
extern const unsigned char serve_page[], serve_text_page[];
extern const size_t serve_page_len, serve_text_page_len;

#define MAX_CLASSES 64
#define MAX_CONNECTIONS 64 /* bounds memory: each may hold a body of up to max_body */

/* ---- contexts ------------------------------------------------------------ */

static nn_ctx *ctx_take(server *s) {
    pthread_mutex_lock(&s->lock);
    nn_ctx *ctx = s->n_idle > 0 ? s->idle[--s->n_idle] : NULL;
    pthread_mutex_unlock(&s->lock);
    return ctx ? ctx : nn_ctx_new(0);
}

static void ctx_give_back(server *s, nn_ctx *ctx) {
    pthread_mutex_lock(&s->lock);
    bool kept = s->n_idle < s->cfg.threads; /* a thread serves one request at a time, so always */
    if (kept) s->idle[s->n_idle++] = ctx;
    pthread_mutex_unlock(&s->lock);
    if (!kept) nn_ctx_free(ctx);
}

/* ---- responses ----------------------------------------------------------- */

enum MHD_Result serve_send(struct MHD_Connection *c, request *r, unsigned status, struct MHD_Response *resp,
                           size_t body_len) {
    if (!resp) return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) {
        r->status = status;
        r->sent = body_len;
    }
    return ok;
}

/* The response for a JSON document (consumed); NULL when out of memory. */
static struct MHD_Response *serve_json_response(cJSON *json, size_t *len) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text) return NULL;
    *len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(*len, text, cJSON_free);
    if (!resp) {
        cJSON_free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return resp;
}

enum MHD_Result serve_send_json(struct MHD_Connection *c, request *r, unsigned status, cJSON *json) {
    size_t len = 0; /* set by serve_json_response, so not read in the same call's arguments */
    struct MHD_Response *resp = serve_json_response(json, &len);
    return serve_send(c, r, status, resp, len);
}

enum MHD_Result serve_send_error(struct MHD_Connection *c, request *r, unsigned status, const char *allow,
                                 const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "error", r->why);
    size_t len = 0;
    struct MHD_Response *resp = serve_json_response(json, &len);
    if (resp && allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    return serve_send(c, r, status, resp, len);
}

/* ---- POST /predict ------------------------------------------------------- */

/* The values as a JSON array with 9 significant digits each, which give
 * back the exact float; cJSON's own numbers are doubles printed with up to
 * 17 digits, and printing 784 of them cost more than the classification. */
static cJSON *float_array(const float *v, int n) {
    enum { MAX_CHARS = 16 }; /* "-1.17549435e-38," */
    char *text = nn_xmalloc((size_t)n * MAX_CHARS + 3);
    size_t pos = 0;
    text[pos++] = '[';
    for (int i = 0; i < n; i++) {
        if (i) text[pos++] = ',';
        if (v[i] == 0) text[pos++] = '0'; /* most of the 28x28 input */
        else if (!isfinite(v[i])) pos += (size_t)snprintf(text + pos, MAX_CHARS, "null");
        else pos += (size_t)snprintf(text + pos, MAX_CHARS, "%.9g", v[i]);
    }
    text[pos++] = ']';
    text[pos] = 0;
    cJSON *array = cJSON_CreateRaw(text);
    free(text);
    return array;
}

/* The same steps as nn predict: decode, MNIST preprocessing, the model. */
static enum MHD_Result predict(server *s, struct MHD_Connection *c, request *r) {
    if (r->len == 0) return serve_send_error(c, r, MHD_HTTP_BAD_REQUEST, NULL, "empty body: POST a PNG or PGM image");
    nn_image img;
    float input[NN_MNIST_PIXELS], probs[MAX_CLASSES];
    if (nn_image_decode(&img, r->body, r->len, s->cfg.max_pixels) != 0)
        return serve_send_error(c, r, MHD_HTTP_BAD_REQUEST, NULL, "%s", nn_last_error());
    int rc = nn_image_to_mnist(&img, input);
    nn_image_free(&img);
    if (rc != 0) return serve_send_error(c, r, MHD_HTTP_BAD_REQUEST, NULL, "%s", nn_last_error());

    /* One core per request: the pool's threads are the parallelism. The
     * setting is this thread's own (OpenMP keeps it per thread). */
    omp_set_num_threads(1);
    nn_ctx *ctx = ctx_take(s);
    int digit = nn_model_predict(s->model, ctx, input, probs);
    ctx_give_back(s, ctx);

    cJSON *json = cJSON_CreateObject();
    cJSON_AddNumberToObject(json, "digit", digit);
    cJSON_AddItemToObject(json, "probabilities", float_array(probs, s->model->classes));
    cJSON_AddItemToObject(json, "input", float_array(input, NN_MNIST_PIXELS));
    return serve_send_json(c, r, MHD_HTTP_OK, json);
}

/* Whole decimal digits only, no sign, no overflow. */
static bool parse_length(const char *text, size_t *out) {
    size_t v = 0;
    if (!text || !*text) return false;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9' || v > (SIZE_MAX - 9) / 10) return false;
        v = v * 10 + (size_t)(*p - '0');
    }
    *out = v;
    return true;
}

/* ---- routing ------------------------------------------------------------- */

/* First call, headers read, body not yet: answer now whatever can be
 * answered without the body, so a refused body is never read. Routes match
 * the path as sent, not MHD's unescaped copy, in which "/%00x" reads "/". */
static enum MHD_Result route(server *s, struct MHD_Connection *c, request *r, const char *method) {
    const char *url = r->path;
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    bool text = s->cfg.vocab != NULL;
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        if (!get) return serve_send_error(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "GET, HEAD", "%s / is not allowed: use GET", method);
        /* The page's one response object is shared by every request. */
        if (MHD_queue_response(c, MHD_HTTP_OK, s->page) != MHD_YES) return MHD_NO;
        r->status = MHD_HTTP_OK;
        r->sent = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0 ? 0 : text ? serve_text_page_len : serve_page_len;
        return MHD_YES;
    }
    if (strcmp(url, "/model") == 0) {
        if (!get) return serve_send_error(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "GET, HEAD", "%s /model is not allowed: use GET", method);
        return serve_model_info(s, c, r);
    }
    /* Each kind of model has its one POST route; the other's says which. */
    const char *action = text ? "/generate" : "/predict", *what = text ? "a JSON request" : "an image";
    if (strcmp(url, text ? "/predict" : "/generate") == 0)
        return serve_send_error(c, r, MHD_HTTP_NOT_FOUND, NULL, "no such path: %s (the model is %s: POST %s to %s)",
                                r->path, text ? "a language model" : "an image classifier", what, action);
    if (strcmp(url, action) != 0) return serve_send_error(c, r, MHD_HTTP_NOT_FOUND, NULL, "no such path: %s", r->path);
    if (!post)
        return serve_send_error(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "POST", "%s %s is not allowed: POST %s", method,
                                action, what);
    const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!length) {
        if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
            return serve_send_error(c, r, MHD_HTTP_LENGTH_REQUIRED, NULL, "send %s with a Content-Length", what);
        return MHD_YES; /* no body: answered as empty at the final call */
    }
    size_t limit = text ? s->cfg.max_text_body : s->cfg.max_body;
    if (!parse_length(length, &r->expected))
        return serve_send_error(c, r, MHD_HTTP_BAD_REQUEST, NULL, "bad Content-Length");
    if (r->expected > limit)
        return serve_send_error(c, r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "body too large (%zu bytes, limit %zu)",
                                r->expected, limit);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **req_cls) {
    server *s = cls;
    request *r = *req_cls;
    if (!r) return MHD_NO; /* the URI callback ran out of memory */
    if (!r->routed) {
        r->routed = true;
        snprintf(r->method, sizeof r->method, "%s", method);
        return route(s, c, r, method);
    }
    if (r->status) { /* answered already: MHD closes the connection after it */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        /* MHD hands over no more than Content-Length, which route() bounded;
         * the buffer grows with what arrives, not with what is announced. */
        size_t n = *upload_size;
        if (n > r->expected - r->len) return MHD_NO; /* more than announced: drop the connection */
        if (r->len + n > r->cap) {
            size_t cap = r->cap ? r->cap : 16384;
            while (cap < r->len + n) cap *= 2;
            if (cap > r->expected) cap = r->expected;
            r->body = nn_xrealloc(r->body, cap);
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        *upload_size = 0;
        return MHD_YES;
    }
    return s->cfg.vocab ? serve_generate(s, c, r) : predict(s, c, r);
}

/* ---- request records and the log ----------------------------------------- */

/* Called on the request line, before the headers: the record starts here so
 * that every request gets a log line, even one that never reaches on_request. */
static void *on_request_start(void *cls, const char *uri, struct MHD_Connection *c) {
    request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->start = nn_seconds();
    /* The path as the client sent it (no query), made safe for a log line. */
    size_t i = 0;
    for (const char *p = uri; *p && *p != '?' && i + 1 < sizeof r->path; p++)
        r->path[i++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
    r->path[i] = 0;
    strcpy(r->method, "-");
    return r;
}

static const char *termination_text(enum MHD_RequestTerminationCode how) {
    switch (how) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: return NULL;
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: return "timed out";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: return "server stopping";
    case MHD_REQUEST_TERMINATED_READ_ERROR:
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: return "client went away";
    default: return "connection error";
    }
}

static void on_request_done(void *cls, struct MHD_Connection *c, void **req_cls,
                            enum MHD_RequestTerminationCode how) {
    server *s = cls;
    request *r = *req_cls;
    if (!r) return;
    const char *end = termination_text(how);
    if (s->cfg.log) {
        char status[12] = "-";
        if (r->status) snprintf(status, sizeof status, "%u", r->status);
        const char *why = r->why[0] ? r->why : end;
        fprintf(s->cfg.log, "nn serve: %s %s %s %zu bytes %.1f ms%s%s%s\n", r->method, r->path, status, r->sent,
                1e3 * (nn_seconds() - r->start), why ? " (" : "", why ? why : "", why ? ")" : "");
    }
    free(r->body);
    free(r);
    *req_cls = NULL;
}

static void on_mhd_message(void *cls, const char *fmt, va_list ap) {
    server *s = cls;
    if (!s->cfg.log) return;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\r\n")] = 0;
    fprintf(s->cfg.log, "nn serve: libmicrohttpd: %s\n", msg);
}

/* ---- start and stop ------------------------------------------------------ */

/* A listening socket of our own, so that a failure says why (address in
 * use, no such host) and port 0 can be asked of the kernel. */
static int listen_on(const char *host, int port, int *bound_port, bool *ipv6) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int e = getaddrinfo(host, service, &hints, &ai);
    if (e != 0) return nn_error("cannot resolve host %s: %s", host, gai_strerror(e));
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        nn_error("cannot listen on %s port %d: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    *ipv6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    *bound_port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                   : ((struct sockaddr_in *)&addr)->sin_port);
    return fd;
}

server *server_start(nn_model *model, const serve_config *cfg) {
    bool text = cfg->vocab != NULL;
    if (text && (model->vocab == 0 || model->classes != model->vocab || cfg->vocab->size != model->vocab)) {
        nn_error("serve: the model '%s' is not a language model of this %d-token vocabulary", model->spec,
                 cfg->vocab->size);
        return NULL;
    }
    if (!text && (model->in_ndim != 3 || model->in_shape[0] != 1 || model->in_shape[1] != NN_MNIST_SIDE ||
                  model->in_shape[2] != NN_MNIST_SIDE || model->classes > MAX_CLASSES)) {
        nn_error("the model takes [%d, %d, %d] inputs into %d classes; serve needs 1x28x28 images and at most %d classes",
                 model->in_shape[0], model->in_shape[1], model->in_shape[2], model->classes, MAX_CLASSES);
        return NULL;
    }
    if (cfg->threads < 1) {
        nn_error("serve needs at least one thread");
        return NULL;
    }
    server *s = nn_xcalloc(1, sizeof *s);
    s->model = model;
    s->cfg = *cfg;
    if (!s->cfg.max_body) s->cfg.max_body = SERVE_DEFAULT_MAX_BODY;
    if (!s->cfg.max_pixels) s->cfg.max_pixels = SERVE_DEFAULT_MAX_PIXELS;
    if (!s->cfg.timeout_s) s->cfg.timeout_s = SERVE_DEFAULT_TIMEOUT_S;
    if (!s->cfg.max_text_body) s->cfg.max_text_body = SERVE_DEFAULT_MAX_TEXT_BODY;
    if (!s->cfg.max_length) s->cfg.max_length = SERVE_DEFAULT_MAX_LENGTH;
    if (!s->cfg.max_prompt) s->cfg.max_prompt = SERVE_DEFAULT_MAX_PROMPT;
    if (!s->cfg.max_generations) s->cfg.max_generations = cfg->threads;
    atomic_init(&s->stopping, false);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->generation_ended, NULL);
    s->idle = nn_xcalloc((size_t)cfg->threads, sizeof *s->idle);

    bool ipv6 = false;
    int fd = listen_on(cfg->host, cfg->port, &s->port, &ipv6);
    if (fd < 0) {
        server_stop(s);
        return NULL;
    }
    s->page = text ? MHD_create_response_from_buffer(serve_text_page_len, (void *)serve_text_page, MHD_RESPMEM_PERSISTENT)
                   : MHD_create_response_from_buffer(serve_page_len, (void *)serve_page, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(s->page, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    /* The page is self-contained: the browser may fetch nothing else, and
     * talk to this server only. */
    MHD_add_response_header(s->page, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                            "connect-src 'self'; img-src 'self' data: blob:");
    /* One BLAS thread: a batch of one is too small to split, and OpenBLAS's
     * threaded path is not meant to be entered from many threads at once. */
    openblas_set_num_threads(1);

    /* ITC: a pipe that wakes the threads at once when the server stops. */
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0) |
                     (text ? MHD_ALLOW_SUSPEND_RESUME : 0); /* a stream waits for its characters suspended */
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_message, s,
                                 MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads,
                                 MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.timeout_s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                                 MHD_OPTION_URI_LOG_CALLBACK, on_request_start, s,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_request_done, s,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        close(fd);
        nn_error("cannot start the HTTP server on %s port %d", cfg->host, s->port);
        server_stop(s);
        return NULL;
    }
    return s;
}

int server_port(const server *s) { return s->port; }

void server_stop(server *s) {
    if (!s) return;
    /* Generations end at their next character; MHD must not be stopped with
     * a connection suspended, and a stream's is resumed when its generation
     * ends, so all of them end first. */
    pthread_mutex_lock(&s->lock); /* no generation is admitted after this */
    atomic_store(&s->stopping, true);
    while (s->generating > 0) pthread_cond_wait(&s->generation_ended, &s->lock);
    pthread_mutex_unlock(&s->lock);
    if (s->daemon) MHD_stop_daemon(s->daemon); /* joins the threads; closes the socket */
    if (s->page) MHD_destroy_response(s->page);
    for (int i = 0; i < s->n_idle; i++) nn_ctx_free(s->idle[i]);
    free(s->idle);
    pthread_cond_destroy(&s->generation_ended);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
