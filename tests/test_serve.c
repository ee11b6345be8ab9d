/* nn serve over loopback: the page, /predict against nn predict on the same
 * files, every kind of bad request (each answered with a 4xx and
 * {"error": ...}, the server still up after), limits read from the headers
 * alone, slow clients timed out, concurrent clients, SIGTERM; and the page
 * itself in Debian's headless Chromium, driven by playwright-core
 * (tests/browser/draw.mjs), drawing digits with the mouse. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <zlib.h>

#include "check.h"
#include "http_client.h"
#include "nn/error.h"
#include "nn/image.h"
#include "nn/report.h"
#include "run_nn.h"
#include "serve_proc.h"
#include "core/util.h"

#define FIXTURE_MODEL "tests/fixtures/checkpoints/mlp-v1.safetensors"
#define IMAGES "tests/fixtures/images/"

static const char *const fixture_images[] = {
    IMAGES "0_light_on_dark.pgm", IMAGES "1_rgba_transparent.png", IMAGES "2_rgb_blue_ink.png",
    IMAGES "3_gray16_photo.png",  IMAGES "4_noisy_off_centre.png", IMAGES "5_ascii.pgm",
    IMAGES "7_gray_dark_on_light.png", IMAGES "9_palette_4bit.png",
};
#define N_IMAGES (int)(sizeof fixture_images / sizeof *fixture_images)

/* ---- models ------------------------------------------------------------ */

/* Small checkpoints trained once per run on a slice of MNIST. */
static const char *trained(const char *name, const char *args) {
    static char made[2][128];
    int slot = strcmp(name, "mlp") == 0 ? 0 : 1;
    if (made[slot][0]) return made[slot];
    const char *path = tmp(strcmp(name, "mlp") == 0 ? "mlp.safetensors" : "cnn.safetensors");
    int rc = nn("train %s --epochs 1 --threads 1 --seed 1 --save %s", args, path);
    CHECKF(rc == 0, "training the %s failed: %s", name, err_text);
    if (rc != 0) return NULL;
    snprintf(made[slot], sizeof made[slot], "%s", path);
    return made[slot];
}
#define MLP_ARGS "--train-limit 10000 --hidden 128"
#define CNN_ARGS "--train-limit 3000 --arch 'conv(8,3) relu maxpool(2) flatten linear(10)'"

/* ---- replies ------------------------------------------------------------- */

typedef struct {
    int digit;
    float probs[10];
    float input[NN_MNIST_PIXELS];
} prediction;

/* Parses a 200 /predict reply, checking its shape: a digit, 10
 * probabilities summing to 1 with the digit the largest, 784 inputs in 0..1. */
static bool parse_prediction(const char *what, const http_reply *r, prediction *p) {
    CHECKF(r->status == 200, "%s: status %d (%s)", what, r->status, r->body);
    CHECKF(has_type(r, "application/json"), "%s: not JSON: %s", what, r->head);
    cJSON *json = cJSON_Parse(r->body ? r->body : "");
    const cJSON *digit = cJSON_GetObjectItemCaseSensitive(json, "digit");
    const cJSON *probs = cJSON_GetObjectItemCaseSensitive(json, "probabilities");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(json, "input");
    bool ok = cJSON_IsNumber(digit) && cJSON_IsArray(probs) && cJSON_GetArraySize(probs) == 10 &&
              cJSON_IsArray(input) && cJSON_GetArraySize(input) == NN_MNIST_PIXELS;
    CHECKF(ok, "%s: reply lacks digit, 10 probabilities or 784 inputs: %.200s", what, r->body);
    if (ok) {
        p->digit = digit->valueint;
        double sum = 0;
        int argmax = 0;
        for (int k = 0; k < 10; k++) {
            p->probs[k] = (float)cJSON_GetArrayItem(probs, k)->valuedouble;
            sum += p->probs[k];
            if (p->probs[k] > p->probs[argmax]) argmax = k;
            CHECK(p->probs[k] >= 0 && p->probs[k] <= 1);
        }
        CHECK_NEAR(sum, 1.0, 1e-5);
        CHECKF(argmax == p->digit, "%s: digit %d but the largest probability is %d's", what, p->digit, argmax);
        bool in_range = true;
        for (int i = 0; i < NN_MNIST_PIXELS; i++) {
            p->input[i] = (float)cJSON_GetArrayItem(input, i)->valuedouble;
            in_range &= p->input[i] >= 0 && p->input[i] <= 1;
        }
        CHECKF(in_range, "%s: inputs outside 0..1", what);
    }
    cJSON_Delete(json);
    return ok && r->status == 200;
}

