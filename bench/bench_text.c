/* Recurrent models' speed benchmark (nn's side; bench/torch_text.py is
 * PyTorch's), each configuration through the library's own trainer or
 * generator, as `nn train` and `nn generate` run them:
 *
 *   charlstm  embed(64) lstm(256) linear(65) on data/tinyshakespeare: random
 *             windows of 64 characters, batch 32, Adam lr 2e-3, clip 1
 *             (nn_train_lm); training tokens per second
 *   namesgru  embed(32) gru(128) last linear(18) on data/names-by-language:
 *             shuffled batches of 64 names padded to the batch's longest,
 *             Adam lr 3e-3, clip 1 (nn_train_classify_text); training names
 *             per second
 *   generate  the char-LSTM (freshly initialised: the speed does not depend
 *             on the weights) writing at batch 1 from a line break,
 *             temperature 1, the recurrent state carried from character to
 *             character (nn_generate); characters per second
 *   gpt       nanoGPT's CPU recipe on data/tinyshakespeare: embed(128)
 *             posembed, 4 pre-LayerNorm blocks of causal attention(4) and an
 *             MLP 128-512-128 with GELU, no biases, a final layernorm and the
 *             tied unembed; random windows of 64 characters, batch 12, AdamW
 *             lr 1e-3 betas (0.9, 0.99) wd 0.1, clip 1 (nn_train_lm);
 *             training tokens per second
 *   gptgen    that GPT (freshly initialised) writing at batch 1, temperature
 *             1, with the KV cache (nn_generate): samples of a whole context
 *             each, a line break and the 63 characters after it, one after
 *             the other, so that every character is one row through the
 *             model against the cached keys and values (past the context a
 *             character costs a forward over the window, as in nanoGPT);
 *             characters per second
 *   peak      OpenBLAS's sgemm 1024^3 on 2 threads and on 1
 *
 * nn's one setting is its thread count: each configuration runs at every
 * core (OpenMP's count, nn's default) and on one thread, as PyTorch's side
 * runs at each of its settings. Its lines carry the setting
 * (<config>.t2.per_sec ...), then <config>.per_sec, .fastest_per_sec and
 * .threads give the best setting's (by median run; the fastest run's best
 * on its own). On a machine whose cores other jobs share, a team of two
 * waits at every OpenMP barrier for a thread the kernel has put aside, and
 * one thread wins (docs/PERFORMANCE.md, "Recurrent models").
 *
 * Each configuration runs in a child process (its peak RSS is its own). A
 * warm-up (10 steps, 20 steps, 200 characters) is not timed; then RUNS
 * timed runs of STEPS steps (characters) each, timed from the trainer's
 * progress callback (the generator's token callback), so a run is the
 * training steps alone: the names run leaves out the step that follows an
 * epoch's validation, and the language model's only validation comes after
 * its last step. Prints one "key value" line per measurement:
 * <config>.per_sec (median run) and .fastest_per_sec (the least disturbed
 * run), with the unit in <config>.unit.
 *
 *   build/bench/bench_text [--lm-steps N] [--names-steps N] [--gen-chars N]
 *                          [--runs R] [--threads T] [CONFIG...]
 *       defaults: 100, 300, 2000 per run, 2 runs, every core and one
 *       thread (--threads T: T only), peak charlstm namesgru generate gpt
 *       gptgen
 *
 * FLOPs counted for the char-LSTM (per token, matrix products only, 2 per
 * multiply-add): forward D*4H (input projection) + H*4H (recurrence) + H*V
 * (output layer), times 3 in training (forward, weight gradient, input
 * gradient). For the GPT, per token and layer 12 D^2 (the QKV projection
 * 3 D^2, the output projection D^2, the MLP 8 D^2) plus D V for the tied
 * output, and attention's two products over the (T + 1) / 2 keys a causal
 * query sees on average, 2 D (T + 1) / 2; times 3 in training. */
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "core/util.h"
#include "nn/model.h"
#include "nn/text.h"
#include "nn/train.h"

enum { LM_WARMUP = 10, NAMES_WARMUP = 20, GEN_WARMUP = 200 };
enum { LM_BATCH = 32, LM_CONTEXT = 64, LM_EMBED = 64, LM_HIDDEN = 256, NAMES_BATCH = 64 };
enum { GPT_BATCH = 12, GPT_CONTEXT = 64, GPT_WIDTH = 128, GPT_LAYERS = 4, GPT_HEADS = 4 };

