/* Shared by nn serve's tests: the server as a child process on a port the
 * kernel picks, stopped by a signal, and the checks of its JSON replies.
 * Include after check.h, http_client.h and run_nn.h. */
#ifndef NN_TEST_SERVE_PROC_H
#define NN_TEST_SERVE_PROC_H

#include <cjson/cJSON.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>

#include "core/util.h"

typedef struct {
    pid_t pid;
    int port;
    char log[256]; /* its stderr */
} server_proc;

/* Starts "$NN serve --model MODEL --port 0 ARGS" and reads the address it
 * prints: the kernel picks the port, so parallel runs never collide. */
static inline bool start_server(server_proc *s, const char *model, const char *args) {
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "%s", tmp("serve.log"));
    int out[2];
    if (pipe(out) != 0) return false;
    const char *bin = getenv("NN") ? getenv("NN") : "build/nn";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "exec %s serve --model %s --port 0 %s 2>%s", bin, model, args, s->log);
    s->pid = fork();
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* no server outlives a crashed test */
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[512] = "";
    size_t n = 0;
    struct pollfd p = {out[0], POLLIN, 0};
    while (n + 1 < sizeof line && !strchr(line, '\n') && poll(&p, 1, 30000) == 1) {
        ssize_t r = read(out[0], line + n, sizeof line - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        line[n] = 0;
    }
    close(out[0]);
    const char *at = strstr(line, "http://127.0.0.1:");
    if (at) s->port = atoi(at + strlen("http://127.0.0.1:"));
    CHECKF(s->port > 0, "nn serve printed no address: \"%s\"", line);
    if (s->port > 0) return true;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return false;
}

static inline bool still_running(const server_proc *s) {
    int st;
    return waitpid(s->pid, &st, WNOHANG) == 0;
}

/* The signal, then the exit status (-1 if it had to be killed after 10 s). */
static inline int stop_server_with(server_proc *s, int sig) {
    kill(s->pid, sig);
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

static inline int stop_server(server_proc *s) { return stop_server_with(s, SIGTERM); }

static inline char *read_whole(const char *path, size_t *len) {
    return (char *)nn_read_file(path, len, 0);
}

/* ---- replies ------------------------------------------------------------- */

static inline bool has_type(const http_reply *r, const char *type) {
    char v[128];
    return http_header(r, "Content-Type", v, sizeof v) && strncmp(v, type, strlen(type)) == 0;
}

/* A 4xx with a JSON {"error": "..."} that says `why`. */
static inline void check_error(const char *what, const http_reply *r, int status, const char *why) {
    CHECKF(r->status == status, "%s: status %d, expected %d (%s)", what, r->status, status, r->body);
    CHECKF(has_type(r, "application/json"), "%s: not JSON: %s", what, r->head);
    cJSON *json = cJSON_Parse(r->body ? r->body : "");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
    CHECKF(cJSON_IsString(error) && strstr(error->valuestring, why), "%s: body %s should say \"%s\"", what,
           r->body, why);
    cJSON_Delete(json);
}

#endif