static int post_file(int port, const char *path, const char *type, http_reply *r) {
    size_t len;
    char *body = read_whole(path, &len);
    if (!body) return -1;
    int rc = http_request(port, "POST", "/predict", type, body, len, r);
    free(body);
    return rc;
}

static const char *type_of(const char *path) {
    return strstr(path, ".png") ? "image/png" : "image/x-portable-graymap";
}

/* ---- /predict against nn predict ----------------------------------------- */

/* nn predict --top 10 on the file: the digit and all ten probabilities,
 * printed to 3 decimals. */
static bool cli_predict(const char *model, const char *image, int *digit, float probs[10]) {
    if (nn("predict --model %s --top 10 %s", model, image) != 0) return false;
    const char *p = strstr(out_text, ": ");
    if (!p || sscanf(p + 2, "%d", digit) != 1 || !(p = strchr(p, '('))) return false;
    for (int t = 0; t < 10; t++) {
        int k;
        float v;
        if (sscanf(p + 1, "%d: %f", &k, &v) != 2 || k < 0 || k > 9) return false;
        probs[k] = v;
        p = strchr(p + 1, ',');
        if (t < 9 && !p) return false;
        if (p) p++;
    }
    return true;
}

static void check_matches_cli(const char *model) {
    server_proc s;
    if (!start_server(&s, model, "--threads 2")) return;
    for (int i = 0; i < N_IMAGES; i++) {
        const char *f = fixture_images[i];
        http_reply r;
        prediction got;
        int want_digit;
        float want[10], input[NN_MNIST_PIXELS];
        CHECKF(post_file(s.port, f, type_of(f), &r) == 0, "%s: no reply", f);
        if (parse_prediction(f, &r, &got) && cli_predict(model, f, &want_digit, want)) {
            CHECKF(got.digit == want_digit, "%s: served %d, nn predict says %d", f, got.digit, want_digit);
            for (int k = 0; k < 10; k++) CHECK_NEAR(got.probs[k], want[k], 0.0005 + 1e-6);
            /* The input is exactly what the library's preprocessing makes of the file. */
            CHECKF(nn_image_load_mnist(input, f) == 0, "%s", nn_last_error());
            int differ = 0;
            for (int p = 0; p < NN_MNIST_PIXELS; p++) differ += got.input[p] != input[p];
            CHECKF(differ == 0, "%s: %d of 784 inputs differ from nn_image_load_mnist", f, differ);
        }
        http_reply_free(&r);
    }
    CHECK(stop_server(&s) == 0);
}

static void test_predict_matches_cli_mlp(void) {
    if (!have_mnist()) return;
    const char *model = trained("mlp", MLP_ARGS);
    if (model) check_matches_cli(model);
}

static void test_predict_matches_cli_cnn(void) {
    if (!have_mnist()) return;
    const char *model = trained("cnn", CNN_ARGS);
    if (model) check_matches_cli(model);
}

/* ---- bad requests and limits --------------------------------------------- */

/* A PNG signature and IHDR chunk claiming w x h pixels, an empty IDAT, IEND:
 * valid CRCs, so only the size can be refused. */
static size_t huge_png(unsigned char *out, uint32_t w, uint32_t h) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char ihdr[4 + 4 + 13] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    for (int b = 0; b < 4; b++) ihdr[8 + b] = (unsigned char)(w >> (24 - 8 * b)), ihdr[12 + b] = (unsigned char)(h >> (24 - 8 * b));
    ihdr[16] = 8; /* 8-bit gray */
    static const unsigned char idat[8] = {0, 0, 0, 0, 'I', 'D', 'A', 'T'};
    static const unsigned char iend[8] = {0, 0, 0, 0, 'I', 'E', 'N', 'D'};
    const unsigned char *chunks[3] = {ihdr, idat, iend};
    const size_t sizes[3] = {sizeof ihdr, sizeof idat, sizeof iend};
    unsigned char *q = out;
    memcpy(q, sig, 8);
    q += 8;
    for (int c = 0; c < 3; c++) {
        memcpy(q, chunks[c], sizes[c]);
        uLong crc = crc32(0, chunks[c] + 4, (uInt)(sizes[c] - 4));
        for (int b = 0; b < 4; b++) q[sizes[c] + b] = (unsigned char)(crc >> (24 - 8 * b));
        q += sizes[c] + 4;
    }
    return (size_t)(q - out);
}

