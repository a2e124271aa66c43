#!/bin/sh
# Usage: tests/run.sh [BUILD_DIR...] [-- SCRIPT ARGS...]
# Runs, for each build folder, every test binary in BUILD/tests and the shell tests in tests/
# (against BUILD/vae), then SCRIPT (sh SCRIPT ARGS) when given; counts their "ok", "not ok" and
# "skip" lines (a test whose hardware is absent) and ends with "N passed, N failed" (and
# ", N skipped" when any were). A program that crashes or exits non-zero without a
# "not ok" line counts as one failure.
set -u
builds=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do builds="$builds $1"; shift; done
[ $# -gt 0 ] && shift # the "--"
passed=0
failed=0
skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_one() { # NAME COMMAND...
    name=$1
    shift
    echo "== $name"
    "$@" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
    k=$(grep -c '^skip ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok $name exited with status $rc"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + k))
}

for build in $builds; do
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] && run_one "$t" "$t"
    done
    for t in tests/test_*.sh; do
        run_one "$t ($build)" sh "$t" "$build"
    done
done
# EXTRA_TESTS: more test binaries, run once each (the CUDA build's GPU tests)
for t in ${EXTRA_TESTS:-}; do
    run_one "$t" "$t"
done
[ $# -gt 0 ] && run_one "$*" sh "$@"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
