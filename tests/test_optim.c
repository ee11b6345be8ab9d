/* Optimisers and learning-rate schedules against their formulas: each
 * schedule's learning rate at every step; weight decay with a zero gradient
 * (AdamW: w *= 1 - lr*wd; SGD's L2: w -= lr*wd*w; Adam's L2 goes through the
 * moment normalisation); the decay mask leaves biases alone; and every
 * optimiser reaches the known minimum of a quadratic bowl and of a line fit.
 * (Step-for-step agreement with torch.optim is in test_torch_reference.) */
#include "check.h"
#include "nn/core.h"
#include "nn/optim.h"

/* ---- schedules --------------------------------------------------------------- */

/* The formulas of nn/optim.h, written out independently in double. */
static double expected_lr(const nn_schedule *s, long step) {
    if (step < s->warmup) return s->base_lr * (double)(step + 1) / (double)s->warmup;
    long t = step - s->warmup;
    switch (s->kind) {
    case NN_SCHED_CONST: return s->base_lr;
    case NN_SCHED_STEP: return s->base_lr * pow(s->gamma, (double)(t / s->step_size));
    case NN_SCHED_COSINE: {
        double frac = (double)t / (double)(s->total_steps - s->warmup);
        if (frac > 1.0) frac = 1.0;
        return s->min_lr + (s->base_lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * frac));
    }
    }
    return NAN;
}

static void check_schedule(const nn_schedule *s, long steps) {
    int bad = 0;
    for (long k = 0; k < steps; k++) {
        double want = expected_lr(s, k), got = nn_schedule_lr(s, k);
        if (fabs(got - want) > 1e-6 * fabs(s->base_lr) + 1e-9) {
            if (bad++ < 5)
                fprintf(stderr, "  %s schedule (warmup %ld): step %ld: lr %.9g, expected %.9g\n",
                        nn_schedule_name(s->kind), s->warmup, k, got, want);
        }
    }
    CHECKF(bad == 0, "%d of %ld steps off the formula", bad, steps);
}

static void test_schedule_const(void) {
    nn_schedule s = {.kind = NN_SCHED_CONST, .base_lr = 0.05f, .total_steps = 100};
    check_schedule(&s, 120);
    CHECK_NEAR(nn_schedule_lr(&s, 0), 0.05, 1e-9);
    CHECK_NEAR(nn_schedule_lr(&s, 99), 0.05, 1e-9);
}

static void test_schedule_warmup(void) {
    /* Linear from base_lr/warmup at step 0 to base_lr at step warmup - 1, then
     * the schedule proper starts from base_lr. */
    nn_schedule s = {.kind = NN_SCHED_CONST, .base_lr = 0.1f, .warmup = 10, .total_steps = 100};
    check_schedule(&s, 100);
    CHECK_NEAR(nn_schedule_lr(&s, 0), 0.01, 1e-7);
    CHECK_NEAR(nn_schedule_lr(&s, 4), 0.05, 1e-7);
    CHECK_NEAR(nn_schedule_lr(&s, 9), 0.1, 1e-7);
    CHECK_NEAR(nn_schedule_lr(&s, 10), 0.1, 1e-7);
    for (long k = 1; k < 10; k++) CHECK(nn_schedule_lr(&s, k) > nn_schedule_lr(&s, k - 1));
}

static void test_schedule_step(void) {
    nn_schedule s = {.kind = NN_SCHED_STEP, .base_lr = 0.1f, .step_size = 30, .gamma = 0.1f, .total_steps = 100};
    check_schedule(&s, 100);
    CHECK_NEAR(nn_schedule_lr(&s, 29), 0.1, 1e-8);
    CHECK_NEAR(nn_schedule_lr(&s, 30), 0.01, 1e-8);
    CHECK_NEAR(nn_schedule_lr(&s, 60), 0.001, 1e-9);
    CHECK_NEAR(nn_schedule_lr(&s, 90), 0.0001, 1e-10);
    /* with warm-up the steps count from its end */
    nn_schedule w = s;
    w.warmup = 5;
    w.gamma = 0.5f;
    check_schedule(&w, 100);
    CHECK_NEAR(nn_schedule_lr(&w, 34), 0.1, 1e-8);
    CHECK_NEAR(nn_schedule_lr(&w, 35), 0.05, 1e-8);
}