/* Sends raw bytes on a fresh connection and reads the reply. */
static int raw_exchange(int port, const char *bytes, size_t n, http_reply *r, double *seconds) {
    int fd = http_connect(port, 20);
    if (fd < 0) return -1;
    double t0 = nn_seconds();
    int rc = http_send_all(fd, bytes, n) == 0 ? http_read_reply(fd, r) : -1;
    if (seconds) *seconds = nn_seconds() - t0;
    close(fd);
    return rc;
}

static void test_bad_requests(void) {
    server_proc s;
    if (!start_server(&s, FIXTURE_MODEL, "--threads 2 --timeout 3")) return;
    http_reply r;

    CHECK(http_request(s.port, "GET", "/", NULL, NULL, 0, &r) == 0);
    CHECKF(r.status == 200 && has_type(&r, "text/html") && strstr(r.body, "<canvas"), "GET /: %d %s", r.status,
           r.head);
    http_reply_free(&r);

    CHECK(http_request(s.port, "POST", "/predict", "image/png", "", 0, &r) == 0);
    check_error("empty body", &r, 400, "empty body");
    http_reply_free(&r);
    CHECK(http_request(s.port, "POST", "/predict", "image/png", NULL, 0, &r) == 0);
    check_error("no body at all", &r, 400, "empty body");
    http_reply_free(&r);
    const char *text = "{\"digit\": 7}";
    CHECK(http_request(s.port, "POST", "/predict", "image/png", text, strlen(text), &r) == 0);
    check_error("text body", &r, 400, "not a PNG or PGM image");
    http_reply_free(&r);

    size_t len;
    char *png = read_whole(IMAGES "7_gray_dark_on_light.png", &len);
    CHECK(png != NULL);
    if (png) {
        CHECK(http_request(s.port, "POST", "/predict", "image/png", png, len / 2, &r) == 0);
        check_error("truncated PNG", &r, 400, "truncated");
        http_reply_free(&r);
        free(png);
    }
    unsigned char big[128];
    size_t n = huge_png(big, 100000, 100000);
    CHECK(http_request(s.port, "POST", "/predict", "image/png", big, n, &r) == 0);
    check_error("PNG claiming 100000x100000", &r, 400, "too large");
    http_reply_free(&r);
    /* nn predict would decode 3000x3000; the server's bound is smaller. */
    n = huge_png(big, 3000, 3000);
    CHECK(http_request(s.port, "POST", "/predict", "image/png", big, n, &r) == 0);
    check_error("PNG claiming 3000x3000", &r, 400, "too large");
    http_reply_free(&r);
    const char *pgm = "P5\n60000 60000\n255\n";
    CHECK(http_request(s.port, "POST", "/predict", "image/x-portable-graymap", pgm, strlen(pgm), &r) == 0);
    check_error("PGM claiming 60000x60000", &r, 400, "too large");
    http_reply_free(&r);
    const char *blank = "P2\n2 2\n255\n7 7 7 7\n";
    CHECK(http_request(s.port, "POST", "/predict", "image/x-portable-graymap", blank, strlen(blank), &r) == 0);
    check_error("blank image", &r, 400, "blank");
    http_reply_free(&r);

    /* Over the limit: refused from the Content-Length alone, at once (not
     * after the 3 s timeout), and no byte of the body is awaited. */
    const char *huge = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 9000000\r\n\r\n";
    double secs = 99;
    CHECK(raw_exchange(s.port, huge, strlen(huge), &r, &secs) == 0);
    check_error("9 MB body", &r, 413, "too large");
    CHECKF(secs < 1.5, "the 413 took %.2f s", secs);
    CHECKF(r.closed, "the connection should close after a 413");
    http_reply_free(&r);
    const char *chunked = "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    CHECK(raw_exchange(s.port, chunked, strlen(chunked), &r, NULL) == 0);
    check_error("chunked body", &r, 411, "Content-Length");
    http_reply_free(&r);

    CHECK(http_request(s.port, "GET", "/nope", NULL, NULL, 0, &r) == 0);
    check_error("unknown path", &r, 404, "/nope");
    http_reply_free(&r);
    /* The language model's route says where an image goes instead. */
    CHECK(http_request(s.port, "POST", "/generate", "application/json", "{}", 2, &r) == 0);
    check_error("POST /generate to an image model", &r, 404, "POST an image to /predict");
    http_reply_free(&r);
    CHECK(http_request(s.port, "GET", "/model", NULL, NULL, 0, &r) == 0);
    CHECKF(r.status == 200 && has_type(&r, "application/json") && strstr(r.body, "\"kind\":\"image classifier\"") &&
               strstr(r.body, "\"classes\":10"),
           "GET /model: %d %s", r.status, r.body);
    http_reply_free(&r);
    CHECK(http_request(s.port, "POST", "/predict/x", "image/png", "abc", 3, &r) == 0);
    check_error("path under /predict", &r, 404, "no such path");
    http_reply_free(&r);
    CHECK(http_request(s.port, "GET", "/%00x", NULL, NULL, 0, &r) == 0); /* unescaped, it would read "/" */
    check_error("escaped NUL", &r, 404, "/%00x");
    http_reply_free(&r);
    char allow[64];
    CHECK(http_request(s.port, "GET", "/predict", NULL, NULL, 0, &r) == 0);
    check_error("GET /predict", &r, 405, "POST");
    CHECK(http_header(&r, "Allow", allow, sizeof allow) && strcmp(allow, "POST") == 0);
    http_reply_free(&r);
    CHECK(http_request(s.port, "DELETE", "/", NULL, NULL, 0, &r) == 0);
    check_error("DELETE /", &r, 405, "not allowed");
    http_reply_free(&r);

    /* Garbage instead of HTTP: MHD answers 400 or hangs up; either way the
     * server lives on. */
    const char *junk = "this is not\x01 http\r\n\r\n";
    raw_exchange(s.port, junk, strlen(junk), &r, NULL);
    CHECKF(r.status == 0 || (r.status >= 400 && r.status < 500), "junk got status %d", r.status);
    http_reply_free(&r);

    /* Still up, still right. */
    CHECK(still_running(&s));
    CHECK(post_file(s.port, IMAGES "0_light_on_dark.pgm", "image/x-portable-graymap", &r) == 0);
    prediction p;
    parse_prediction("after the bad requests", &r, &p);
    http_reply_free(&r);
    CHECK(stop_server(&s) == 0);

    /* One log line per request, with method, path, status, bytes and time. */
    char *log = read_whole(s.log, &len);
    CHECK(log != NULL);
    if (log) {
        CHECKF(strstr(log, "nn serve: GET / 200 ") && strstr(log, "POST /predict 413 ") &&
                   strstr(log, "GET /nope 404 ") && strstr(log, "POST /predict 200 ") && strstr(log, " ms"),
               "log:\n%s", log);
        int lines = 0;
        for (char *q = log; (q = strstr(q, " bytes ")); q++) lines++;
        CHECKF(lines >= 19, "%d request lines in the log for 19 requests:\n%s", lines, log);
        free(log);
    }
}

