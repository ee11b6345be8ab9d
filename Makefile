# nn — build everything into build/ (the CLI is build/nn).
#
#   make              libnn.a, libnn.so.*, the CLI build/nn and the examples
#   make tests        the test binaries (build/tests/)
#   make test         build and run the whole test suite (fetches MNIST first)
#   make check        the tests that need no data, no network, no PyTorch, no
#                     node and no browser (the others are listed as skipped)
#   make sanitize     the same suite built with ASan+UBSan, into build-san/
#   make leakcheck    a short training run under valgrind --leak-check=full
#   make data         fetch MNIST into data/mnist (DATASET=fashion-mnist, or a text
#                     set: tinyshakespeare, names, names-by-language; or write
#                     the sums of addition, addition3 with build/tools/make_addition)
#   make run          the main job: train the default model, write its plot
#   make benches      the benchmark binaries (build/bench/)
#   make bench        build them and run the training-speed benchmark
#                     (see docs/PERFORMANCE.md)
#   make install      bin/nn, lib/libnn.so.MAJOR.MINOR (+ links), lib/libnn.a,
#                     include/nn.h + include/nn/*.h, lib/pkgconfig/nn.pc under
#                     PREFIX (/usr/local), staged under DESTDIR for packagers
#   make uninstall    removes what install put there
#   make clean        removes the build folders (build/, build-san/, build-vg/,
#                     build-fuzz/, ...); not data/, not build-node/'s npm packages
#   make distclean    clean, and build-node/ too
#
# One short line per step (CC file, AR, LD, GEN); make V=1 prints the commands,
# make -s neither.
# OPT (default -O3 -march=native), CPPFLAGS, CFLAGS (default -g), LDFLAGS and
# LDLIBS add to the flags the build needs: make CFLAGS=-O1 keeps -std=c11,
# -fopenmp and the rest.

BUILD    ?= build
comma    := ,
CC       ?= cc
OPT      ?= -O3 -march=native
CFLAGS   ?= -g
V        ?= 0
ifeq ($(V),1)
  Q   :=
  say := @:
else ifneq ($(findstring s,$(firstword -$(MAKEFLAGS))),)
  Q   := @
  say := @:
else
  Q   := @
  say := @printf '  %-4s %s\n'
endif

# What every object needs, always used; the user's OPT and CFLAGS come after
# these, so they add to them (and a later -O wins).
# -fno-math-errno and -fno-trapping-math let sqrtf, floorf and clamps inline
# and vectorise (nothing reads errno or FP exception flags); unlike
# -ffast-math they change no result.
NN_CPPFLAGS := -D_DEFAULT_SOURCE
NN_CFLAGS   := -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -fopenmp -fno-math-errno -fno-trapping-math
# GCC notes that 64-byte vectors (ops/vec16.h) pass differently since GCC
# 4.6 when AVX-512 is off (the leak check's x86-64-v3 build): they only go
# between static inline functions, never across an ABI boundary.
NN_CFLAGS   += -Wno-psabi
# One set of objects serves the static and the shared library; only what the
# public headers declare is visible outside libnn.so (include/nn/api.h).
NN_CFLAGS   += -fPIC -fvisibility=hidden
NN_LDFLAGS  := -fopenmp
# Each part of the tree sees the headers of the layers below it only: src/
# cannot include cli/ or app/ headers; the program (cli/, app/), which links
# libnn.a, may use the library's unexported helpers (src/core/util.h). INC
# is set per part further down;
# MOD_INC is what an app/ module adds for its own objects (after ours).
COMPILE = $(CC) $(NN_CPPFLAGS) $(INC) $(MOD_INC) $(CPPFLAGS) $(NN_CFLAGS) $(OPT) $(CFLAGS) -MMD -MP -c $< -o $@
# OpenBLAS's OpenMP build shares one thread pool with our OpenMP loops; the
# default pthread build's threads fight them for the cores (2x slower here).
BLAS_DIR ?= $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp)
BLAS_LIBS = $(if $(BLAS_DIR),-L$(BLAS_DIR) -Wl$(comma)-rpath$(comma)$(BLAS_DIR)) -lopenblas
# What libnn itself links (LAPACK for linear regression comes with OpenBLAS).
LIB_LIBS  = $(BLAS_LIBS) -lcjson -lpng -lz -lm
LINK_LIB  = $(CC) $(NN_LDFLAGS) $(LDFLAGS) $^ $(LIB_LIBS) $(LDLIBS) -o $@
LINK_APP  = $(CC) $(NN_LDFLAGS) $(LDFLAGS) $^ $(APP_LIBS) $(LIB_LIBS) $(LDLIBS) -o $@
DATASET  ?= mnist

PREFIX   ?= /usr/local
DESTDIR  ?=
version   = $(shell sed -n 's/^\#define NN_VERSION_$(1) \([0-9]*\)$$/\1/p' include/nn/version.h)
MAJOR    := $(call version,MAJOR)
MINOR    := $(call version,MINOR)
PATCH    := $(call version,PATCH)
SONAME   := libnn.so.$(MAJOR)
SHLIB    := $(BUILD)/libnn.so.$(MAJOR).$(MINOR)