static void test_schedule_cosine(void) {
    nn_schedule s = {.kind = NN_SCHED_COSINE, .base_lr = 0.05f, .total_steps = 200};
    check_schedule(&s, 250);
    CHECK_NEAR(nn_schedule_lr(&s, 0), 0.05, 1e-8);
    CHECK_NEAR(nn_schedule_lr(&s, 100), 0.025, 1e-7);  /* halfway: half the rate */
    CHECK_NEAR(nn_schedule_lr(&s, 200), 0.0, 1e-9);    /* the end: the floor */
    CHECK_NEAR(nn_schedule_lr(&s, 1000), 0.0, 1e-9);   /* and it stays there */
    nn_schedule w = {.kind = NN_SCHED_COSINE, .base_lr = 1e-3f, .warmup = 50, .total_steps = 250, .min_lr = 1e-5f};
    check_schedule(&w, 300);
    CHECK_NEAR(nn_schedule_lr(&w, 49), 1e-3, 1e-9);
    CHECK_NEAR(nn_schedule_lr(&w, 50), 1e-3, 1e-9);
    CHECK_NEAR(nn_schedule_lr(&w, 150), 0.5 * (1e-3 + 1e-5), 1e-9);
    CHECK_NEAR(nn_schedule_lr(&w, 299), 1e-5, 1e-10);
    for (long k = 51; k < 250; k++) CHECK(nn_schedule_lr(&w, k) <= nn_schedule_lr(&w, k - 1));
}

static void test_schedule_names(void) {
    const char *names[] = {"const", "step", "cosine"};
    for (int i = 0; i < 3; i++) {
        nn_schedule_kind k;
        CHECK(nn_schedule_parse(names[i], &k) == 0);
        CHECK(strcmp(nn_schedule_name(k), names[i]) == 0);
    }
    nn_schedule_kind k;
    CHECK(nn_schedule_parse("linear", &k) != 0);
    const char *opts[] = {"sgd", "momentum", "nesterov", "adam", "adamw"};
    for (int i = 0; i < 5; i++) {
        nn_optim_kind o;
        CHECK(nn_optim_parse(opts[i], &o) == 0);
        CHECK(strcmp(nn_optim_name(o), opts[i]) == 0);
    }
    nn_optim_kind o;
    CHECK(nn_optim_parse("rmsprop", &o) != 0);
}

/* ---- weight decay -------------------------------------------------------------- */

/* A weight [2, 3] (decayed) and a bias [3] (not), with given values and zero
 * gradients. */
static void make_params(nn_params *p, nn_tensor **w, nn_tensor **b) {
    nn_params_init(p);
    *w = nn_params_add(p, "fc1.weight", 2, (int[]){2, 3}, true);
    *b = nn_params_add(p, "fc1.bias", 1, (int[]){3}, false);
    *w = nn_params_find(p, "fc1.weight");
    *b = nn_params_find(p, "fc1.bias");
    const float wv[6] = {1.0f, -2.0f, 0.5f, 3.0f, -0.25f, 4.0f}, bv[3] = {0.5f, -1.0f, 2.0f};
    memcpy((*w)->data, wv, sizeof wv);
    memcpy((*b)->data, bv, sizeof bv);
    nn_params_zero_grad(p);
}

/* With a zero gradient, `steps` updates must give w0 * factor^steps for the
 * decayed weight, and leave the bias exactly as it was. */
static void check_decay(nn_optim_kind kind, float lr, float wd, int steps, double factor) {
    nn_params p;
    nn_tensor *w, *b;
    make_params(&p, &w, &b);
    float w0[6], b0[3];
    memcpy(w0, w->data, sizeof w0);
    memcpy(b0, b->data, sizeof b0);
    nn_optim_config cfg = nn_optim_defaults(kind);
    cfg.weight_decay = wd;
    nn_optim o;
    nn_optim_init(&o, &p, &cfg);
    for (int s = 0; s < steps; s++) {
        nn_params_zero_grad(&p);
        nn_optim_step(&o, lr);
    }
    double f = pow(factor, steps);
    for (int i = 0; i < 6; i++) CHECK_NEAR(w->data[i], w0[i] * f, 1e-5 * fabs(w0[i]));
    for (int i = 0; i < 3; i++) CHECKF(b->data[i] == b0[i], "%s: bias %d moved: %g -> %g", nn_optim_name(kind), i,
                                       b0[i], b->data[i]);
    nn_optim_free(&o);
    nn_params_free(&p);
}

