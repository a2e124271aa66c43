#!/bin/sh
# fuzz_smoke.sh — runs each libFuzzer target for a short time from its seed corpus (in a
# scratch copy, so new inputs stay out of the repository); a crash, leak, sanitizer report or
# out-of-memory fails it and keeps the input in fuzz/crashes/.
# Usage: sh tests/fuzz_smoke.sh BUILD_DIR [SECONDS]   (default 20 s per target)
set -u
build=${1:-build-fuzz}
seconds=${2:-${FUZZ_SECONDS:-20}}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
found=0
for target in "$build"/fuzz_*; do
    [ -x "$target" ] || continue
    found=1
    name=${target##*/}
    corpus="$tmp/$name"
    mkdir -p "$corpus" fuzz/crashes
    cp fuzz/corpus/"${name#fuzz_}"/* "$corpus"/ 2>/dev/null
    "$target" -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -timeout=10 -artifact_prefix=fuzz/crashes/"$name"- -print_final_stats=1 "$corpus" \
        >"$tmp/log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/log")
    if [ "$rc" -eq 0 ]; then
        echo "ok $name (${runs:-?} inputs in ${seconds} s)"
    else
        echo "not ok $name"
        grep -E "ERROR|SUMMARY|Test unit written|runtime error" "$tmp/log" | head -8 | sed 's/^/#   /'
    fi
done
[ "$found" -eq 1 ] || { echo "not ok fuzz_targets (none in $build)"; exit 1; }
exit 0