/* nanoGPT's CPU recipe as a spec (bias=False there: no biases here). */
static void gpt_spec(char *spec, size_t size) {
    snprintf(spec, size,
             "embed(%d) posembed repeat(%d, residual(layernorm attention(%d,bias=0)) residual(layernorm "
             "linear(%d,bias=0) gelu linear(%d,bias=0))) layernorm unembed",
             GPT_WIDTH, GPT_LAYERS, GPT_HEADS, 4 * GPT_WIDTH, GPT_WIDTH);
}

static int lm_steps = 100, names_steps = 300, gen_chars = 2000, runs = 2, threads = 0;

/* What a configuration's child measured at one setting, for the parent's
 * choice of the best (memory shared with the child). */
typedef struct result {
    double per_sec, fastest, step_ms, gflops;
    bool has_step_ms, has_gflops;
} result;
static result *shared; /* the current child's */
static char tag[32];   /* the setting in the child's keys: "t2" */

/* Each training step's (or generated token's) end time, filled by the
 * callbacks; stop is raised after the last step wanted. */
typedef struct step_log {
    double *t;       /* [last + 1]: t[k] when step k ended */
    bool *after_val; /* [last + 1]: step k followed an epoch's validation */
    int *items;      /* [last + 1]: sequences in step k */
    long last, made;            /* generate: tokens made so far */
    const nn_text_split *split; /* names: for the epoch's last, partial batch */
    volatile sig_atomic_t stop;
} step_log;

static void log_init(step_log *g, long last) {
    *g = (step_log){.last = last};
    g->t = nn_xcalloc((size_t)last + 1, sizeof *g->t);
    g->after_val = nn_xcalloc((size_t)last + 1, sizeof *g->after_val);
    g->items = nn_xcalloc((size_t)last + 1, sizeof *g->items);
}

static void log_free(step_log *g) {
    free(g->t);
    free(g->after_val);
    free(g->items);
}

static void on_step(void *user, const nn_train_progress *p) {
    step_log *g = user;
    if (p->step > g->last) return;
    g->t[p->step] = nn_seconds();
    g->after_val[p->step] = p->batch == 1 && p->epoch > 1;
    if (g->split) { /* the batcher's last batch of an epoch holds what is left */
        g->items[p->step] = p->batch < p->batches ? NAMES_BATCH
                                                  : g->split->n_seqs - (int)(p->batches - 1) * NAMES_BATCH;
    }
    if (p->step == g->last) g->stop = 1;
}

static int on_token(void *user, int id) {
    (void)id;
    step_log *g = user;
    if (++g->made <= g->last) g->t[g->made] = nn_seconds();
    return 0;
}

/* Items per second of timed run r (steps warmup + r*steps + 1 ..
 * warmup + (r+1)*steps), each step counting per_step items, or g->items when
 * per_step is 0; a step that followed a validation is left out. */
static double run_rate(const step_log *g, long warmup, long steps, int r, double per_step) {
    double seconds = 0.0, items = 0.0;
    for (long k = warmup + (long)r * steps + 1; k <= warmup + (long)(r + 1) * steps; k++) {
        if (g->after_val[k]) continue;
        seconds += g->t[k] - g->t[k - 1];
        items += per_step > 0 ? per_step : g->items[k];
    }
    return items / seconds;
}

/* The rates of the timed runs: median and fastest, as <name>.per_sec lines. */
static double report_runs(const char *name, const char *unit, const step_log *g, long warmup, long steps,
                          double per_step) {
    double rate[64], fastest = 0.0;
    int n = runs < 64 ? runs : 64;
    for (int r = 0; r < n; r++) {
        rate[r] = run_rate(g, warmup, steps, r, per_step);
        fastest = rate[r] > fastest ? rate[r] : fastest;
    }
    double med = median(rate, n);
    printf("%s.%s.threads %d\n", name, tag, omp_get_max_threads());
    printf("%s.%s.per_sec %.0f\n", name, tag, med);
    printf("%s.%s.fastest_per_sec %.0f\n", name, tag, fastest);
    shared->per_sec = med;
    shared->fastest = fastest;
    (void)unit;
    return med;
}

