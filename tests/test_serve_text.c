/* nn serve with a language model, over loopback: POST /generate against nn
 * generate on the same settings (the same text, the same seed the same
 * text), its stream arriving in pieces as the characters are made and adding
 * up to the same text, every kind of bad request (a 4xx with {"error": ...}
 * that names the mistake), the limits, a busy server's 503 while it still
 * answers other requests, a client that leaves mid-stream, SIGTERM during a
 * stream; and the page in Debian's headless Chromium driven by
 * playwright-core (tests/browser/write.mjs): a prompt typed, Generate
 * clicked, the text growing on the page before it is done. The models are
 * trained here for a few steps on the committed Tiny Shakespeare. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <pthread.h>

#include "check.h"
#include "http_client.h"
#include "nn/report.h"
#include "run_nn.h"
#include "serve_proc.h"

#define SHAKESPEARE "datasets/tinyshakespeare/input.txt"
#define RUN "--eval-every 1 --eval-windows 2 --context 16 --batch-size 4 --threads 1"

/* A tiny model for the answers, and a wider one that takes a fraction of a
 * millisecond a character, so that a long stream lasts long enough to be
 * watched (it is barely trained: its text is noise, which is all a stream
 * needs). */
static const char *model(const char *name, const char *arch, int steps) {
    static char paths[3][128];
    int slot = strcmp(name, "tiny") == 0 ? 0 : strcmp(name, "wide") == 0 ? 1 : 2;
    if (paths[slot][0]) return paths[slot];
    char file[64];
    snprintf(file, sizeof file, "%s.safetensors", name);
    const char *path = tmp(file);
    int rc = nn("train --data " SHAKESPEARE " --arch '%s' --steps %d " RUN " --save %s", arch, steps, path);
    CHECKF(rc == 0, "training the %s model failed: %s", name, err_text);
    if (rc != 0) return NULL;
    snprintf(paths[slot], sizeof paths[slot], "%s", path);
    return paths[slot];
}
static const char *tiny(void) { return model("tiny", "embed(8) lstm(16) linear(65)", 20); }
static const char *wide(void) { return model("wide", "embed(32) lstm(512) linear(65)", 1); }

/* The longest generation (2000 characters: a third of a second of the wide
 * model); under the sanitizers, which make it 50 times slower, 300. */
static int long_length(void) { return getenv("NN_SANITIZE") ? 300 : 2000; }

/* ---- requests ------------------------------------------------------------- */

static int post_json(int port, const char *json, http_reply *r) {
    return http_request(port, "POST", "/generate", "application/json", json, strlen(json), r);
}

/* The "text" of a 200 reply (malloc'd), checking the reply's shape and that
 * it has `characters` (-1: any number); NULL if it is not one. */
static char *generated(const char *what, const http_reply *r, int characters) {
    CHECKF(r->status == 200, "%s: status %d (%s)", what, r->status, r->body);
    CHECKF(has_type(r, "application/json"), "%s: not JSON: %s", what, r->head);
    cJSON *json = cJSON_Parse(r->body ? r->body : "");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(json, "text");
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(json, "characters");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(json, "prompt");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(json, "seed");
    bool ok = r->status == 200 && cJSON_IsString(text) && cJSON_IsNumber(count) && cJSON_IsString(prompt) &&
              cJSON_IsNumber(seed);
    CHECKF(ok, "%s: the reply lacks text, characters, prompt or seed: %.300s", what, r->body);
    char *out = NULL;
    if (ok) {
        CHECKF(characters < 0 || (count->valueint == characters && (int)strlen(text->valuestring) == characters),
               "%s: %d characters (%zu bytes), asked for %d", what, count->valueint, strlen(text->valuestring),
               characters);
        out = strdup(text->valuestring);
    }
    cJSON_Delete(json);
    return out;
}

static char *generate(int port, const char *json, int characters) {
    http_reply r;
    char *text = NULL;
    CHECKF(post_json(port, json, &r) == 0, "%s: no reply", json);
    if (r.status) text = generated(json, &r, characters);
    http_reply_free(&r);
    return text;
}

