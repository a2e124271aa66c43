# vae — build, test and demo. `make demo` and `make test` install what they need first.
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -fPIC -Iinclude -Isrc
LDLIBS  := -lopenblas -lpng -lz -lm
BUILD   := build

LIB_SRC := $(wildcard src/*/*.c)
CLI_SRC := $(wildcard cli/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(BUILD)/tests/ref_ops.o

.PHONY: all deps demo test check clean
all: $(BUILD)/libvae.a $(BUILD)/libvae.so $(BUILD)/vae

deps:
	@scripts/install-deps.sh

$(BUILD)/%.o: %.c include/vae.h $(wildcard src/*/*.h) | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD):
	@mkdir -p $@

$(BUILD)/libvae.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(BUILD)/libvae.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDLIBS)

$(BUILD)/vae: $(CLI_OBJ) $(BUILD)/libvae.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libvae.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/check.h tests/ref_ops.h $(TEST_SUPPORT) $(BUILD)/libvae.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_SUPPORT) $(BUILD)/libvae.a $(LDLIBS)

$(BUILD)/tests/ref_ops.o: tests/ref_ops.c tests/ref_ops.h include/vae.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -c $< -o $@

# Everything the suite needs, then the suite; its last line is "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory check

check: all $(TEST_BIN)
	@tests/run.sh $(BUILD)

# Trains the canonical model on Fashion-MNIST and writes pictures to demo/.
demo: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/vae train --preset pytorch --epochs 10 --batch 128 --lr 1e-3 --out demo

clean:
	rm -rf $(BUILD)
