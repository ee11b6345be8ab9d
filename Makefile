# nn — build everything into build/ (the CLI is build/nn).
#
#   make              library, CLI and test binaries
#   make test         build and run the whole test suite (fetches MNIST first)
#   make sanitize     the same suite built with ASan+UBSan, into build-san/
#   make leakcheck    a short training run under valgrind --leak-check=full
#   make data         fetch MNIST into data/mnist (DATASET=fashion-mnist for that)
#   make run          the main job: train the default model, write its plot
#   make bench        training-speed benchmark (see docs/PERFORMANCE.md)
#   make install      bin/nn, lib/libnn.so.MAJOR.MINOR (+ links), lib/libnn.a,
#                     include/nn.h + include/nn/*.h, lib/pkgconfig/nn.pc under
#                     PREFIX (/usr/local), staged under DESTDIR for packagers
#   make uninstall    removes what install put there

BUILD    ?= build
comma    := ,
CC       ?= cc
OPT      ?= -O3 -march=native
CFLAGS   ?= $(OPT) -g
# -fno-math-errno and -fno-trapping-math let sqrtf, floorf and clamps inline
# and vectorise (nothing reads errno or FP exception flags); unlike
# -ffast-math they change no result.
CFLAGS   += -fno-math-errno -fno-trapping-math
CFLAGS   += -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -fopenmp -Iinclude -Isrc -Iapp -Icli
# One set of objects serves the static and the shared library; only what the
# public headers declare is visible outside libnn.so (include/nn/api.h).
CFLAGS   += -fPIC -fvisibility=hidden
CPPFLAGS += -D_DEFAULT_SOURCE
# OpenBLAS's OpenMP build shares one thread pool with our OpenMP loops; the
# default pthread build's threads fight them for the cores (2x slower here).
BLAS_DIR ?= $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp)
BLAS_LIBS = $(if $(BLAS_DIR),-L$(BLAS_DIR) -Wl$(comma)-rpath$(comma)$(BLAS_DIR)) -lopenblas
# What libnn itself links (LAPACK for linear regression comes with OpenBLAS).
LIB_LIBS  = $(BLAS_LIBS) -lcjson -lpng -lz -lm
LDLIBS   += $(LIB_LIBS) $(APP_LIBS)
LDFLAGS  += -fopenmp
DATASET  ?= mnist

PREFIX   ?= /usr/local
DESTDIR  ?=
version   = $(shell sed -n 's/^\#define NN_VERSION_$(1) \([0-9]*\)$$/\1/p' include/nn/version.h)
MAJOR    := $(call version,MAJOR)
MINOR    := $(call version,MINOR)
PATCH    := $(call version,PATCH)
SONAME   := libnn.so.$(MAJOR)
SHLIB    := $(BUILD)/libnn.so.$(MAJOR).$(MINOR)