static void set_threads(void) {
    if (threads <= 0) return;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

static int load(nn_text *t, const char *path) {
    if (nn_text_load(t, path, NN_TEXT_AUTO, 1, NULL) == 0) return 0;
    fprintf(stderr, "bench_text: %s (make data DATASET=%s)\n", nn_last_error(), path + strlen("data/"));
    return -1;
}

static nn_train_config adam(float lr, int batch) {
    nn_train_config cfg = nn_train_config_defaults();
    cfg.opt = nn_optim_defaults(NN_OPT_ADAM);
    cfg.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = lr};
    cfg.clip = 1.0f;
    cfg.batch_size = batch;
    cfg.seed = 1;
    cfg.on_progress = on_step;
    return cfg;
}

/* A language model's timed training: cfg (optimiser, batch) trains `spec`
 * on windows of `context` for the warm-up and the timed runs, with one
 * validation after the last step; prints <name>.* with the GFLOP/s of
 * flops_per_token. Frees t. */
static int lm_run(const char *name, nn_train_config cfg, const char *spec, int context, nn_text *t,
                  double flops_per_token) {
    step_log g;
    log_init(&g, LM_WARMUP + (long)runs * lm_steps);
    cfg.spec = spec;
    cfg.context = context;
    cfg.steps = g.last;
    cfg.eval_every = (int)g.last; /* one validation, after the last step */
    cfg.eval_windows = 1;
    cfg.user = &g;
    nn_model m;
    nn_lm_history h;
    int rc = 0;
    if (nn_train_lm(&cfg, t, &m, &h) < 0) {
        fprintf(stderr, "bench_text: %s: %s\n", name, nn_last_error());
        rc = 1;
    } else {
        double per_step = (double)cfg.batch_size * context;
        double tps = report_runs(name, "tokens", &g, LM_WARMUP, lm_steps, per_step);
        *shared = (result){.per_sec = shared->per_sec, .fastest = shared->fastest, .step_ms = 1e3 * per_step / tps,
                           .gflops = flops_per_token * tps / 1e9, .has_step_ms = true, .has_gflops = true};
        printf("%s.%s.step_ms %.2f\n", name, tag, shared->step_ms);
        printf("%s.train_mflop_per_token %.3f\n", name, flops_per_token / 1e6);
        printf("%s.%s.gflops %.1f\n", name, tag, shared->gflops);
        printf("%s.%s.train_loss %.4f\n", name, tag, h.evals[h.n - 1].train_loss);
        fflush(stdout);
        nn_lm_history_free(&h);
        nn_model_free(&m);
    }
    log_free(&g);
    nn_text_free(t);
    return rc;
}

static int charlstm(const void *unused) {
    (void)unused;
    set_threads();
    nn_text t;
    if (load(&t, "data/tinyshakespeare") != 0) return 1;
    int V = t.vocab.size;
    char spec[96];
    snprintf(spec, sizeof spec, "embed(%d) lstm(%d) linear(%d)", LM_EMBED, LM_HIDDEN, V);
    double flops = 6.0 * ((double)LM_EMBED * 4 * LM_HIDDEN + (double)LM_HIDDEN * 4 * LM_HIDDEN + (double)LM_HIDDEN * V);
    return lm_run("charlstm", adam(2e-3f, LM_BATCH), spec, LM_CONTEXT, &t, flops);
}

static int namesgru(const void *unused) {
    (void)unused;
    set_threads();
    nn_text t;
    if (load(&t, "data/names-by-language") != 0) return 1;
    char spec[96];
    snprintf(spec, sizeof spec, "embed(32) gru(128) last linear(%d)", t.n_classes);
    step_log g;
    log_init(&g, NAMES_WARMUP + (long)runs * names_steps);
    g.split = &t.train;
    nn_train_config cfg = adam(3e-3f, NAMES_BATCH);
    cfg.spec = spec;
    long per_epoch = (t.train.n_seqs + NAMES_BATCH - 1) / NAMES_BATCH;
    cfg.epochs = (int)((g.last + per_epoch - 1) / per_epoch);
    cfg.stop = &g.stop; /* after the last step wanted, within the last epoch */
    cfg.user = &g;
    nn_model m;
    nn_history h;
    nn_train_status rc = nn_train_classify_text(&cfg, &t, &m, &h);
    if (rc < 0 && rc != NN_TRAIN_INTERRUPTED) {
        fprintf(stderr, "bench_text: namesgru: %s\n", nn_last_error());
        return 1;
    }
    double nps = report_runs("namesgru", "names", &g, NAMES_WARMUP, names_steps, 0.0);
    shared->step_ms = 1e3 * NAMES_BATCH / nps;
    shared->has_step_ms = true;
    printf("namesgru.%s.step_ms %.2f\n", tag, shared->step_ms);
    fflush(stdout);
    nn_history_free(&h);
    nn_model_free(&m);
    log_free(&g);
    nn_text_free(&t);
    return 0;
}