/* A streamed /generate read as it arrives: the head, then the chunks of the
 * chunked body, decoded, counted and timed. */
typedef struct {
    int status;
    char head[2048];
    char *text; /* the chunks' data, NUL-terminated */
    size_t len;
    int chunks;
    double first_s, last_s; /* from the request to the first data and to the end */
    bool ended;             /* the final zero-length chunk came */
} streamed;

static void streamed_free(streamed *s) { free(s->text); }

/* Sends a POST /generate with body json on a new connection, *fd_out. */
static int stream_start(int port, const char *json, int *fd_out) {
    int fd = http_connect(port, 30);
    if (fd < 0) return -1;
    char head[512];
    size_t n = http_format(head, sizeof head, "POST", "/generate", "application/json", strlen(json), true, false);
    if (http_send_all(fd, head, n) != 0 || http_send_all(fd, json, strlen(json)) != 0) {
        close(fd);
        return -1;
    }
    *fd_out = fd;
    return 0;
}

/* Reads from fd until the head is complete (into out->head) and returns the
 * bytes of the body that came with it in buf[*len]. */
static int read_head(int fd, streamed *out, char *buf, size_t cap, size_t *len) {
    size_t got = 0;
    char *end = NULL;
    while (!end) {
        if (got + 1 >= cap) return -1;
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n <= 0) return -1;
        got += (size_t)n;
        buf[got] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - buf) + 4;
    snprintf(out->head, sizeof out->head, "%.*s", (int)head_len, buf);
    sscanf(out->head, "HTTP/1.%*d %d", &out->status);
    memmove(buf, buf + head_len, got - head_len);
    *len = got - head_len;
    return 0;
}

