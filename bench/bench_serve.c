/* Load for nn serve's /predict: CLIENTS threads, each on one keep-alive
 * connection, POST the same image back to back for SECONDS; every reply must
 * be a 200. Prints requests per second and the latency median and 99th
 * percentile; with the server's PID, also its peak RSS (VmHWM).
 *
 *   build/bench/bench_serve PORT IMAGE [CLIENTS [SECONDS [PID]]]     (8 clients, 10 s)
 *
 * e.g. build/nn serve --model model.safetensors --port 8080 &
 *      build/bench/bench_serve 8080 tests/fixtures/images/7_gray_dark_on_light.png 8 10 $!
 * The clients run on the same machine as the server and share its cores. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/http_client.h"
#include "bench_util.h"
#include "nn/error.h"
#include "nn/report.h"
#include "core/util.h"

#define MAX_CLIENTS 256
#define MAX_SAMPLES (1 << 20)

typedef struct {
    int port;
    const char *body;
    size_t len;
    double until;
    long ok, failed;
    double *latency; /* ms, MAX_SAMPLES */
    long n_latency;
} client;

static void *run_client(void *arg) {
    client *c = arg;
    char head[512];
    size_t n = http_format(head, sizeof head, "POST", "/predict", "image/png", c->len, true, true);
    char *request = malloc(n + c->len);
    memcpy(request, head, n);
    memcpy(request + n, c->body, c->len);
    int fd = -1;
    while (nn_seconds() < c->until) {
        if (fd < 0 && (fd = http_connect(c->port, 10)) < 0) {
            c->failed++;
            break;
        }
        double t0 = nn_seconds();
        http_reply r;
        int rc = http_send_all(fd, request, n + c->len) == 0 ? http_read_reply(fd, &r) : -1;
        if (rc == 0 && r.status == 200) {
            c->ok++;
            if (c->n_latency < MAX_SAMPLES) c->latency[c->n_latency++] = 1e3 * (nn_seconds() - t0);
        } else {
            c->failed++;
        }
        if (rc != 0 || r.closed) {
            close(fd);
            fd = -1;
        }
        if (rc == 0) http_reply_free(&r);
    }
    if (fd >= 0) close(fd);
    free(request);
    return NULL;
}

static long peak_rss_kib(long pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT IMAGE [CLIENTS [SECONDS [PID]]]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int clients = argc > 3 ? atoi(argv[3]) : 8;
    double seconds = argc > 4 ? atof(argv[4]) : 10;
    long pid = argc > 5 ? atol(argv[5]) : 0;
    if (port <= 0 || clients < 1 || clients > MAX_CLIENTS || seconds <= 0) {
        fprintf(stderr, "%s: bad PORT, CLIENTS (1..%d) or SECONDS\n", argv[0], MAX_CLIENTS);
        return 2;
    }
    size_t len;
    char *body = (char *)nn_read_file(argv[2], &len, 0);
    if (!body) {
        fprintf(stderr, "%s: %s\n", argv[0], nn_last_error());
        return 1;
    }
    static client c[MAX_CLIENTS];
    pthread_t threads[MAX_CLIENTS];
    double start = nn_seconds();
    for (int i = 0; i < clients; i++) {
        c[i] = (client){port, body, len, start + seconds, 0, 0, malloc(MAX_SAMPLES * sizeof(double)), 0};
        pthread_create(&threads[i], NULL, run_client, &c[i]);
    }
    long ok = 0, failed = 0, n = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(threads[i], NULL);
        ok += c[i].ok;
        failed += c[i].failed;
    }
    double elapsed = nn_seconds() - start;
    double *all = malloc((size_t)(ok > 0 ? ok : 1) * sizeof *all);
    for (int i = 0; i < clients; i++) {
        memcpy(all + n, c[i].latency, (size_t)c[i].n_latency * sizeof *all);
        n += c[i].n_latency;
        free(c[i].latency);
    }
    double p50 = n ? median(all, (int)n) : 0; /* sorts all */
    double p99 = n ? all[(long)(0.99 * (double)(n - 1))] : 0;
    printf("clients %d  seconds %.1f  requests %ld  failed %ld  req/s %.0f  p50 %.2f ms  p99 %.2f ms", clients, elapsed,
           ok, failed, ok / elapsed, p50, p99);
    if (pid > 0) printf("  server peak RSS %.1f MiB", peak_rss_kib(pid) / 1024.0);
    printf("\n");
    free(all);
    free(body);
    return failed ? 1 : 0;
}