static int generate(const void *unused) {
    (void)unused;
    set_threads();
    nn_text t;
    if (load(&t, "data/tinyshakespeare") != 0) return 1;
    char spec[96];
    snprintf(spec, sizeof spec, "embed(%d) lstm(%d) linear(%d)", LM_EMBED, LM_HIDDEN, t.vocab.size);
    nn_model m = {0};
    if (nn_model_plan_text(&m, spec, t.vocab.size, t.vocab.size) != 0) {
        fprintf(stderr, "bench_text: generate: %s\n", nn_last_error());
        return 1;
    }
    nn_rng rng;
    nn_rng_seed(&rng, 1, 1);
    nn_model_build(&m, &rng);
    step_log g;
    log_init(&g, GEN_WARMUP + (long)runs * gen_chars);
    int start = nn_vocab_id(&t.vocab, '\n');
    g.t[0] = nn_seconds();
    nn_generate(&m, &start, 1, (int)g.last, 1.0f, 0, &rng, on_token, &g);
    report_runs("generate", "chars", &g, GEN_WARMUP, gen_chars, 1.0);
    fflush(stdout);
    nn_model_free(&m);
    log_free(&g);
    nn_text_free(&t);
    return 0;
}

static int gpt(const void *unused) {
    (void)unused;
    set_threads();
    nn_text t;
    if (load(&t, "data/tinyshakespeare") != 0) return 1;
    char spec[256];
    gpt_spec(spec, sizeof spec);
    nn_train_config cfg = nn_train_config_defaults();
    cfg.opt = nn_optim_defaults(NN_OPT_ADAMW);
    cfg.opt.beta2 = 0.99f;
    cfg.opt.weight_decay = 0.1f;
    cfg.sched = (nn_schedule){.kind = NN_SCHED_CONST, .base_lr = 1e-3f};
    cfg.clip = 1.0f;
    cfg.batch_size = GPT_BATCH;
    cfg.seed = 1;
    cfg.on_progress = on_step;
    double D = GPT_WIDTH;
    double flops =
        3.0 * (GPT_LAYERS * (2 * 12 * D * D + 2 * 2 * D * (GPT_CONTEXT + 1) / 2.0) + 2 * D * t.vocab.size);
    return lm_run("gpt", cfg, spec, GPT_CONTEXT, &t, flops);
}

static int gptgen(const void *unused) {
    (void)unused;
    set_threads();
    nn_text t;
    if (load(&t, "data/tinyshakespeare") != 0) return 1;
    char spec[256];
    gpt_spec(spec, sizeof spec);
    nn_model m = {0};
    if (nn_model_plan_text_context(&m, spec, t.vocab.size, t.vocab.size, GPT_CONTEXT) != 0) {
        fprintf(stderr, "bench_text: gptgen: %s\n", nn_last_error());
        return 1;
    }
    nn_rng rng;
    nn_rng_seed(&rng, 1, 1);
    nn_model_build(&m, &rng);
    step_log g;
    log_init(&g, GEN_WARMUP + (long)runs * gen_chars);
    int start = nn_vocab_id(&t.vocab, '\n');
    g.t[0] = nn_seconds();
    while (g.made < g.last) {
        long left = g.last - g.made;
        nn_generate(&m, &start, 1, left < GPT_CONTEXT - 1 ? (int)left : GPT_CONTEXT - 1, 1.0f, 0, &rng, on_token, &g);
    }
    report_runs("gptgen", "chars", &g, GEN_WARMUP, gen_chars, 1.0);
    fflush(stdout);
    nn_model_free(&m);
    log_free(&g);
    nn_text_free(&t);
    return 0;
}