static int stream_read_all(int fd, streamed *out, double t0) {
    enum { CAP = 1 << 16 };
    char *buf = malloc(CAP);
    size_t len = 0;
    if (read_head(fd, out, buf, CAP, &len) != 0) {
        free(buf);
        return -1;
    }
    out->text = calloc(1, CAP);
    /* Parse chunks as they arrive: SIZE-in-hex CRLF DATA CRLF, ..., 0 CRLF CRLF. */
    for (;;) {
        char *crlf = memmem(buf, len, "\r\n", 2);
        size_t size = crlf ? strtoul(buf, NULL, 16) : 0;
        size_t need = crlf ? (size_t)(crlf - buf) + 2 + size + 2 : 0;
        if (crlf && len >= need) {
            if (size == 0) {
                out->ended = true;
                break;
            }
            if (out->len + size + 1 < CAP) memcpy(out->text + out->len, crlf + 2, size);
            out->len += size;
            if (out->chunks++ == 0) out->first_s = nn_seconds() - t0;
            memmove(buf, buf + need, len - need);
            len -= need;
            continue;
        }
        if (len + 1 >= CAP) break;
        ssize_t n = recv(fd, buf + len, CAP - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    out->last_s = nn_seconds() - t0;
    free(buf);
    return 0;
}

static int stream(int port, const char *json, streamed *out) {
    memset(out, 0, sizeof *out);
    int fd;
    double t0 = nn_seconds();
    if (stream_start(port, json, &fd) != 0) return -1;
    int rc = stream_read_all(fd, out, t0);
    close(fd);
    return rc;
}

/* ---- /generate against nn generate ---------------------------------------- */

/* nn generate prints the prompt, the continuation and a line break. */
static void check_matches_cli(int port, const char *m, const char *prompt, int length, const char *temperature,
                              int top_k, int seed) {
    char json[512];
    snprintf(json, sizeof json, "{\"prompt\": \"%s\", \"length\": %d, \"temperature\": %s, \"top_k\": %d, \"seed\": %d}",
             prompt, length, temperature, top_k, seed);
    char *text = generate(port, json, length);
    if (!text) return;
    CHECK(nn("generate --model %s --prompt '%s' --length %d --temperature %s --top-k %d --seed %d", m, prompt, length,
             temperature, top_k, seed) == 0);
    size_t np = strlen(prompt);
    bool same = strncmp(out_text, prompt, np) == 0 && strncmp(out_text + np, text, strlen(text)) == 0 &&
                strcmp(out_text + np + strlen(text), "\n") == 0;
    CHECKF(same, "%s\nserved:      '%s'\nnn generate: '%s'", json, text, out_text);
    free(text);
}

static void test_generate_matches_cli(void) {
    const char *m = tiny();
    server_proc s;
    if (!m || !start_server(&s, m, "--threads 2")) return;
    check_matches_cli(s.port, m, "ROMEO:", 80, "1", 0, 5);
    check_matches_cli(s.port, m, "ROMEO:", 300, "0.8", 5, 7);
    check_matches_cli(s.port, m, "To be", 50, "0", 0, 1); /* greedy */

    /* The same seed, the same text; another seed, another text. */
    const char *req = "{\"prompt\": \"ROMEO:\", \"length\": 200, \"seed\": 11}";
    char *a = generate(s.port, req, 200), *b = generate(s.port, req, 200);
    char *c = generate(s.port, "{\"prompt\": \"ROMEO:\", \"length\": 200, \"seed\": 12}", 200);
    CHECKF(a && b && strcmp(a, b) == 0, "seed 11 twice: '%s' vs '%s'", a, b);
    CHECKF(a && c && strcmp(a, c) != 0, "seeds 11 and 12 wrote the same");
    free(a);
    free(b);
    free(c);

    /* Every field left out: nn generate's defaults (a line break as the
     * prompt, 500 characters, temperature 1, seed 1). */
    char *d = generate(s.port, "{}", 500);
    CHECK(nn("generate --model %s", m) == 0);
    CHECKF(d && out_text[0] == '\n' && strncmp(out_text + 1, d, strlen(d)) == 0, "defaults: '%s' vs '%s'", d,
           out_text);
    free(d);
    char *e = generate(s.port, "{\"prompt\": \"ROMEO:\", \"length\": 0}", 0);
    CHECKF(e && !*e, "length 0 wrote '%s'", e ? e : "");
    free(e);

    /* What the page reads about the model. */
    http_reply r;
    CHECK(http_request(s.port, "GET", "/model", NULL, NULL, 0, &r) == 0);
    cJSON *json = cJSON_Parse(r.body ? r.body : "");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(json, "kind");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(json, "vocabulary");
    const cJSON *chars = cJSON_GetObjectItemCaseSensitive(json, "characters");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(json, "spec");
    CHECKF(r.status == 200 && cJSON_IsString(kind) && strcmp(kind->valuestring, "language model") == 0 &&
               cJSON_IsNumber(vocab) && vocab->valueint == 65 && cJSON_IsString(chars) &&
               strlen(chars->valuestring) == 65 && strchr(chars->valuestring, 'R') && cJSON_IsString(spec) &&
               strstr(spec->valuestring, "lstm(16)"),
           "GET /model: %d %s", r.status, r.body);
    cJSON_Delete(json);
    http_reply_free(&r);
    CHECK(http_request(s.port, "GET", "/", NULL, NULL, 0, &r) == 0);
    CHECKF(r.status == 200 && has_type(&r, "text/html") && strstr(r.body, "id=\"prompt\"") &&
               !strstr(r.body, "<canvas"),
           "GET /: %d %.200s", r.status, r.body);
    http_reply_free(&r);
    CHECK(stop_server(&s) == 0);
}

/* A model of lines (names): each answer is one line, ended by the model
 * (the boundary token is not part of the text), as nn generate --count 1
 * writes it. */
static void test_names(void) {
    const char *m = tmp("names.safetensors");
    int rc = nn("train --data datasets/names/names.txt --arch 'embed(8) gru(16) linear(27)' --steps 40 " RUN
                " --save %s", m);
    CHECKF(rc == 0, "training on names failed: %s", err_text);
    server_proc s;
    if (rc != 0 || !start_server(&s, m, "--threads 1")) return;
    int ended = 0;
    for (int seed = 1; seed <= 8; seed++) {
        char json[128];
        snprintf(json, sizeof json, "{\"length\": 12, \"seed\": %d}", seed);
        char *text = generate(s.port, json, -1);
        if (!text) continue;
        CHECK(nn("generate --model %s --count 1 --length 12 --seed %d", m, seed) == 0);
        /* nn generate ends the line with its boundary's "\n", and adds one
         * when it made --length tokens: two when the last was the boundary. */
        size_t n = strlen(text);
        CHECKF(n <= 12 && !strchr(text, '\n') && strncmp(out_text, text, n) == 0 &&
                   (strcmp(out_text + n, "\n") == 0 || (n == 11 && strcmp(out_text + n, "\n\n") == 0)),
               "seed %d: served '%s', nn generate wrote '%s'", seed, text, out_text);
        ended += n < 12;
        free(text);
    }
    CHECKF(ended > 0, "no name of 8 ended before 12 characters");
    http_reply r;
    CHECK(http_request(s.port, "GET", "/model", NULL, NULL, 0, &r) == 0);
    CHECKF(r.status == 200 && strstr(r.body, "\"lines\":true") && strstr(r.body, "\"default_prompt\":\"\""),
           "GET /model: %s", r.body);
    http_reply_free(&r);
    CHECK(post_json(s.port, "{\"prompt\": \"Anna\"}", &r) == 0); /* names are lower case */
    check_error("an upper-case name", &r, 400, "'A' (U+0041)");
    http_reply_free(&r);
    CHECK(stop_server(&s) == 0);
}

/* ---- the stream ------------------------------------------------------------ */

static void test_stream(void) {
    const char *m = wide();
    server_proc s;
    if (!m || !start_server(&s, m, "--threads 2")) return;
    int length = long_length();
    char req[128], json[256];
    snprintf(req, sizeof req, "{\"prompt\": \"ROMEO:\", \"length\": %d, \"temperature\": 0.8, \"seed\": 3", length);
    snprintf(json, sizeof json, "%s}", req);
    char *whole = generate(s.port, json, length);
    snprintf(json, sizeof json, "%s, \"stream\": true}", req);
    streamed st;
    CHECK(stream(s.port, json, &st) == 0);
    char v[64];
    http_reply head = {0};
    snprintf(head.head, sizeof head.head, "%s", st.head);
    CHECKF(st.status == 200 && has_type(&head, "text/plain") && http_header(&head, "Transfer-Encoding", v, sizeof v) &&
               strcmp(v, "chunked") == 0,
           "stream head: %s", st.head);
    CHECKF(st.ended, "the stream did not end with its final chunk");
    /* The same characters as the JSON answer, in pieces, the first of them
     * well before the last. */
    CHECKF(whole && st.text && st.len == strlen(whole) && memcmp(st.text, whole, st.len) == 0,
           "streamed %zu bytes, unlike the %zu of the JSON answer", st.len, whole ? strlen(whole) : 0);
    CHECKF(st.chunks >= 10, "%d characters came in %d chunks", length, st.chunks);
    CHECKF(st.first_s < st.last_s / 2, "first characters after %.3f s, the end after %.3f s", st.first_s, st.last_s);
    fprintf(stderr, "note: %d characters streamed in %d chunks, the first after %.1f ms, the end after %.1f ms\n",
            length, st.chunks, 1e3 * st.first_s, 1e3 * st.last_s);
    streamed_free(&st);
    free(whole);

    /* A stream cut short at its client, then SIGTERM during another: the
     * server goes on, then stops at once and cleanly. */
    int fd;
    CHECK(stream_start(s.port, json, &fd) == 0);
    char buf[4096];
    size_t len;
    memset(&st, 0, sizeof st);
    CHECK(read_head(fd, &st, buf, sizeof buf, &len) == 0 && st.status == 200);
    close(fd);
    char *after = generate(s.port, "{\"prompt\": \"ROMEO:\", \"length\": 20, \"seed\": 3}", 20);
    CHECK(after != NULL);
    free(after);
    CHECK(stream_start(s.port, json, &fd) == 0);
    CHECK(read_head(fd, &st, buf, sizeof buf, &len) == 0 && st.status == 200);
    double t0 = nn_seconds();
    CHECK(stop_server(&s) == 0);
    CHECKF(nn_seconds() - t0 < 5, "SIGTERM during a stream took %.1f s", nn_seconds() - t0);
    close(fd);
}

/* One generation at a time (--threads 1): a second is told the server is
 * busy, while pages and other requests are still answered at once, since a
 * stream holds no connection thread while it waits for its characters. */
static void test_busy(void) {
    const char *m = wide();
    server_proc s;
    if (!m || !start_server(&s, m, "--threads 1")) return;
    int fd;
    streamed st = {0};
    char buf[4096];
    size_t len;
    char json[64];
    snprintf(json, sizeof json, "{\"length\": %d, \"stream\": true}", long_length());
    CHECK(stream_start(s.port, json, &fd) == 0);
    CHECK(read_head(fd, &st, buf, sizeof buf, &len) == 0 && st.status == 200);
    http_reply r;
    double t0 = nn_seconds();
    CHECK(http_request(s.port, "GET", "/", NULL, NULL, 0, &r) == 0 && r.status == 200);
    http_reply_free(&r);
    CHECK(post_json(s.port, "{\"length\": 10}", &r) == 0);
    check_error("a second generation", &r, 503, "busy");
    http_reply_free(&r);
    CHECKF(nn_seconds() - t0 < 0.5, "the page and the 503 took %.2f s beside a stream", nn_seconds() - t0);
    close(fd);
    /* Its slot comes back once it is over. */
    bool answered = false;
    for (int i = 0; i < 100 && !answered; i++) {
        CHECK(post_json(s.port, "{\"length\": 10}", &r) == 0);
        answered = r.status == 200;
        http_reply_free(&r);
        if (!answered) usleep(50000);
    }
    CHECKF(answered, "no generation admitted 5 s after the stream's client left");
    CHECK(stop_server(&s) == 0);
}

/* ---- bad requests and limits ----------------------------------------------- */

static void test_bad_requests(void) {
    const char *m = tiny();
    server_proc s;
    if (!m || !start_server(&s, m, "--threads 2 --timeout 3")) return;
    static const struct {
        const char *body, *why;
    } cases[] = {
        {"", "empty body"},
        {"{\"prompt\": \"ROMEO:\",", "not JSON"},
        {"{\"prompt\": \"a\"} trailing", "not JSON"},
        {"[\"ROMEO:\"]", "must be a JSON object"},
        {"\"ROMEO:\"", "must be a JSON object"},
        {"{\"prompt\": \"ROMEO:\", \"topk\": 5}", "unknown field \"topk\""},
        {"{\"length\": 2001}", "\"length\" must be a whole number from 0 to 2000"},
        {"{\"length\": -1}", "\"length\""},
        {"{\"length\": 2.5}", "\"length\""},
        {"{\"length\": \"20\"}", "\"length\""},
        {"{\"temperature\": -0.5}", "\"temperature\""},
        {"{\"temperature\": 1e999}", "\"temperature\""},
        {"{\"top_k\": -1}", "\"top_k\""},
        {"{\"seed\": 4294967296}", "\"seed\" must be a whole number from 0 to 2147483647"},
        {"{\"stream\": \"yes\"}", "\"stream\" must be true or false"},
        {"{\"prompt\": 5}", "\"prompt\" must be a string"},
        {"{\"prompt\": \"caf\xc3\xa9\"}", "character '\xc3\xa9' (U+00E9)"},
        {"{\"prompt\": \"Zebra\\u00e9\"}", "U+00E9"},
        {"{\"prompt\": \"ab\xff\"}", "UTF-8"},
    };
    http_reply r;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(post_json(s.port, cases[i].body, &r) == 0);
        check_error(cases[i].body, &r, 400, cases[i].why);
        http_reply_free(&r);
    }
    /* A prompt over 4000 characters, in a body under the 64 KiB limit. */
    char *big = malloc(8000);
    int n = snprintf(big, 8000, "{\"prompt\": \"");
    for (int i = 0; i < 4001; i++) big[n++] = 'a';
    snprintf(big + n, 8000 - (size_t)n, "\", \"length\": 1}");
    CHECK(post_json(s.port, big, &r) == 0);
    check_error("a 4001-character prompt", &r, 400, "the prompt is 4001 characters, more than the limit of 4000");
    http_reply_free(&r);
    free(big);
    /* Over 64 KiB: refused from the Content-Length alone, at once. */
    const char *huge = "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 70000\r\n\r\n";
    int fd = http_connect(s.port, 10);
    double t0 = nn_seconds();
    CHECK(fd >= 0 && http_send_all(fd, huge, strlen(huge)) == 0 && http_read_reply(fd, &r) == 0);
    check_error("a 70000-byte body", &r, 413, "body too large (70000 bytes, limit 65536)");
    CHECKF(nn_seconds() - t0 < 1.5, "the 413 took %.2f s", nn_seconds() - t0);
    http_reply_free(&r);
    if (fd >= 0) close(fd);

    CHECK(http_request(s.port, "GET", "/generate", NULL, NULL, 0, &r) == 0);
    check_error("GET /generate", &r, 405, "POST a JSON request");
    http_reply_free(&r);
    CHECK(http_request(s.port, "POST", "/predict", "image/png", "abc", 3, &r) == 0);
    check_error("POST /predict to a language model", &r, 404, "POST a JSON request to /generate");
    http_reply_free(&r);

    /* Still up, still right. */
    CHECK(still_running(&s));
    char *text = generate(s.port, "{\"prompt\": \"ROMEO:\", \"length\": 30}", 30);
    free(text);
    CHECK(stop_server(&s) == 0);
    size_t len;
    char *log = read_whole(s.log, &len);
    CHECKF(log && strstr(log, "POST /generate 400 ") && strstr(log, "POST /generate 413 ") &&
               strstr(log, "POST /generate 200 ") && strstr(log, "U+00E9"),
           "log:\n%s", log ? log : "");
    free(log);
}

/* A model with learned positions takes no prompt longer than its context;
 * a text classifier is not served. */
static void test_context_and_kinds(void) {
    const char *gpt = model("gpt", "embed(16) posembed residual(layernorm attention(2)) "
                                   "residual(layernorm linear(32) gelu linear(16)) layernorm unembed", 2);
    server_proc s;
    if (gpt && start_server(&s, gpt, "--threads 1")) {
        http_reply r;
        CHECK(post_json(s.port, "{\"prompt\": \"ROMEO: what, art thou\", \"length\": 5}", &r) == 0);
        check_error("a prompt longer than the context", &r, 400, "more than the model's context of 16");
        http_reply_free(&r);
        char *text = generate(s.port, "{\"prompt\": \"ROMEO:\", \"length\": 10}", 10);
        free(text);
        CHECK(stop_server(&s) == 0);
    }
    int rc = nn("train --data datasets/names-by-language --arch 'embed(8) gru(8) last linear(18)' --epochs 1 "
                "--threads 1 --save %s", tmp("classifier.safetensors"));
    if (rc != 0) {
        CHECKF(false, "training a text classifier failed: %s", err_text);
        return;
    }
    CHECKF(nn("serve --model %s --port 0", tmp("classifier.safetensors")) == 1 && one_line_error("text classifier"),
           "%s", err_text);
}

/* ---- the page in a real browser -------------------------------------------- */

/* tests/browser/write.mjs types a prompt, sets the controls, clicks Generate
 * and watches the text: it must grow on the page while the model writes,
 * end as /generate's text for the same settings, and a refused request must
 * show the server's reason. */
static void test_browser_writes(void) {
    if (system("command -v node >/dev/null 2>&1") != 0) {
        SKIP("node is not installed (apt-get install nodejs npm; then bash scripts/node_deps.sh)");
        return;
    }
    if (access("build-node/node_modules/playwright-core/package.json", R_OK) != 0) {
        SKIP("playwright-core is not in build-node/node_modules (run bash scripts/node_deps.sh)");
        return;
    }
    if (access("/usr/bin/chromium", X_OK) != 0) {
        SKIP("/usr/bin/chromium is missing (apt-get install chromium)");
        return;
    }
    const char *m = wide();
    server_proc s;
    if (!m || !start_server(&s, m, "--threads 2")) return;
    const char *shot = getenv("NN_SCREENSHOT") ? getenv("NN_SCREENSHOT") : tmp("page.png");
    char cmd[1024];
    int length = long_length();
    snprintf(cmd, sizeof cmd, "timeout 120 node tests/browser/write.mjs http://127.0.0.1:%d/ %d %s >%s 2>%s", s.port,
             length, shot, tmp("browser.json"), tmp("browser.err"));
    int rc = system(cmd);
    size_t len;
    char *out = read_whole(tmp("browser.json"), &len), *err = read_whole(tmp("browser.err"), &len);
    CHECKF(rc == 0, "write.mjs failed (%d): %s", rc, err ? err : "");
    cJSON *json = cJSON_Parse(out ? out : "");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(json, "prompt");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(json, "text");
    const cJSON *grew = cJSON_GetObjectItemCaseSensitive(json, "lengths");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(json, "status");
    const cJSON *refused = cJSON_GetObjectItemCaseSensitive(json, "refused");
    const cJSON *unknown = cJSON_GetObjectItemCaseSensitive(json, "unknown");
    bool ok = cJSON_IsString(prompt) && cJSON_IsString(text) && cJSON_IsArray(grew) && cJSON_IsString(status) &&
              cJSON_IsString(refused) && cJSON_IsString(unknown);
    CHECKF(ok, "write.mjs printed %s", out ? out : "nothing");
    if (ok) {
        /* The page shows the prompt and the continuation /generate gives. */
        CHECKF(strcmp(prompt->valuestring, "ROMEO:") == 0, "the page shows the prompt '%s'", prompt->valuestring);
        char req[128];
        snprintf(req, sizeof req, "{\"prompt\": \"ROMEO:\", \"length\": %d, \"temperature\": 0.5, \"seed\": 42}",
                 length);
        char *want = generate(s.port, req, length);
        CHECKF(want && strcmp(text->valuestring, want) == 0, "the page wrote %zu characters unlike /generate's",
               strlen(text->valuestring));
        free(want);
        /* It grew in steps while the model wrote: lengths the page showed
         * before the whole text. */
        int n = cJSON_GetArraySize(grew), partial = 0, last = -1;
        bool increasing = true;
        for (int i = 0; i < n; i++) {
            int v = cJSON_GetArrayItem(grew, i)->valueint;
            increasing &= v >= last;
            last = v;
            partial += v > 0 && v < length;
        }
        CHECKF(increasing && last == length && partial >= 2, "lengths on the page as it wrote: %d of them, %d partial, last %d",
               n, partial, last);
        fprintf(stderr, "note: the page showed the text at %d lengths on its way to %d characters\n", partial, length);
        char done[64];
        snprintf(done, sizeof done, "%d characters in", length);
        CHECKF(strstr(status->valuestring, done), "status: '%s'", status->valuestring);
        CHECKF(strstr(refused->valuestring, "\"length\" must be a whole number from 0 to 2000"),
               "a length of 5000 showed: '%s'", refused->valuestring);
        CHECKF(strstr(unknown->valuestring, "\"\xc3\xa9\""), "a prompt with \xc3\xa9 showed: '%s'", unknown->valuestring);
    }
    cJSON_Delete(json);
    free(out);
    free(err);
    CHECK(stop_server(&s) == 0);
}

TEST_MAIN(TEST(test_generate_matches_cli), TEST(test_names), TEST(test_stream), TEST(test_busy), TEST(test_bad_requests),
          TEST(test_context_and_kinds), TEST(test_browser_writes))