/* A client that stops sending mid-request is dropped after --timeout while
 * the others are served. */
static void test_slow_client(void) {
    server_proc s;
    if (!start_server(&s, FIXTURE_MODEL, "--threads 1 --timeout 1")) return;
    int slow = http_connect(s.port, 10);
    const char *part = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc";
    CHECK(slow >= 0 && http_send_all(slow, part, strlen(part)) == 0);
    /* One thread only, and yet another client gets its answer meanwhile. */
    http_reply r;
    double t0 = nn_seconds();
    CHECK(http_request(s.port, "GET", "/", NULL, NULL, 0, &r) == 0 && r.status == 200);
    CHECKF(nn_seconds() - t0 < 0.9, "GET / waited %.2f s behind the slow client", nn_seconds() - t0);
    http_reply_free(&r);
    char buf[256];
    ssize_t got = slow >= 0 ? recv(slow, buf, sizeof buf, 0) : 1;
    double waited = nn_seconds() - t0;
    CHECKF(got <= 0 && waited > 0.5 && waited < 5, "slow client: recv %zd after %.2f s (timeout 1 s)", got, waited);
    if (slow >= 0) close(slow);
    CHECK(still_running(&s));
    CHECK(stop_server_with(&s, SIGINT) == 0); /* Ctrl-C stops it as cleanly as SIGTERM */
    size_t len;
    char *log = read_whole(s.log, &len);
    CHECKF(log && strstr(log, "timed out"), "the log should say a request timed out:\n%s", log ? log : "");
    free(log);
}

