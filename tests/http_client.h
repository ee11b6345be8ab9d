/* A small blocking HTTP/1.1 client over plain sockets, for nn serve's
 * loopback test and its load benchmark: connect to 127.0.0.1, send bytes as
 * given (well-formed or not), read one reply (status line, headers, and a
 * body of Content-Length bytes, or up to EOF when there is none). Every
 * socket has send and receive timeouts, so a server that hangs fails the
 * caller instead of hanging it. */
#ifndef NN_TEST_HTTP_CLIENT_H
#define NN_TEST_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct http_reply {
    int status;      /* 0 when no status line arrived */
    char head[8192]; /* status line and headers, NUL-terminated */
    char *body;      /* NUL-terminated; len bytes */
    size_t len;
    bool closed;     /* the server closed the connection after it */
} http_reply;

static inline void http_reply_free(http_reply *r) {
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

static inline int http_connect(int port, double timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (time_t)timeout_s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline int http_send_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The value of header `name` (case-insensitive) in buf, or NULL. */
static inline const char *http_header(const http_reply *r, const char *name, char *buf, size_t cap) {
    size_t n = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            h += n + 1;
            while (*h == ' ') h++;
            size_t len = strcspn(h, "\r\n");
            if (len >= cap) len = cap - 1;
            memcpy(buf, h, len);
            buf[len] = 0;
            return buf;
        }
    }
    return NULL;
}

/* Reads one reply from fd. Returns 0, or -1 when the connection ended or
 * timed out before a whole reply (r->status says whether a head came). */
static inline int http_read_reply(int fd, http_reply *r) {
    memset(r, 0, sizeof *r);
    size_t cap = 1 << 16, got = 0, head_len = 0;
    char *buf = malloc(cap + 1);
    long want = -1; /* body bytes; -1: up to EOF */
    for (;;) {
        if (head_len && want >= 0 && got - head_len >= (size_t)want) break;
        if (got == cap) buf = realloc(buf, (cap *= 2) + 1);
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            r->closed = n == 0;
            if (!head_len || want >= 0) { /* cut short (or a timeout) */
                if (!head_len && got) {
                    buf[got] = 0;
                    sscanf(buf, "HTTP/1.%*d %d", &r->status);
                }
                free(buf);
                return -1;
            }
            break; /* no Content-Length: the body runs to EOF */
        }
        got += (size_t)n;
        buf[got] = 0;
        char *end;
        if (!head_len && (end = strstr(buf, "\r\n\r\n"))) {
            head_len = (size_t)(end - buf) + 4;
            size_t keep = head_len < sizeof r->head ? head_len : sizeof r->head - 1;
            memcpy(r->head, buf, keep);
            r->head[keep] = 0;
            if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) r->status = 0;
            char v[32];
            if (http_header(r, "Content-Length", v, sizeof v)) want = atol(v);
        }
    }
    r->len = got - head_len;
    if (want >= 0 && r->len > (size_t)want) r->len = (size_t)want;
    r->body = malloc(r->len + 1);
    memcpy(r->body, buf + head_len, r->len);
    r->body[r->len] = 0;
    free(buf);
    char v[32];
    if (http_header(r, "Connection", v, sizeof v) && strcasecmp(v, "close") == 0) r->closed = true;
    return 0;
}

/* Formats a request with a body (or none, when body is NULL). */
static inline size_t http_format(char *buf, size_t cap, const char *method, const char *path, const char *type,
                                 size_t len, bool has_body, bool keep_alive) {
    int n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s", method, path,
                     keep_alive ? "" : "Connection: close\r\n");
    if (type) n += snprintf(buf + n, cap - (size_t)n, "Content-Type: %s\r\n", type);
    if (has_body) n += snprintf(buf + n, cap - (size_t)n, "Content-Length: %zu\r\n", len);
    n += snprintf(buf + n, cap - (size_t)n, "\r\n");
    return (size_t)n;
}

/* One request on its own connection. Returns 0 with the reply, else -1. */
static inline int http_request(int port, const char *method, const char *path, const char *type, const void *body,
                               size_t len, http_reply *r) {
    memset(r, 0, sizeof *r);
    int fd = http_connect(port, 20);
    if (fd < 0) return -1;
    char head[512];
    size_t n = http_format(head, sizeof head, method, path, type, len, body != NULL, false);
    int rc = http_send_all(fd, head, n) == 0 && (!body || http_send_all(fd, body, len) == 0) ? http_read_reply(fd, r)
                                                                                           : -1;
    close(fd);
    return rc;
}

#endif