static void test_adamw_decoupled_decay(void) {
    /* decoupled: w *= 1 - lr * wd each step; the zero gradient leaves Adam's
     * moments at zero, so nothing else moves the weights */
    check_decay(NN_OPT_ADAMW, 0.01f, 0.1f, 1, 1.0 - 0.01 * 0.1);
    check_decay(NN_OPT_ADAMW, 1e-3f, 0.05f, 50, 1.0 - 1e-3 * 0.05);
    check_decay(NN_OPT_ADAMW, 0.1f, 0.5f, 10, 1.0 - 0.1 * 0.5);
}

static void test_sgd_l2_decay(void) {
    /* L2: g = wd * w, w -= lr * g, i.e. w *= 1 - lr * wd */
    check_decay(NN_OPT_SGD, 0.1f, 0.01f, 1, 1.0 - 0.1 * 0.01);
    check_decay(NN_OPT_SGD, 0.5f, 0.2f, 20, 1.0 - 0.5 * 0.2);
    /* momentum's first step: buf = g, the update is the same as plain SGD's */
    check_decay(NN_OPT_MOMENTUM, 0.1f, 0.01f, 1, 1.0 - 0.1 * 0.01);
    /* Nesterov's first step: g + mu * buf = (1 + mu) g */
    check_decay(NN_OPT_NESTEROV, 0.1f, 0.01f, 1, 1.0 - 0.1 * 0.01 * 1.9);
}

static void test_adam_l2_is_normalised(void) {
    /* Adam adds wd * w to the gradient and then divides by its RMS: the first
     * step moves every decayed weight by about lr toward zero, whatever wd
     * and |w| are (the reason AdamW decouples the decay). */
    nn_params p;
    nn_tensor *w, *b;
    make_params(&p, &w, &b);
    float w0[6], b0[3];
    memcpy(w0, w->data, sizeof w0);
    memcpy(b0, b->data, sizeof b0);
    nn_optim_config cfg = nn_optim_defaults(NN_OPT_ADAM);
    cfg.weight_decay = 1e-4f;
    nn_optim o;
    nn_optim_init(&o, &p, &cfg);
    nn_optim_step(&o, 0.01f);
    for (int i = 0; i < 6; i++) CHECK_NEAR(w->data[i], w0[i] - 0.01 * (w0[i] > 0 ? 1 : -1), 1e-5);
    for (int i = 0; i < 3; i++) CHECK(b->data[i] == b0[i]);
    nn_optim_free(&o);
    nn_params_free(&p);
}

static void test_no_decay_without_wd(void) {
    /* wd = 0 and no gradient: nothing moves, for every optimiser */
    for (int k = NN_OPT_SGD; k <= NN_OPT_ADAMW; k++) check_decay((nn_optim_kind)k, 0.1f, 0.0f, 5, 1.0);
}