static int peak(const void *unused) {
    (void)unused;
    printf("sgemm.kernels %s\n", openblas_get_corename()); /* OPENBLAS_CORETYPE or OpenBLAS's own pick */
    printf("sgemm.peak_gflops %.1f\n", bench_sgemm_peak(2));
    printf("sgemm.peak_gflops_1thread %.1f\n", bench_sgemm_peak(1));
    fflush(stdout); /* the child leaves by _exit */
    return 0;
}

typedef struct config {
    const char *name;
    int (*run)(const void *);
    const char *unit;
} config;

static const config configs[] = {
    {"peak", peak, NULL}, {"charlstm", charlstm, "tokens"}, {"namesgru", namesgru, "names"}, {"generate", generate, "chars"},
    {"gpt", gpt, "tokens"}, {"gptgen", gptgen, "chars"}};
#define N_CONFIGS (int)(sizeof configs / sizeof configs[0])

static int usage(void) {
    fprintf(stderr, "usage: bench_text [--lm-steps N] [--names-steps N] [--gen-chars N] [--runs R] [--threads T] "
                    "[peak|charlstm|namesgru|generate|gpt|gptgen...]\n");
    return 2;
}

int main(int argc, char **argv) {
    struct {
        const char *flag;
        int *value;
    } flags[] = {{"--lm-steps", &lm_steps}, {"--names-steps", &names_steps}, {"--gen-chars", &gen_chars},
                 {"--runs", &runs}, {"--threads", &threads}};
    const config *run[16];
    int n_run = 0;
    for (int a = 1; a < argc; a++) {
        size_t f = 0;
        while (f < sizeof flags / sizeof *flags && strcmp(argv[a], flags[f].flag) != 0) f++;
        if (f < sizeof flags / sizeof *flags) {
            if (a + 1 == argc || (*flags[f].value = atoi(argv[++a])) < 1) return usage();
            continue;
        }
        int k = 0;
        while (k < N_CONFIGS && strcmp(argv[a], configs[k].name) != 0) k++;
        if (k == N_CONFIGS || n_run == 16) return usage();
        run[n_run++] = &configs[k];
    }
    if (runs > 64) return usage();
    if (n_run == 0)
        for (int k = 0; k < N_CONFIGS; k++) run[n_run++] = &configs[k];
    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return 1;
    /* the settings: every core (nn's default) and one thread, or --threads */
    int all = omp_get_max_threads(), settings[2] = {threads > 0 ? threads : all, 1};
    int n_settings = threads > 0 || all == 1 ? 1 : 2;
    for (int c = 0; c < n_run; c++) {
        struct rusage ru;
        if (run[c]->run == peak) {
            if (bench_in_child(peak, NULL, &ru) != 0) return 1;
            continue;
        }
        result best = {0}, got;
        int best_threads = 0;
        double best_rss = 0.0, fastest = 0.0;
        for (int k = 0; k < n_settings; k++) {
            threads = settings[k];
            snprintf(tag, sizeof tag, "t%d", threads);
            *shared = (result){0};
            if (bench_in_child(run[c]->run, NULL, &ru) != 0) {
                fprintf(stderr, "bench_text: %s on %d threads failed\n", run[c]->name, threads);
                return 1;
            }
            got = *shared;
            printf("%s.%s.peak_rss_mb %.0f\n", run[c]->name, tag, ru.ru_maxrss / 1024.0);
            if (got.per_sec > best.per_sec) best = got, best_threads = threads, best_rss = ru.ru_maxrss / 1024.0;
            fastest = got.fastest > fastest ? got.fastest : fastest;
        }
        threads = n_settings == 1 ? threads : 0;
        /* the best setting's numbers, under the names report.py reads */
        printf("%s.unit %s\n", run[c]->name, run[c]->unit);
        printf("%s.threads %d\n", run[c]->name, best_threads);
        printf("%s.per_sec %.0f\n", run[c]->name, best.per_sec);
        printf("%s.fastest_per_sec %.0f\n", run[c]->name, fastest);
        if (best.has_step_ms) printf("%s.step_ms %.2f\n", run[c]->name, best.step_ms);
        if (best.has_gflops) printf("%s.gflops %.1f\n", run[c]->name, best.gflops);
        printf("%s.peak_rss_mb %.0f\n", run[c]->name, best_rss);
        fflush(stdout);
    }
    return 0;
}
