#!/bin/sh
# test_python.sh — the Python package's pytest suite (python/tests) against this build's
# libvae.so and vae, each pytest test as an "ok"/"not ok"/"skip" line for tests/run.sh.
# Usage: sh tests/test_python.sh BUILD_DIR (the normal build only: a sanitizer build's library
# cannot be loaded into a Python process without its runtime)
. "$(dirname "$0")/lib.sh"
case "$build" in build) ;; *) exit 0 ;; esac
if ! /usr/bin/python3 -c "import numpy, pytest" 2>/dev/null; then
    fail python_suite "python3-numpy and python3-pytest are not installed (make test installs them)"
    exit 0
fi
VAE_LIBRARY="$PWD/$build/libvae.so.0" VAE_PROGRAM="$PWD/$build/vae" FMNIST="$fmnist" \
    /usr/bin/python3 -m pytest -q -rA -p no:cacheprovider python/tests >"$tmp/log" 2>&1
rc=$?
sed -n 's/^PASSED \(.*\)/ok \1/p; s/^\(FAILED\|ERROR\) \(.*\)/not ok \2/p; s/^SKIPPED \[[0-9]*\] \(.*\)/skip \1/p' "$tmp/log"
tail -1 "$tmp/log" | sed 's/^/# pytest: /'
if [ "$rc" -ne 0 ] && ! grep -q '^\(FAILED\|ERROR\) ' "$tmp/log"; then
    fail python_suite "pytest exited $rc:" "$(tail -20 "$tmp/log")"
fi
