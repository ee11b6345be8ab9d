/* nn serve: a local web page to draw digits on, and POST /predict; for a
 * language model, a page to write with it, and POST /generate. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/model.h"
#include "nn/safetensors.h"
#include "nn/text.h"
#include "serve/server.h"

static const char *const usage_text =
    "usage: nn serve --model FILE.safetensors [--host ADDR] [--port N] [--threads N] [--timeout S]\n"
    "\n"
    "Serves a page to draw a digit on with the mouse or a finger: after each\n"
    "stroke it shows the model's probabilities and the 28x28 image the model\n"
    "actually sees (the drawing after MNIST preprocessing, as in 'nn predict').\n"
    "Programs can POST a PNG or PGM image to /predict and get JSON back:\n"
    "\n"
    "  curl --data-binary @digit.png http://127.0.0.1:8080/predict\n"
    "  {\"digit\":7,\"probabilities\":[10 numbers],\"input\":[784 numbers in 0..1]}\n"
    "\n"
    "For a language model (nn train on text), the page has a prompt box and\n"
    "shows the continuation as the model writes it. Programs POST JSON to\n"
    "/generate (every field optional, nn generate's defaults; the same seed\n"
    "gives the text nn generate writes):\n"
    "\n"
    "  curl -d '{\"prompt\": \"ROMEO:\", \"length\": 200, \"temperature\": 0.8,\n"
    "            \"top_k\": 0, \"seed\": 1}' http://127.0.0.1:8080/generate\n"
    "  {\"text\":\"the continuation\",\"prompt\":\"ROMEO:\",\"characters\":200,...}\n"
    "\n"
    "and with \"stream\": true get the continuation as plain text, sent as it is\n"
    "made. A text classifier is not served.\n"
    "\n";
static const char *const epilogue =
    "\nPrints the address to open, logs one line per request on stderr, and stops\n"
    "on Ctrl-C or SIGTERM. Bodies over 8 MiB and images over 2048x2048 pixels\n"
    "are refused; for text, bodies over 64 KiB, prompts over 4000 characters,\n"
    "lengths over 2000, and more than --threads generations at once.\n";

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1";
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int port = 8080, threads = cores < 1 ? 1 : cores > 256 ? 256 : (int)cores, timeout = SERVE_DEFAULT_TIMEOUT_S;
    flag table[] = {
        {"model", FLAG_STRING, &model_path, .metavar = "FILE", .def = "required", .help = "the checkpoint"},
        {"host", FLAG_STRING, &host, .metavar = "ADDR", .help = "the address to listen on; the default is this machine only"},
        {"port", FLAG_INT, &port, 0, 65535, .metavar = "N", .help = "the port, 0 for any free one"},
        {"threads", FLAG_INT, &threads, 1, 256, .metavar = "N", .def = "all cores",
         .help = "connection threads, each classifying (or generating) on one core"},
        {"timeout", FLAG_INT, &timeout, 1, 3600, .metavar = "S",
         .help = "close a connection idle or stalled for S seconds"},
        FLAG_END,
    };
    int status = flags_parse("serve", table, argc, argv, usage_text, epilogue, NULL);
    if (status >= 0) return status;
    if (!model_path) return usage_error("serve", "--model FILE is required");
    if (!*host) return usage_error("serve", "--host: the address is empty");

    /* Blocked before any thread exists (OpenMP's included), so every thread
     * inherits the mask: SIGINT and SIGTERM reach only the sigwait below,
     * and a client that hangs up never raises SIGPIPE. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    nn_safetensors st;
    if (nn_st_load(&st, model_path) != 0) return runtime_error();
    nn_model model = {0};
    nn_vocab vocab = {0};
    status = 0;
    if (nn_model_load_st(&model, &st, model_path) != 0) {
        status = runtime_error();
    } else if (model.vocab > 0) {
        /* Text: a language model scores every token of its vocabulary. */
        const char *v = nn_st_meta(&st, "nn.vocab");
        if (model.classes != model.vocab) {
            nn_error("%s: a text classifier (%d classes); serve takes a language model or an image classifier",
                     model_path, model.classes);
            status = runtime_error();
        } else if (!v) {
            nn_error("%s: a language model without its vocabulary (nn.vocab)", model_path);
            status = runtime_error();
        } else if (nn_vocab_parse(&vocab, v, model_path) != 0) {
            status = runtime_error();
        } else if (vocab.size != model.vocab) {
            nn_error("%s: the vocabulary has %d tokens but the model takes %d", model_path, vocab.size, model.vocab);
            status = runtime_error();
        }
    } else if (model.in_shape[0] != 1 || model.in_shape[1] != 28 || model.in_shape[2] != 28) {
        nn_error("%s: model takes [%d, %d, %d] inputs, serve needs a 28x28 model", model_path, model.in_shape[0],
                 model.in_shape[1], model.in_shape[2]);
        status = runtime_error();
    }
    nn_st_free(&st);
    serve_config cfg = {.host = host, .port = port, .threads = threads, .timeout_s = (unsigned)timeout, .log = stderr,
                        .vocab = vocab.size ? &vocab : NULL};
    server *s = status == 0 ? server_start(&model, &cfg) : NULL;
    if (!s) {
        if (status == 0) status = runtime_error();
        nn_vocab_free(&vocab);
        nn_model_free(&model);
        return status;
    }
    bool ipv6 = strchr(host, ':') != NULL;
    printf("nn serve: %s on http://%s%s%s:%d/ (Ctrl-C stops)\n", model_path, ipv6 ? "[" : "", host, ipv6 ? "]" : "",
           server_port(s));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "nn serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    server_stop(s);
    nn_vocab_free(&vocab);
    nn_model_free(&model);
    return 0;
}
