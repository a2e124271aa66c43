#!/bin/sh
# Usage: tests/run.sh BUILD_DIR...
# Runs, for each build folder, every test binary in BUILD/tests and the shell tests in tests/
# (against BUILD/vae), counts their "ok" and "not ok" lines, and ends with "N passed, N failed".
# A binary that crashes or exits non-zero without a "not ok" line counts as one failure.
set -u
[ $# -gt 0 ] || set -- build
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for build in "$@"; do
for t in "$build"/tests/test_* tests/test_*.sh; do
    [ -x "$t" ] || [ "${t%.sh}" != "$t" ] || continue
    case "$t" in *.sh) cmd="sh $t $build" ;; *) cmd="$t" ;; esac
    echo "== $t"
    $cmd >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok $t exited with status $rc"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
done
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
