# vae — build, test and demo. `make demo` and `make test` install what they need first.
CC      ?= cc
OPTFLAGS ?= -O2 -g
# One threading layer: OpenMP. Our elementwise loops and OpenBLAS (its OpenMP build, linked by
# path so the system's BLAS alternative stays as it is) share one pool of threads, so the two
# never oversubscribe the cores. -fno-math-errno lets sqrt vectorize; it changes no result.
BLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
OMPFLAGS ?= -fopenmp
ALL_CFLAGS = $(OPTFLAGS) $(CFLAGS) -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -fPIC \
             -Werror=implicit-function-declaration \
             $(OMPFLAGS) -fno-math-errno -I$(BLAS_INC) -Iinclude -Isrc
override LDFLAGS += $(OMPFLAGS) -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR)
LDLIBS  := -lopenblas -ljansson -lcsv -lpng -lz -lm
BUILD   := build
# MPI=1: a vae for `mpirun -np N vae train` (data-parallel), built with Open MPI's mpicc into
# build-mpi; the library itself never needs MPI.
MPI ?= 0
ifeq ($(MPI),1)
CC      := mpicc
BUILD   := build-mpi
override CFLAGS += -DVAE_MPI
endif

# CUDA=1: a vae with the GPU backend (src/cuda, built by CUDA's nvcc; cuBLAS) in build-cuda.
CUDA ?= 0
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
NVCCFLAGS ?= -O3 -std=c++17 -gencode arch=compute_80,code=sm_80 \
             -gencode arch=compute_90,code=[sm_90,compute_90]
ifeq ($(CUDA),1)
BUILD   := build-cuda
override CFLAGS += -DVAE_CUDA
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart_static -ldl \
           -lrt -lpthread -lstdc++
endif

# oneDNN (Debian's libdnnl-dev): a second CPU backend (--backend onednn|auto) when it is there;
# a build without it still works and says so when asked for it.
HAVE_DNNL := $(shell [ -f /usr/include/dnnl.h ] && echo 1)
ifeq ($(HAVE_DNNL),1)
override CFLAGS += -DVAE_ONEDNN
LDLIBS  += -ldnnl
endif

