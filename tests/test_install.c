/* nn as a library other programs embed: the examples built in the tree run;
 * `make install` into a scratch prefix gives the files a packager expects;
 * a program outside the tree builds with `pkg-config --cflags --libs nn`
 * alone and trains and infers; the shared library exports nn_ names only
 * and carries its soname; `make uninstall` removes it all. Runs from the
 * repository root with the build folder of $NN (default build/nn). */
#include <libgen.h>
#include <sys/stat.h>

#include "check.h"
#include "run_nn.h"
#include "nn/version.h"

static char build_dir[256], prefix[300];

/* Runs a shell command with output in out_text/err_text; returns its exit status. */
static int sh(const char *fmt, ...) {
    char cmd[4096], full[4400], path[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "(%s) >%s/out 2>%s/err </dev/null", cmd, tmpdir, tmpdir);
    int status = system(full);
    snprintf(path, sizeof path, "%s/out", tmpdir);
    slurp(path, out_text, sizeof out_text);
    snprintf(path, sizeof path, "%s/err", tmpdir);
    slurp(path, err_text, sizeof err_text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool setup(void) {
    if (getenv("NN_SANITIZE")) {
        SKIP("the sanitizer build's libraries need the sanitizer runtime in every program that links them");
        return false;
    }
    if (!have_mnist()) return false;
    char nn_path[256];
    snprintf(nn_path, sizeof nn_path, "%s", getenv("NN") ? getenv("NN") : "build/nn");
    snprintf(build_dir, sizeof build_dir, "%s", dirname(nn_path));
    snprintf(prefix, sizeof prefix, "%s/prefix", tmpdir);
    return true;
}

static void test_examples_in_tree(void) {
    if (!setup()) return;
    int rc = sh("%s/examples/train data/mnist %s 1 3000", build_dir, tmp("ex.safetensors"));
    CHECKF(rc == 0, "examples/train exited %d: %s", rc, err_text);
    const char *acc = strstr(out_text, "test accuracy ");
    CHECKF(acc && atof(acc + 14) > 80.0, "examples/train: %s", out_text);
    rc = sh("%s/examples/infer %s tests/fixtures/images/7_gray_dark_on_light.png tests/fixtures/images/0_light_on_dark.pgm",
            build_dir, tmp("ex.safetensors"));
    CHECKF(rc == 0, "examples/infer exited %d: %s", rc, err_text);
    CHECKF(strstr(out_text, "7_gray_dark_on_light.png: 7 (") && strstr(out_text, "0_light_on_dark.pgm: 0 ("), "%s",
           out_text);
    CHECK(sh("%s/examples/infer %s", build_dir, tmp("ex.safetensors")) == 2);
    CHECK(sh("%s/examples/infer %s x.png", build_dir, tmp("missing.safetensors")) == 1);
}

static void test_install_and_build_outside(void) {
    if (!setup()) return;
    int rc = sh("make -s BUILD=%s install PREFIX=%s", build_dir, prefix);
    CHECKF(rc == 0, "make install exited %d: %s", rc, err_text);
    char so[64];
    snprintf(so, sizeof so, "lib/libnn.so.%d.%d", NN_VERSION_MAJOR, NN_VERSION_MINOR);
    const char *files[] = {"bin/nn", so, "lib/libnn.a", "include/nn.h", "include/nn/model.h", "include/nn/train.h",
                           "lib/pkgconfig/nn.pc"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", prefix, files[i]);
        CHECKF(access(path, R_OK) == 0, "make install did not write %s", files[i]);
    }
    char soname[32], soname_line[40];
    snprintf(soname, sizeof soname, "libnn.so.%d", NN_VERSION_MAJOR);
    snprintf(soname_line, sizeof soname_line, "[%s]", soname);
    CHECKF(sh("readlink %s/lib/libnn.so && readlink %s/lib/libnn.so.%d", prefix, prefix, NN_VERSION_MAJOR) == 0 &&
               strncmp(out_text, soname, strlen(soname)) == 0 && strstr(out_text, so + 4),
           "links: %s", out_text);
    CHECKF(sh("readelf -d %s/%s | grep SONAME", prefix, so) == 0 && strstr(out_text, soname_line), "%s", out_text);
    /* Only nn_ names are exported. */
    rc = sh("nm -D --defined-only %s/%s | awk '{print $3}' | grep -v '^nn_' | grep -v '^$'", prefix, so);
    CHECKF(rc == 1, "exported names without the nn_ prefix: %s", out_text);
    CHECK(sh("nm -D --defined-only %s/%s | grep -c ' nn_'", prefix, so) == 0 && atoi(out_text) > 100);
    CHECK(sh("%s/bin/nn --version", prefix) == 0 && strstr(out_text, NN_VERSION_STRING));

    /* A program outside the tree, built with pkg-config only. */
    const char *pc = "PKG_CONFIG_PATH=%s/lib/pkgconfig";
    char env[400];
    snprintf(env, sizeof env, pc, prefix);
    rc = sh("mkdir -p %s/app && cp examples/train.c examples/infer.c %s/app/ && cd %s/app && "
            "cc -std=c11 train.c $(%s pkg-config --cflags --libs nn) -o train && "
            "cc -std=c11 infer.c $(%s pkg-config --cflags --libs nn) -o infer",
            tmpdir, tmpdir, tmpdir, env, env);
    CHECKF(rc == 0, "building against the installed library exited %d: %s", rc, err_text);
    rc = sh("LD_LIBRARY_PATH=%s/lib %s/app/train data/mnist %s 1 2000", prefix, tmpdir, tmp("app.safetensors"));
    CHECKF(rc == 0 && strstr(out_text, "saved "), "the installed-library trainer exited %d: %s %s", rc, out_text,
           err_text);
    rc = sh("LD_LIBRARY_PATH=%s/lib %s/app/infer %s tests/fixtures/images/7_gray_dark_on_light.png", prefix, tmpdir,
            tmp("app.safetensors"));
    CHECKF(rc == 0 && strstr(out_text, ": 7 ("), "the installed-library classifier exited %d: %s %s", rc, out_text,
           err_text);
    CHECKF(sh("LD_LIBRARY_PATH=%s/lib ldd %s/app/train | grep -c %s", prefix, tmpdir, soname) == 0, "the program does not link libnn.so: %s",
           out_text);
    /* Training and running a model needs neither plotting nor LAPACK. */
    rc = sh("LD_LIBRARY_PATH=%s/lib ldd %s/app/train | grep -E -i 'plplot|lapack|cairo'", prefix, tmpdir);
    CHECKF(rc == 1, "a program that only trains links more than it needs: %s", out_text);

    rc = sh("make -s BUILD=%s uninstall PREFIX=%s", build_dir, prefix);
    CHECKF(rc == 0, "make uninstall exited %d: %s", rc, err_text);
    CHECKF(sh("find %s -type f -o -type l", prefix) == 0 && out_text[0] == 0, "left after uninstall: %s", out_text);
}

TEST_MAIN(TEST(test_examples_in_tree), TEST(test_install_and_build_outside))
