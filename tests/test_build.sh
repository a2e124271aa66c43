#!/bin/sh
# test_build.sh — builds that cannot go stale (issue 11). On this project's image netlib's
# libblas-dev is installed beside OpenBLAS; a build made before OpenBLAS's headers were there
# compiled src/core/threads.c against netlib's cblas.h, where openblas_get_config is not
# declared: the implicit declaration truncated the returned pointer and `vae --version` died
# with SIGSEGV. This reproduces that crash, then shows the three guards: the compiler refuses
# the undeclared call, `make` names missing packages before compiling anything, and objects
# are rebuilt when the configuration changes.
# Usage: sh tests/test_build.sh BUILD_DIR (the build is not used: it compiles its own objects)
. "$(dirname "$0")/lib.sh"

netlib=/usr/include/x86_64-linux-gnu/cblas-netlib.h
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
mkdir -p "$tmp/netlib"
cat >"$tmp/probe.c" <<'EOF'
#include <stdio.h>
#include <string.h>
const char *vae_blas_info(void);
int main(void) { const char *s = vae_blas_info(); printf("%.8s\n", s); return strncmp(s, "OpenBLAS", 8) != 0; }
EOF
if [ ! -f "$netlib" ] || [ ! -d "$blas" ]; then
    echo "skip stale_header_crash (netlib's cblas-netlib.h or OpenBLAS's OpenMP build is not installed)"
else
    cp "$netlib" "$tmp/netlib/cblas.h"
    # 1. the old build: threads.c against netlib's header, without the guard -> a crash later
    if cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -fopenmp -w -I"$tmp/netlib" -Iinclude -Isrc \
        -c src/core/threads.c -o "$tmp/threads.o" 2>"$tmp/cc1" &&
        cc -fopenmp -o "$tmp/probe" "$tmp/probe.c" "$tmp/threads.o" -L"$blas" -Wl,-rpath,"$blas" \
            -lopenblas 2>>"$tmp/cc1"; then
        "$tmp/probe" >"$tmp/out1" 2>&1
        rc=$?
        # SIGSEGV (139) is what was seen; any run that does not return OpenBLAS's text shows it
        if [ "$rc" -ne 0 ]; then ok stale_header_crash_reproduced; else
            fail stale_header_crash_reproduced "the truncated pointer still worked: $(cat "$tmp/out1")"; fi
    else
        fail stale_header_crash_reproduced "could not compile the old way: $(head -3 "$tmp/cc1")"
    fi
    # 2. the same compile with the project's flags, OpenBLAS's header folder not there yet, is
    # refused, naming the undeclared function
    flags=$(make -s --no-print-directory -f Makefile -f - print-cflags <<'EOF' | sed 's|-I[^ ]*openblas[^ ]*||'
print-cflags: ; @echo '$(ALL_CFLAGS)'
EOF
)
    if cc $flags -I"$tmp/netlib" -c src/core/threads.c -o "$tmp/threads2.o" 2>"$tmp/cc2"; then
        fail stale_header_refused "compiled against netlib's cblas.h with: $flags"
    elif grep -q "implicit declaration of function .openblas_" "$tmp/cc2"; then
        ok stale_header_refused
    else
        fail stale_header_refused "refused, but not for the undeclared call: $(head -3 "$tmp/cc2")"
    fi
fi

# 3. missing packages are named before the first object: a dpkg-query that knows none of them
mkdir -p "$tmp/bin"
printf '#!/bin/sh\necho "unknown-package"\nexit 1\n' >"$tmp/bin/dpkg-query"
chmod +x "$tmp/bin/dpkg-query"
PATH="$tmp/bin:$PATH" make --no-print-directory BUILD="$tmp/b1" CUDA=0 MPI=0 all >"$tmp/make1" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "missing Debian packages:.*libopenblas-dev" "$tmp/make1" &&
    [ -z "$(find "$tmp/b1" -name '*.o' 2>/dev/null)" ]; then
    ok missing_packages_named_before_compiling
else
    fail missing_packages_named_before_compiling "exit $rc; objects: $(find "$tmp/b1" -name '*.o' 2>/dev/null | head -3)" \
        "$(tail -3 "$tmp/make1")"
fi

# 4. an object compiled in one configuration is rebuilt in another, and only then
obj="$tmp/b2/src/core/threads.o"
compiles() { # MAKE-ARGS...: 1 when make compiled threads.c, else 0
    make --no-print-directory BUILD="$tmp/b2" CUDA=0 MPI=0 "$@" "$obj" 2>&1 | grep -c ' -c src/core/threads.c'; }
first=$(compiles) same=$(compiles) other=$(compiles CFLAGS=-DVAE_TEST_OTHER)
if [ -f "$obj" ] && [ "$first" = 1 ] && [ "$same" = 0 ] && [ "$other" = 1 ]; then
    ok objects_follow_the_configuration
else
    fail objects_follow_the_configuration "compiled: first build $first (want 1), again with the same" \
        "flags $same (want 0), with other flags $other (want 1)"
fi