/* ---- concurrency --------------------------------------------------------- */

#define CLIENTS 8
#define REQUESTS 25

typedef struct {
    int port, id, answered;
    const char *const *bodies;
    const size_t *lens;
    const char *const *expect; /* the reply each body got alone */
} client_job;

static void *client(void *arg) {
    client_job *job = arg;
    for (int i = 0; i < REQUESTS; i++) {
        int k = (job->id + i) % N_IMAGES;
        http_reply r;
        if (http_request(job->port, "POST", "/predict", type_of(fixture_images[k]), job->bodies[k], job->lens[k], &r) == 0 &&
            r.status == 200 && strcmp(r.body, job->expect[k]) == 0)
            job->answered++;
        http_reply_free(&r);
    }
    return NULL;
}

static void test_concurrent_clients(void) {
    /* A model big enough for requests to overlap in it (a few per thread at
     * once), when there is data to train it. */
    bool data = access("data/mnist/train-images-idx3-ubyte", R_OK) == 0 ||
                access("data/mnist/train-images-idx3-ubyte.gz", R_OK) == 0;
    const char *model = data ? trained("mlp", MLP_ARGS) : FIXTURE_MODEL;
    server_proc s;
    if (!model || !start_server(&s, model, "--threads 4")) return;
    char *bodies[N_IMAGES], *expect[N_IMAGES];
    size_t lens[N_IMAGES];
    for (int k = 0; k < N_IMAGES; k++) {
        bodies[k] = read_whole(fixture_images[k], &lens[k]);
        http_reply r;
        CHECK(bodies[k] && http_request(s.port, "POST", "/predict", type_of(fixture_images[k]), bodies[k], lens[k], &r) == 0);
        prediction p;
        parse_prediction(fixture_images[k], &r, &p);
        expect[k] = r.body; /* kept */
    }
    client_job jobs[CLIENTS];
    pthread_t threads[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        jobs[c] = (client_job){s.port, c, 0, (const char *const *)bodies, lens, (const char *const *)expect};
        pthread_create(&threads[c], NULL, client, &jobs[c]);
    }
    int answered = 0;
    for (int c = 0; c < CLIENTS; c++) {
        pthread_join(threads[c], NULL);
        answered += jobs[c].answered;
    }
    /* Every reply is byte for byte the one the same image got alone. */
    CHECKF(answered == CLIENTS * REQUESTS, "%d of %d concurrent requests answered correctly", answered,
           CLIENTS * REQUESTS);
    for (int k = 0; k < N_IMAGES; k++) {
        free(bodies[k]);
        free(expect[k]);
    }
    CHECK(stop_server(&s) == 0);
}

/* ---- the command line ---------------------------------------------------- */