LIB_SRC  := $(sort $(wildcard src/*/*.c))
# app/: parts of the nn program that need libraries libnn does not (PLplot,
# libmicrohttpd, protobuf-c). Each folder's module.mk adds its libraries to
# APP_LIBS (and any generated sources to APP_GEN_SRC); programs that embed
# libnn never link them.
APP_SRC  := $(sort $(wildcard app/*/*.c))
APP_LIBS :=
APP_GEN_SRC :=
-include $(sort $(wildcard app/*/module.mk))
# A module's rules come first in the file; `make` alone still means `all`.
.DEFAULT_GOAL := all
CLI_SRC  := $(sort $(wildcard cli/*.c))
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
BENCH_SRC:= $(sort $(wildcard bench/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/%.o) $(APP_GEN_SRC:%.c=%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o) $(APP_OBJ)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test sanitize leakcheck data run bench clean fixtures install uninstall
# Keep test and bench objects (make would delete them as intermediates).
.SECONDARY:

all: $(BUILD)/nn $(SHLIB) $(EXAMPLE_BIN) $(TEST_BIN) $(BENCH_BIN)

# Built afresh: `ar r` into an old archive would keep objects whose source is gone.
$(BUILD)/libnn.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

# Objects depend on the compile flags too: the stamp changes when they do.
FLAGS_STAMP := $(BUILD)/compile-flags
$(shell mkdir -p $(BUILD) && echo '$(CC) $(CPPFLAGS) $(CFLAGS)' | cmp -s - $(FLAGS_STAMP) || \
	echo '$(CC) $(CPPFLAGS) $(CFLAGS)' > $(FLAGS_STAMP))

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# The shared library exports nn_* only (src/libnn.map), under its soname.
$(SHLIB): $(LIB_OBJ) src/libnn.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libnn.map $(LDFLAGS) $(LIB_OBJ) $(LIB_LIBS) -o $@
	ln -sf $(notdir $@) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libnn.so

# The examples are built against the shared library in the build folder.
$(BUILD)/examples/%: examples/%.c $(SHLIB) $(BUILD)/compile-flags
	@mkdir -p $(@D)
	$(CC) $(OPT) -std=c11 -Wall -Wextra -Iinclude $< -L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lnn -o $@

$(BUILD)/nn: $(CLI_OBJ) $(BUILD)/libnn.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Tests may include cli/ headers and link the CLI's objects (all but main.o).
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(filter-out $(BUILD)/cli/main.o,$(CLI_OBJ)) $(BUILD)/libnn.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(filter-out $(BUILD)/cli/main.o,$(CLI_OBJ)) $(BUILD)/libnn.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

test: all data
	@NN=$(BUILD)/nn scripts/run_tests.sh $(TEST_BIN)

# The data first, so the tests that train run under the sanitizers too.
sanitize: data
	$(MAKE) BUILD=build-san OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
		LDFLAGS="-fopenmp -fsanitize=address,undefined" all
	@ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 NN_SANITIZE=1 \
		NN=build-san/nn scripts/run_tests.sh $(patsubst $(BUILD)/%,build-san/%,$(TEST_BIN))

# Issue 7's leak check: one short training run under valgrind, no leak allowed.
# Built for AVX2 at most into build-vg/: valgrind 3.19 decodes no AVX-512,
# which -march=native emits on CPUs that have it.
VALGRIND = valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=9 \
	--suppressions=scripts/valgrind.supp
leakcheck: data
	$(MAKE) BUILD=build-vg OPT="-O2 -march=x86-64-v3" build-vg/nn
	$(VALGRIND) build-vg/nn train --train-limit 500 --epochs 2 --hidden 32 --threads 1 --norm layer --act gelu \
		--dropout 0.1 --input-dropout 0.2 --opt adamw --ema 0.9 --save build-vg/leakcheck.safetensors >/dev/null
	$(VALGRIND) build-vg/nn train --train-limit 300 --epochs 1 --threads 1 --augment --save build-vg/leakcheck-cnn.safetensors \
		--arch 'conv(4,3) batchnorm relu maxpool(2) flatten dropout(0.1) linear(10)' >/dev/null
	$(VALGRIND) build-vg/nn eval --model build-vg/leakcheck-cnn.safetensors --errors build-vg/errors.png \
		--filters build-vg/filters.png >/dev/null
	$(VALGRIND) build-vg/nn train --resume build-vg/leakcheck.safetensors >/dev/null
	$(VALGRIND) build-vg/nn linreg --features 2 --steps 200 --plot build-vg/linreg.png >/dev/null 2>&1

data:
	@scripts/fetch_data.sh $(DATASET)

run: $(BUILD)/nn data
	$(BUILD)/nn train --plot accuracy.png --metrics metrics.csv --save model.safetensors

bench: all data
	@BUILD=$(BUILD) scripts/bench.sh

# Regenerates the PyTorch reference values (needs Debian's python3-torch).
fixtures:
	/usr/bin/python3 scripts/make_fixtures.py tests/fixtures

# nn.pc is written for the PREFIX given here. A program links -lnn; the
# private dependencies are listed for static linking only.
install: $(BUILD)/nn $(BUILD)/libnn.a $(SHLIB)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/nn
	install -m 755 $(BUILD)/nn $(DESTDIR)$(PREFIX)/bin/nn
	install -m 644 $(BUILD)/libnn.a $(DESTDIR)$(PREFIX)/lib/libnn.a
	install -m 755 $(SHLIB) $(DESTDIR)$(PREFIX)/lib/$(notdir $(SHLIB))
	ln -sf $(notdir $(SHLIB)) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libnn.so
	install -m 644 include/nn.h $(DESTDIR)$(PREFIX)/include/nn.h
	install -m 644 include/nn/*.h $(DESTDIR)$(PREFIX)/include/nn/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(MAJOR).$(MINOR).$(PATCH)|' \
		-e 's|@LIBS_PRIVATE@|$(BLAS_LIBS) -lm -fopenmp|' nn.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/nn.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/nn $(DESTDIR)$(PREFIX)/lib/libnn.a $(DESTDIR)$(PREFIX)/lib/$(notdir $(SHLIB)) \
		$(DESTDIR)$(PREFIX)/lib/$(SONAME) $(DESTDIR)$(PREFIX)/lib/libnn.so $(DESTDIR)$(PREFIX)/lib/pkgconfig/nn.pc \
		$(DESTDIR)$(PREFIX)/include/nn.h $(addprefix $(DESTDIR)$(PREFIX)/include/nn/,$(notdir $(wildcard include/nn/*.h)))
	-rmdir $(DESTDIR)$(PREFIX)/include/nn 2>/dev/null

clean:
	rm -rf build build-san build-vg

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