static void test_decay_mask_with_gradient(void) {
    /* With a real gradient the bias gets exactly the update of the same
     * optimiser without weight decay: the mask removes decay, nothing else. */
    for (int k = NN_OPT_SGD; k <= NN_OPT_ADAMW; k++) {
        nn_params p1, p2;
        nn_tensor *w1, *b1, *w2, *b2;
        make_params(&p1, &w1, &b1);
        make_params(&p2, &w2, &b2);
        nn_optim_config c1 = nn_optim_defaults((nn_optim_kind)k), c2 = c1;
        c1.weight_decay = 0.3f;
        c2.weight_decay = 0.0f;
        nn_optim o1, o2;
        nn_optim_init(&o1, &p1, &c1);
        nn_optim_init(&o2, &p2, &c2);
        for (int s = 0; s < 5; s++) {
            for (int i = 0; i < 3; i++) b1->grad[i] = b2->grad[i] = 0.1f * (float)(i + 1) * (s % 2 ? -1.0f : 1.0f);
            for (int i = 0; i < 6; i++) w1->grad[i] = w2->grad[i] = 0.05f * (float)i;
            nn_optim_step(&o1, 0.05f);
            nn_optim_step(&o2, 0.05f);
        }
        for (int i = 0; i < 3; i++)
            CHECKF(b1->data[i] == b2->data[i], "%s: bias %d %g with wd, %g without", nn_optim_name((nn_optim_kind)k),
                   i, b1->data[i], b2->data[i]);
        bool weights_differ = false;
        for (int i = 0; i < 6; i++) weights_differ |= w1->data[i] != w2->data[i];
        CHECKF(weights_differ, "%s: weight decay changed no weight", nn_optim_name((nn_optim_kind)k));
        nn_optim_free(&o1);
        nn_optim_free(&o2);
        nn_params_free(&p1);
        nn_params_free(&p2);
    }
}

/* ---- known answers --------------------------------------------------------------- */

/* The bowl f(w) = 1/2 sum_i a_i (w_i - c_i)^2, badly conditioned (a from 0.5
 * to 5): gradient a_i (w_i - c_i), minimum at c. Starts at w = 0. */
enum { BOWL_N = 4 };
static const float bowl_a[BOWL_N] = {0.5f, 1.0f, 2.0f, 5.0f}, bowl_c[BOWL_N] = {1.0f, -2.0f, 0.5f, 3.0f};

static double run_bowl(nn_optim_kind kind, float lr, int steps, nn_schedule_kind sk) {
    nn_params p;
    nn_params_init(&p);
    nn_tensor *w = nn_params_add(&p, "w", 1, (int[]){BOWL_N}, false);
    w = nn_params_find(&p, "w");
    for (int i = 0; i < BOWL_N; i++) w->data[i] = 0.0f;
    nn_optim_config cfg = nn_optim_defaults(kind);
    cfg.weight_decay = 0.0f;
    nn_optim o;
    nn_optim_init(&o, &p, &cfg);
    nn_schedule sched = {.kind = sk, .base_lr = lr, .total_steps = steps};
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < BOWL_N; i++) w->grad[i] = bowl_a[i] * (w->data[i] - bowl_c[i]);
        nn_optim_step(&o, nn_schedule_lr(&sched, s));
    }
    double err = 0.0;
    for (int i = 0; i < BOWL_N; i++) err = fmax(err, fabs(w->data[i] - bowl_c[i]));
    nn_optim_free(&o);
    nn_params_free(&p);
    return err;
}