static void test_usage_errors(void) {
    CHECK(nn("serve") == 2 && strstr(err_text, "--model FILE is required"));
    CHECK(nn("serve --model") == 2 && strstr(err_text, "--model needs a value"));
    CHECK(nn("serve --model %s --port", FIXTURE_MODEL) == 2 && strstr(err_text, "--port needs a value"));
    CHECK(nn("serve --model %s --port 70000", FIXTURE_MODEL) == 2 && strstr(err_text, "--port"));
    CHECK(nn("serve --model %s --threads 0", FIXTURE_MODEL) == 2 && strstr(err_text, "--threads"));
    CHECK(nn("serve --model %s --colour red", FIXTURE_MODEL) == 2 && strstr(err_text, "unknown option '--colour'"));
    CHECK(nn("serve --model %s extra", FIXTURE_MODEL) == 2 && strstr(err_text, "unexpected argument 'extra'"));
    CHECK(nn("serve --help") == 0 && strstr(out_text, "/predict") && strstr(out_text, "/generate"));
    CHECK(nn("--help") == 0 && strstr(out_text, "serve"));

    CHECK(nn("serve --model %s", tmp("missing.safetensors")) == 1 && one_line_error("missing.safetensors"));
    CHECK(nn("serve --model %s --host no-such-host.invalid --port 0", FIXTURE_MODEL) == 1 &&
          one_line_error("no-such-host.invalid"));
    /* A port already taken says so. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(fd, 1) == 0 &&
          getsockname(fd, (struct sockaddr *)&addr, &alen) == 0);
    CHECKF(nn("serve --model %s --port %d", FIXTURE_MODEL, ntohs(addr.sin_port)) == 1 && one_line_error("in use"),
           "%s", err_text);
    close(fd);
}

/* ---- the page in a real browser ------------------------------------------ */

/* Draws a 1, a 0 and a 7 on the page with the mouse and a 1 with a finger
 * (tests/browser/draw.mjs) and reads each answer off the page; the page must
 * show what /predict gives for the very PNG it drew. */
static void test_browser_draws_digits(void) {
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
    if (!have_mnist()) return;
    const char *model = trained("mlp", MLP_ARGS);
    server_proc s;
    if (!model || !start_server(&s, model, "--threads 2")) return;
    const char *shot = getenv("NN_SCREENSHOT") ? getenv("NN_SCREENSHOT") : tmp("page.png");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 120 node tests/browser/draw.mjs http://127.0.0.1:%d/ %s %s >%s 2>%s", s.port,
             tmp("drawn"), shot, tmp("browser.json"), tmp("browser.err"));
    int rc = system(cmd);
    size_t len;
    char *out = read_whole(tmp("browser.json"), &len), *err = read_whole(tmp("browser.err"), &len);
    CHECKF(rc == 0, "draw.mjs failed (%d): %s", rc, err ? err : "");
    cJSON *json = cJSON_Parse(out ? out : "");
    CHECKF(cJSON_IsArray(json) && cJSON_GetArraySize(json) == 4, "draw.mjs printed %s", out ? out : "nothing");
    const char *names[4] = {"1", "0", "7", "1 (touch)"};
    for (int i = 0; cJSON_IsArray(json) && i < cJSON_GetArraySize(json) && i < 4; i++) {
        const cJSON *d = cJSON_GetArrayItem(json, i);
        const cJSON *shown = cJSON_GetObjectItemCaseSensitive(d, "digit");
        const cJSON *percent = cJSON_GetObjectItemCaseSensitive(d, "percent_sum");
        const cJSON *seen = cJSON_GetObjectItemCaseSensitive(d, "seen_ink");
        CHECKF(cJSON_IsString(shown) && strlen(shown->valuestring) == 1, "drawing %s: page shows no digit", names[i]);
        if (!cJSON_IsString(shown)) continue;
        int page_digit = shown->valuestring[0] - '0';
        /* The bars show all ten probabilities (rounded to 0.1%) and the
         * 28x28 view has ink in it. */
        CHECKF(cJSON_IsNumber(percent) && fabs(percent->valuedouble - 100) < 0.6, "drawing %s: bars sum to %g%%",
               names[i], cJSON_IsNumber(percent) ? percent->valuedouble : -1);
        CHECKF(cJSON_IsNumber(seen) && seen->valuedouble > 0, "drawing %s: the model's view is empty", names[i]);
        char png[256];
        snprintf(png, sizeof png, "%s%d.png", tmp("drawn"), i);
        http_reply r;
        prediction p;
        CHECK(post_file(s.port, png, "image/png", &r) == 0);
        if (parse_prediction(png, &r, &p))
            CHECKF(p.digit == page_digit, "drawing %s: the page shows %d, /predict on its PNG says %d", names[i],
                   page_digit, p.digit);
        http_reply_free(&r);
        /* The 1 and the 0 are unmistakable even to a small MLP; the 7 is
         * reported, not required. */
        if (i != 2) CHECKF(page_digit == names[i][0] - '0', "drew a %s, the page read %d", names[i], page_digit);
        else fprintf(stderr, "note: drew a 7, the page read %d\n", page_digit);
    }
    cJSON_Delete(json);
    free(out);
    free(err);
    CHECK(stop_server(&s) == 0);
}

TEST_MAIN(TEST(test_usage_errors), TEST(test_bad_requests), TEST(test_slow_client), TEST(test_concurrent_clients),
          TEST(test_predict_matches_cli_mlp), TEST(test_predict_matches_cli_cnn), TEST(test_browser_draws_digits))