# Objects depend on the compile flags too: the stamp changes when they do.
FLAGS_STAMP := $(BUILD)/compile-flags
FLAGS_NOW   := $(CC) $(NN_CPPFLAGS) $(CPPFLAGS) $(NN_CFLAGS) $(OPT) $(CFLAGS)
$(shell mkdir -p $(BUILD) && echo '$(FLAGS_NOW)' | cmp -s - $(FLAGS_STAMP) || \
	echo '$(FLAGS_NOW)' > $(FLAGS_STAMP))

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
# The program tests: they include cli/ or app/ headers and link the nn
# program's objects and its libraries (PLplot, libmicrohttpd, protobuf-c).
# Every other test links libnn and its libraries only (and sees no cli/ or
# app/ header: one that includes them goes here); those that run build/nn as
# a subprocess just need it built.
PROGRAM_TESTS := test_linreg test_report
BENCH_SRC:= $(sort $(wildcard bench/*.c))
# Small programs beside nn that link libnn (make_addition writes a data set).
TOOL_SRC := $(sort $(wildcard tools/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/%.o) $(APP_GEN_SRC:%.c=%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o) $(APP_OBJ)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
PROGRAM_TEST_BIN := $(PROGRAM_TESTS:%=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
TOOL_BIN := $(TOOL_SRC:tools/%.c=$(BUILD)/tools/%)

.PHONY: all tests benches test check sanitize leakcheck data run bench clean distclean fixtures install uninstall
# Keep test and bench objects (make would delete them as intermediates).
.SECONDARY:

all: $(BUILD)/nn $(BUILD)/libnn.a $(SHLIB) $(EXAMPLE_BIN) $(TOOL_BIN)

tests: $(TEST_BIN)

benches: $(BENCH_BIN)

# Headers each part sees (see COMPILE above).
$(BUILD)/src/%.o:   INC = -Iinclude -Isrc
$(BUILD)/cli/%.o:   INC = -Iinclude -Isrc -Icli -Iapp
$(BUILD)/app/%.o:   INC = -Iinclude -Isrc -Iapp
$(BUILD)/tests/%.o: INC = -Iinclude -Isrc
$(BUILD)/bench/%.o: INC = -Iinclude -Isrc
$(BUILD)/tools/%.o: INC = -Iinclude -Isrc
$(PROGRAM_TEST_BIN:%=%.o): INC = -Iinclude -Isrc -Icli -Iapp

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(say) CC $<
	$(Q)$(COMPILE)

# Built afresh: `ar r` into an old archive would keep objects whose source is gone.
$(BUILD)/libnn.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(say) AR $@
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

# The shared library exports nn_* only (src/libnn.map), under its soname.
$(SHLIB): $(LIB_OBJ) src/libnn.map
	$(say) LD $@
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libnn.map $(NN_LDFLAGS) $(LDFLAGS) $(LIB_OBJ) $(LIB_LIBS) $(LDLIBS) -o $@
	$(Q)ln -sf $(notdir $@) $(BUILD)/$(SONAME)
	$(Q)ln -sf $(SONAME) $(BUILD)/libnn.so

# The examples are built against the shared library in the build folder, as
# a program outside the tree would be: the public headers only.
$(BUILD)/examples/%: examples/%.c $(SHLIB) $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(say) CC $<
	$(Q)$(CC) $(CPPFLAGS) -Iinclude -std=c11 -Wall -Wextra $(OPT) $(CFLAGS) $(LDFLAGS) $< \
		-L$(BUILD) -Wl,-rpath,$(abspath $(BUILD)) -lnn $(LDLIBS) -o $@

$(BUILD)/nn: $(CLI_OBJ) $(BUILD)/libnn.a
	$(say) LD $@
	$(Q)$(LINK_APP)

# The library's tests link libnn and its libraries only; the program tests
# link the nn program's objects (all but main.o) and the app/ libraries too.
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libnn.a
	$(say) LD $@
	$(Q)$(LINK_LIB)

$(PROGRAM_TEST_BIN): %: %.o $(filter-out $(BUILD)/cli/main.o,$(CLI_OBJ)) $(BUILD)/libnn.a
	$(say) LD $@
	$(Q)$(LINK_APP)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libnn.a
	$(say) LD $@
	$(Q)$(LINK_LIB)

$(BUILD)/tools/%: $(BUILD)/tools/%.o $(BUILD)/libnn.a
	$(say) LD $@
	$(Q)$(LINK_LIB)

test: all tests data
	@NN=$(BUILD)/nn scripts/run_tests.sh $(TEST_BIN)

# No data, no network: run_tests.sh runs each test where data/ and
# build-node/ are not to be seen, so whatever needs MNIST, PyTorch (whose
# tests need MNIST first), node or a browser skips, and is listed as skipped.
check: all tests
	@NN=$(BUILD)/nn NN_OFFLINE=1 scripts/run_tests.sh $(TEST_BIN)

# The data first, so the tests that train run under the sanitizers too.
sanitize: data
	$(MAKE) BUILD=build-san OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
		LDFLAGS="-fsanitize=address,undefined" all tests
	@ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 NN_SANITIZE=1 \
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
	$(VALGRIND) build-vg/nn train --data datasets/tinyshakespeare/input.txt --arch 'embed(8) lstm(16) gru(8) linear(65)' \
		--steps 6 --eval-every 3 --eval-windows 4 --context 8 --batch-size 4 --threads 1 --save build-vg/lm.safetensors >/dev/null
	$(VALGRIND) build-vg/nn generate --model build-vg/lm.safetensors --length 20 >/dev/null

# The sums of the addition sets are written by a tool built here.
data: $(if $(filter addition%,$(DATASET)),$(BUILD)/tools/make_addition)
	@MAKE_ADDITION=$(BUILD)/tools/make_addition scripts/fetch_data.sh $(DATASET)

run: $(BUILD)/nn data
	$(BUILD)/nn train --plot accuracy.png --metrics metrics.csv --save model.safetensors

bench: all benches data
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

# Every build folder: build/, build-san/, build-vg/, scripts/fuzz.sh's
# build-fuzz/ and any other build-*/ but build-node/, which holds npm packages
# fetched from the network (scripts/node_deps.sh).
clean:
	rm -rf build $(filter-out build-node,$(wildcard build-*))

distclean: clean
	rm -rf build-node

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
