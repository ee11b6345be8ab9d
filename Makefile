# nn — build everything into build/ (the CLI is build/nn).
#
#   make              library, CLI and test binaries
#   make test         build and run the whole test suite (fetches MNIST first)
#   make sanitize     the same suite built with ASan+UBSan, into build-san/
#   make leakcheck    a short training run under valgrind --leak-check=full
#   make data         fetch MNIST into data/mnist (DATASET=fashion-mnist for that)
#   make run          the main job: train the default model, write its plot
#   make bench        training-speed benchmark (see docs/PERFORMANCE.md)

BUILD    ?= build
comma    := ,
CC       ?= cc
OPT      ?= -O3 -march=native
CFLAGS   ?= $(OPT) -g
# -fno-math-errno and -fno-trapping-math let sqrtf, floorf and clamps inline
# and vectorise (nothing reads errno or FP exception flags); unlike
# -ffast-math they change no result.
CFLAGS   += -fno-math-errno -fno-trapping-math
CFLAGS   += -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -fopenmp -Iinclude -Isrc -Icli
CPPFLAGS += -D_DEFAULT_SOURCE $(shell pkg-config --cflags plplot 2>/dev/null)
# OpenBLAS's OpenMP build shares one thread pool with our OpenMP loops; the
# default pthread build's threads fight them for the cores (2x slower here).
BLAS_DIR ?= $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp)
LDLIBS   += $(if $(BLAS_DIR),-L$(BLAS_DIR) -Wl$(comma)-rpath$(comma)$(BLAS_DIR)) -lopenblas -llapacke -lcjson -lpng -lz $(shell pkg-config --libs plplot 2>/dev/null) -lm
LDFLAGS  += -fopenmp
DATASET  ?= mnist

LIB_SRC  := $(sort $(wildcard src/*/*.c))
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
BENCH_SRC:= $(sort $(wildcard bench/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test sanitize leakcheck data run bench clean fixtures
# Keep test and bench objects (make would delete them as intermediates).
.SECONDARY:

all: $(BUILD)/nn $(TEST_BIN) $(BENCH_BIN)

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
leakcheck: $(BUILD)/nn data
	valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=9 \
		$(BUILD)/nn train --train-limit 500 --epochs 2 --hidden 32 --threads 1 --norm layer --act gelu \
		--dropout 0.1 --input-dropout 0.2 --opt adamw --ema 0.9 --save $(BUILD)/leakcheck.safetensors >/dev/null

data:
	@scripts/fetch_data.sh $(DATASET)

run: $(BUILD)/nn data
	$(BUILD)/nn train --plot accuracy.png --metrics metrics.csv --save model.safetensors

bench: all data
	@scripts/bench.sh

# Regenerates the PyTorch reference values (needs Debian's python3-torch).
fixtures:
	/usr/bin/python3 scripts/make_fixtures.py tests/fixtures

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
