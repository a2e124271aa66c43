# vae — build, test and demo. `make demo` and `make test` install what they need first.
CC      ?= cc
OPTFLAGS ?= -O2 -g
# One threading layer: OpenMP. Our elementwise loops and OpenBLAS (its OpenMP build, linked by
# path so the system's BLAS alternative stays as it is) share one pool of threads, so the two
# never oversubscribe the cores. -fno-math-errno lets sqrt vectorize; it changes no result.
BLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
ALL_CFLAGS = $(OPTFLAGS) $(CFLAGS) -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -fPIC \
             -fopenmp -fno-math-errno -I$(BLAS_INC) -Iinclude -Isrc
override LDFLAGS += -fopenmp -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR)
LDLIBS  := -lopenblas -ljansson -lpng -lz -lm
BUILD   := build

LIB_SRC := $(wildcard src/*/*.c)
CLI_SRC := $(wildcard cli/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(BUILD)/tests/ref_ops.o

.PHONY: all deps demo test check tests clean bench
all: $(BUILD)/libvae.a $(BUILD)/libvae.so $(BUILD)/vae

deps:
	@scripts/install-deps.sh

$(BUILD)/%.o: %.c include/vae.h $(wildcard src/*/*.h) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD):
	@mkdir -p $@

$(BUILD)/libvae.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/libvae.so: $(LIB_OBJ)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(LDLIBS)

$(BUILD)/vae: $(CLI_OBJ) $(BUILD)/libvae.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libvae.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/check.h tests/ref_ops.h $(TEST_SUPPORT) $(BUILD)/libvae.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -Itests -o $@ $< $(TEST_SUPPORT) $(BUILD)/libvae.a $(LDLIBS)

$(BUILD)/tests/ref_ops.o: tests/ref_ops.c tests/ref_ops.h include/vae.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -c $< -o $@

# Everything the suite needs, then the suite, once as built and once under AddressSanitizer and
# UndefinedBehaviorSanitizer; its last line is "N passed, N failed".
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
test: deps
	@$(MAKE) --no-print-directory tests
	@$(MAKE) --no-print-directory BUILD=build-san OPTFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" tests
	@tests/run.sh $(BUILD) build-san

# The suite without installing anything or the sanitizer pass.
check: tests
	@tests/run.sh $(BUILD)

tests: all $(TEST_BIN)

# Trains the canonical model on Fashion-MNIST and writes pictures to demo/.
demo: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/vae train --preset pytorch --epochs 10 --batch 128 --lr 1e-3 --out demo

clean:
	rm -rf $(BUILD) build-san

# Side-by-side speed against PyTorch (needs Debian's python3-torch; installs it when missing).
$(BUILD)/gemm_limit: bench/gemm_limit.c $(BUILD)/libvae.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libvae.a $(LDLIBS)

bench: deps all $(BUILD)/gemm_limit
	@scripts/install-deps.sh --bench
	/usr/bin/python3 bench/bench.py --build $(BUILD)