LIB_SRC := $(wildcard src/*/*.c)
CLI_SRC := $(wildcard cli/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
ifeq ($(CUDA),1)
LIB_OBJ += $(patsubst %.cu,$(BUILD)/%.o,$(wildcard src/cuda/*.cu))
endif
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o) $(BUILD)/cli/explore_page.o
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(BUILD)/tests/ref_ops.o

.PHONY: all deps demo test check tests clean install uninstall bench bench-conv bench-cuda fuzz \
        fuzz-smoke FORCE
all: $(BUILD)/libvae.a $(BUILD)/libvae.so $(BUILD)/vae

deps:
	@scripts/install-deps.sh

$(BUILD)/%.o: %.c include/vae.h $(wildcard src/*/*.h cli/*.h) $(BUILD)/.config | $(BUILD)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# cuBLAS is not linked: the GPU backend opens it when a GPU context is made (its soname and
# directory are compiled in; src/cuda/cublas_lib.cuh says why).
CUBLAS_SONAME = $(shell objdump -p $(CUDA_HOME)/lib64/libcublas.so 2>/dev/null | \
                  awk '$$1 == "SONAME" { print $$2 }')
$(BUILD)/src/cuda/%.o: src/cuda/%.cu $(wildcard src/cuda/*.cuh) src/backend/gpu.h include/vae.h \
                      $(BUILD)/.config | $(BUILD)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -Xcompiler -fPIC,-Wall,-Wextra -Iinclude -Isrc \
	    -DVAE_CUBLAS_SONAME='"$(or $(CUBLAS_SONAME),libcublas.so)"' \
	    -DVAE_CUDA_LIBDIR='"$(CUDA_HOME)/lib64"' -c $< -o $@

# The explorer's page (cli/explore/), compiled into the program as C strings.
$(BUILD)/cli/explore_page.c: cli/explore/page.html cli/explore/page.css cli/explore/page.js \
                             scripts/embed_page.sh | $(BUILD)
	@mkdir -p $(dir $@)
	scripts/embed_page.sh cli/explore $@

$(BUILD)/cli/explore_page.o: $(BUILD)/cli/explore_page.c $(BUILD)/.config
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# The packages a build needs are checked before its first object, and every object depends on
# the configuration it was compiled in (compiler, flags, libraries, whether OpenBLAS's header
# is there): installing a package or changing a flag rebuilds what it affects instead of
# linking stale objects (one compiled against another package's cblas.h crashed later).
$(BUILD):
	@scripts/install-deps.sh --check
	@mkdir -p $@

BUILD_CONFIG = $(CC) $(ALL_CFLAGS) $(LDLIBS) blas-header=$(wildcard $(BLAS_INC)/cblas.h)
$(BUILD)/.config: FORCE | $(BUILD)
	@echo '$(BUILD_CONFIG)' | cmp -s - $@ || echo '$(BUILD_CONFIG)' >$@
FORCE:

$(BUILD)/libvae.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

# The shared library: libvae.so.MAJOR.MINOR.PATCH (the version is read from include/vae.h),
# SONAME libvae.so.MAJOR, the two links, and only the header's functions exported (a linker
# version script made from the header; every internal symbol stays hidden).
VERSION_PART = $(shell sed -n 's/^\#define VAE_VERSION_$(1) \([0-9]*\).*/\1/p' include/vae.h)
MAJOR   := $(call VERSION_PART,MAJOR)
VERSION := $(MAJOR).$(call VERSION_PART,MINOR).$(call VERSION_PART,PATCH)
SONAME  := libvae.so.$(MAJOR)

$(BUILD)/libvae.map: include/vae.h scripts/exports.sh | $(BUILD)
	@{ echo '{ global:'; CC="$(CC)" scripts/exports.sh include/vae.h | sed 's/.*/    &;/'; \
	   echo '  local: *; };'; } >$@.tmp && mv $@.tmp $@

# OpenBLAS goes inside it, hidden (its static library): a process that has loaded another
# libopenblas.so.0 first (numpy's pthread build, in every Python program that imports numpy
# before vae) would otherwise lend libvae that one, with its own threads and the kernels it
# chose before vae could choose better ones.
$(BUILD)/libvae.so.$(VERSION): $(LIB_OBJ) $(BUILD)/libvae.map
	$(CC) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script,$(BUILD)/libvae.map \
	    -o $@ $(LIB_OBJ) $(BLAS_DIR)/libopenblas.a $(filter-out -lopenblas,$(LDLIBS))

$(BUILD)/libvae.so: $(BUILD)/libvae.so.$(VERSION)
	ln -sf libvae.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $@

$(BUILD)/vae: $(CLI_OBJ) $(BUILD)/libvae.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libvae.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/check.h tests/ref_ops.h $(TEST_SUPPORT) $(BUILD)/libvae.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -Itests -o $@ $< $(TEST_SUPPORT) $(BUILD)/libvae.a $(LDLIBS)

$(BUILD)/tests/ref_ops.o: tests/ref_ops.c tests/ref_ops.h include/vae.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -c $< -o $@

# Everything the suite needs, then the suite, once as built and once under AddressSanitizer and
# UndefinedBehaviorSanitizer, then a short run of each fuzz target; its last line is
# "N passed, N failed". SANITIZE=1: only the sanitizer build and the fuzz targets.
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SANITIZE ?= 0
ifeq ($(SANITIZE),1)
TEST_BUILDS := build-san
else
TEST_BUILDS := $(BUILD) build-san
endif
# The CUDA variant is built too when CUDA's nvcc is there; its GPU tests run where a GPU is
# (make test CUDA=1 runs the whole suite on it) and report themselves skipped elsewhere.
HAVE_NVCC := $(shell [ -x "$(NVCC)" ] && echo 1)
test:
	@scripts/install-deps.sh --test
	@if [ "$(SANITIZE)" != 1 ]; then $(MAKE) --no-print-directory tests; fi
	@$(MAKE) --no-print-directory CUDA=0 BUILD=build-san OPTFLAGS="$(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" tests
	@$(MAKE) --no-print-directory CUDA=0 fuzz
	@$(MAKE) --no-print-directory CUDA=0 MPI=1 all
	@if [ "$(HAVE_NVCC)" = 1 ] && [ "$(CUDA)" != 1 ]; then \
	    $(MAKE) --no-print-directory CUDA=1 all build-cuda/tests/test_cuda; fi
	@EXTRA_TESTS="$(if $(filter 1,$(HAVE_NVCC)),$(if $(filter 1,$(CUDA)),,build-cuda/tests/test_cuda))" \
	    tests/run.sh $(TEST_BUILDS) -- tests/fuzz_smoke.sh build-fuzz

# libFuzzer targets, one per reader, built with clang and ASan+UBSan into build-fuzz. The
# library is built there without OpenMP (clang's runtime and GCC's must not meet in one
# process); OpenBLAS keeps its own threads. `make fuzz-smoke` runs each briefly; for a long run:
#   build-fuzz/fuzz_idx -max_len=8192 -runs=1000000 COPY_OF_fuzz/corpus/idx
FUZZ_TARGETS := $(patsubst fuzz/%.c,build-fuzz/%,$(wildcard fuzz/fuzz_*.c))
FUZZ_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OMPFLAGS= \
	    OPTFLAGS="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -Wno-unknown-pragmas -Wno-source-uses-openmp" \
	    LDFLAGS="$(FUZZ_FLAGS)" $(FUZZ_TARGETS)

build-fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_file.h build-fuzz/libvae.a
	$(CC) $(ALL_CFLAGS) -D_GNU_SOURCE -fsanitize=fuzzer $(LDFLAGS) -o $@ $< build-fuzz/libvae.a $(LDLIBS)

fuzz-smoke:
	@scripts/install-deps.sh --test
	@$(MAKE) --no-print-directory fuzz
	@tests/run.sh -- tests/fuzz_smoke.sh build-fuzz

# The suite without installing anything or the sanitizer pass.
check: tests
	@tests/run.sh $(BUILD)

tests: all $(TEST_BIN)

# Trains the canonical model on Fashion-MNIST, measures it and writes pictures and a report to
# demo/.
demo: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/vae train --preset pytorch --epochs 10 --batch 128 --lr 1e-3 --out demo --force
	$(BUILD)/vae eval demo/model.safetensors -k 100 --json demo/eval.json -q
	$(BUILD)/vae plot-latent demo/model.safetensors -o demo/latent.png
	$(BUILD)/vae traverse demo/model.safetensors -o demo/traverse.png
	$(BUILD)/vae report demo
	$(BUILD)/vae explore demo/model.safetensors -o demo/explore.html
	$(BUILD)/vae train --preset pytorch --conditional --epochs 10 --out demo/conditional -q --force
	$(BUILD)/vae sample demo/conditional/model.safetensors -n 100 -o demo/classes.png

clean:
	rm -rf $(BUILD) build-san build-fuzz build-mpi build-cuda

# Installing: the libraries, the header, vae.pc, the program and its man page (help2man, from
# its --help), under DESTDIR/PREFIX; `make uninstall` with the same variables removes them all.
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
MANDIR       ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
INSTALLED = $(LIBDIR)/libvae.a $(LIBDIR)/libvae.so.$(VERSION) $(LIBDIR)/$(SONAME) \
            $(LIBDIR)/libvae.so $(INCLUDEDIR)/vae.h $(PKGCONFIGDIR)/vae.pc $(BINDIR)/vae \
            $(MANDIR)/man1/vae.1

$(BUILD)/vae.pc: scripts/vae.pc.in include/vae.h FORCE | $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|; s|@BLAS_DIR@|$(BLAS_DIR)|g' \
	    -e 's|@DNNL@|$(if $(filter 1,$(HAVE_DNNL)),-ldnnl ,)|' scripts/vae.pc.in >$@

$(BUILD)/vae.1: $(BUILD)/vae scripts/man.sh
	scripts/man.sh $(BUILD)/vae $@

install: all $(BUILD)/vae.pc $(BUILD)/vae.1
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(BUILD)/libvae.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(BUILD)/libvae.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libvae.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libvae.so
	install -m 644 include/vae.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(BUILD)/vae.pc $(DESTDIR)$(PKGCONFIGDIR)/
	install -m 755 $(BUILD)/vae $(DESTDIR)$(BINDIR)/
	install -m 644 $(BUILD)/vae.1 $(DESTDIR)$(MANDIR)/man1/

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# Side-by-side speed against PyTorch (needs Debian's python3-torch; installs it when missing).
$(BUILD)/gemm_limit: bench/gemm_limit.c $(BUILD)/libvae.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libvae.a $(LDLIBS)

# Where a training step's time goes (gather, forward, backward, check, Adam), and what the conv
# layers cost beyond their products.
$(BUILD)/step_phases $(BUILD)/conv_ops: $(BUILD)/%: bench/%.c $(BUILD)/libvae.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libvae.a $(LDLIBS)

bench: deps all $(BUILD)/gemm_limit $(BUILD)/step_phases $(BUILD)/conv_ops
	@scripts/install-deps.sh --bench
	/usr/bin/python3 bench/bench.py --build $(BUILD)

# On a GPU machine: vae --device cuda against its PyTorch twin on the same GPU (bench/cuda.sh).
bench-cuda:
	@$(MAKE) --no-print-directory CUDA=1 all
	sh bench/cuda.sh build-cuda

# The convolutional VAE against its PyTorch twin, one epoch each.
bench-conv: deps all
	@scripts/install-deps.sh --bench
	BUILD=$(BUILD) sh bench/conv.sh 1 2
