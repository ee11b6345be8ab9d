/* nn serve: a local web page to draw digits on, and POST /predict. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "flags.h"
#include "nn/error.h"
#include "nn/model.h"
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
    "\n";
static const char *const epilogue =
    "\nPrints the address to open, logs one line per request on stderr, and stops\n"
    "on Ctrl-C or SIGTERM. Bodies over 8 MiB and images over 2048x2048 pixels\n"
    "are refused.\n";

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1";
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int port = 8080, threads = cores < 1 ? 1 : cores > 256 ? 256 : (int)cores, timeout = SERVE_DEFAULT_TIMEOUT_S;
    flag table[] = {
        {"model", FLAG_STRING, &model_path, .metavar = "FILE", .def = "required", .help = "the checkpoint"},
        {"host", FLAG_STRING, &host, .metavar = "ADDR", .help = "the address to listen on; the default is this machine only"},
        {"port", FLAG_INT, &port, 0, 65535, .metavar = "N", .help = "the port, 0 for any free one"},
        {"threads", FLAG_INT, &threads, 1, 256, .metavar = "N", .def = "all cores",
         .help = "connection threads, each classifying on one core"},
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

    nn_model model;
    if (nn_model_load(&model, model_path) != 0) return runtime_error();
    if (model.in_shape[0] != 1 || model.in_shape[1] != 28 || model.in_shape[2] != 28) {
        nn_error("%s: model takes [%d, %d, %d] inputs, serve needs a 28x28 model", model_path, model.in_shape[0],
                 model.in_shape[1], model.in_shape[2]);
        nn_model_free(&model);
        return runtime_error();
    }

    serve_config cfg = {.host = host, .port = port, .threads = threads, .timeout_s = (unsigned)timeout, .log = stderr};
    server *s = server_start(&model, &cfg);
    if (!s) {
        nn_model_free(&model);
        return runtime_error();
    }
    bool ipv6 = strchr(host, ':') != NULL;
    printf("nn serve: %s on http://%s%s%s:%d/ (Ctrl-C stops)\n", model_path, ipv6 ? "[" : "", host, ipv6 ? "]" : "",
           server_port(s));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "nn serve: %s, stopping\n", sig == SIGINT ? "interrupted" : "terminated");
    server_stop(s);
    nn_model_free(&model);
    return 0;
}