static void test_quadratic_bowl(void) {
    static const struct {
        nn_optim_kind kind;
        float lr;
    } cases[] = {
        {NN_OPT_SGD, 0.3f}, {NN_OPT_MOMENTUM, 0.05f}, {NN_OPT_NESTEROV, 0.05f}, {NN_OPT_ADAM, 0.1f}, {NN_OPT_ADAMW, 0.1f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double err = run_bowl(cases[i].kind, cases[i].lr, 1000, NN_SCHED_COSINE);
        CHECKF(err < 1e-3, "%s lr %g: max |w - c| = %g after 1000 steps", nn_optim_name(cases[i].kind), cases[i].lr,
               err);
    }
    /* plain SGD at a constant lr converges below 2 / a_max = 0.4 and diverges above it */
    CHECK(run_bowl(NN_OPT_SGD, 0.35f, 1000, NN_SCHED_CONST) < 1e-4);
    CHECK(!(run_bowl(NN_OPT_SGD, 0.45f, 200, NN_SCHED_CONST) < 1.0));
}

/* Fits y = 2x - 1 (exact, 32 points on [-1, 1]) with nn_linear and nn_mse
 * through autograd, cosine schedule: every optimiser must find w = 2, b = -1. */
static void test_line_fit(void) {
    enum { N = 32 };
    static const struct {
        nn_optim_kind kind;
        float lr;
    } cases[] = {
        {NN_OPT_SGD, 0.3f}, {NN_OPT_MOMENTUM, 0.05f}, {NN_OPT_NESTEROV, 0.05f}, {NN_OPT_ADAM, 0.05f}, {NN_OPT_ADAMW, 0.05f},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        nn_params p;
        nn_params_init(&p);
        nn_params_add(&p, "fc1.weight", 2, (int[]){1, 1}, true);
        nn_params_add(&p, "fc1.bias", 1, (int[]){1}, false);
        nn_tensor *w = nn_params_find(&p, "fc1.weight"), *b = nn_params_find(&p, "fc1.bias");
        nn_optim_config cfg = nn_optim_defaults(cases[c].kind);
        cfg.weight_decay = 0.0f;
        nn_optim o;
        nn_optim_init(&o, &p, &cfg);
        nn_ctx *ctx = nn_ctx_new(0);
        nn_schedule sched = {.kind = NN_SCHED_COSINE, .base_lr = cases[c].lr, .total_steps = 1500};
        for (int s = 0; s < 1500; s++) {
            nn_ctx_reset(ctx);
            nn_tensor *x = nn_input(ctx, "x", 2, (int[]){N, 1}), *y = nn_input(ctx, "y", 2, (int[]){N, 1});
            for (int i = 0; i < N; i++) {
                x->data[i] = -1.0f + 2.0f * (float)i / (N - 1);
                y->data[i] = 2.0f * x->data[i] - 1.0f;
            }
            nn_tensor *loss = nn_mse(ctx, nn_linear(ctx, x, w, b), y);
            nn_params_zero_grad(&p);
            nn_backward(ctx, loss);
            nn_optim_step(&o, nn_schedule_lr(&sched, s));
        }
        CHECKF(fabs(w->data[0] - 2.0f) < 1e-3 && fabs(b->data[0] + 1.0f) < 1e-3, "%s: w = %g, b = %g (want 2, -1)",
               nn_optim_name(cases[c].kind), w->data[0], b->data[0]);
        nn_ctx_free(ctx);
        nn_optim_free(&o);
        nn_params_free(&p);
    }
}

/* The average follows its formula, computed here in double, ramp included;
 * the swap exchanges average and weights and a second swap undoes it. */
static void test_weight_average(void) {
    nn_params p;
    nn_params_init(&p);
    nn_tensor *w = nn_params_add(&p, "w", 1, (int[]){3}, true);
    for (int i = 0; i < 3; i++) w->data[i] = (float)i;
    nn_ema e;
    nn_ema_init(&e, &p, 0.9f);
    double want[3] = {0, 1, 2};
    for (int t = 0; t < 300; t++) {
        for (int i = 0; i < 3; i++) w->data[i] = (float)(i + t + 1);
        nn_ema_update(&e, &p);
        double d = fmin(0.9, (1.0 + t) / (10.0 + t));
        for (int i = 0; i < 3; i++) want[i] = d * want[i] + (1 - d) * (i + t + 1);
    }
    for (int i = 0; i < 3; i++) CHECKF(fabs(e.avg[i] - want[i]) < 1e-4, "avg[%d] = %g, want %g", i, e.avg[i], want[i]);
    /* Weights moving one unit a step: once the ramp (1/10, 2/11, ...) has
     * reached the decay, the average trails them by d / (1 - d) = 9. */
    CHECKF(fabs(w->data[0] - e.avg[0] - 9.0) < 0.5, "lag %g", w->data[0] - e.avg[0]);
    float avg0 = e.avg[0], w0 = w->data[0];
    nn_ema_swap(&e, &p);
    CHECK(w->data[0] == avg0 && e.avg[0] == w0);
    nn_ema_swap(&e, &p);
    CHECK(w->data[0] == w0 && e.avg[0] == avg0);
    nn_ema_free(&e);
    nn_params_free(&p);
}

TEST_MAIN(TEST(test_schedule_const), TEST(test_schedule_warmup), TEST(test_schedule_step), TEST(test_schedule_cosine),
          TEST(test_schedule_names), TEST(test_adamw_decoupled_decay), TEST(test_sgd_l2_decay),
          TEST(test_adam_l2_is_normalised), TEST(test_no_decay_without_wd), TEST(test_decay_mask_with_gradient),
          TEST(test_quadratic_bowl), TEST(test_line_fit), TEST(test_weight_average))
