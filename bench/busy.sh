#!/bin/sh
# busy.sh — does the default thread count collapse when another process keeps a core busy?
# Trains one epoch of the canonical model with the default threads and with --threads 1, first
# on an idle machine, then while a CPU-bound process runs beside it, and prints each time and
# the ratios (issue 11's goal: busy, the default no slower than 1.15x --threads 1; idle, at
# least 1.6x faster than --threads 1 on 2 cores).
#
#   sh bench/busy.sh [BUILD (build)]
set -eu
build=${1:-build}
tmp=$(mktemp -d)
hog=""
trap '[ -n "$hog" ] && kill $hog 2>/dev/null; rm -rf "$tmp"' EXIT
epoch() { # ARGS...: seconds of one epoch's training steps
    "$build/vae" train --epochs 1 --no-test --out "$tmp/run" --force -q "$@" >/dev/null 2>&1
    awk -F, 'NR == 2 { print $9 }' "$tmp/run/train_log.csv"
}
idle_default=$(epoch) idle_one=$(epoch --threads 1)
sh -c 'while :; do :; done' &
hog=$!
busy_default=$(epoch) busy_one=$(epoch --threads 1)
kill $hog
hog=""
echo "cores: $(nproc); kernels: $("$build/vae" --version | sed -n 's/^kernels: //p')"
awk -v a="$idle_default" -v b="$idle_one" -v c="$busy_default" -v d="$busy_one" 'BEGIN {
    printf "idle: default threads %.2f s, --threads 1 %.2f s: the default is %.2fx faster\n", a, b, b / a
    printf "busy: default threads %.2f s, --threads 1 %.2f s: the default takes %.2fx as long\n", c, d, c / d }'
# what the machine allows: the same step's matrix products alone (bench/gemm_limit.c, `make
# bench` builds it) on 1 and on all cores, with the kernels vae chose
if [ -x "$build/gemm_limit" ]; then
    core=$("$build/vae" --version | sed -n 's/^kernels: \([A-Za-z0-9]*\) (chosen by vae.*/\1/p')
    rate() { OPENBLAS_CORETYPE=${core:-${OPENBLAS_CORETYPE:-}} "$build/gemm_limit" --threads "$1" --seconds 2 |
        sed -n 's/.*limit_samples_per_s \([0-9]*\).*/\1/p'; }
    one=$(rate 1) all=$(rate "$(nproc)")
    awk -v a="$one" -v b="$all" -v n="$(nproc)" 'BEGIN {
        printf "the products alone: %d samples/s on 1 thread, %d on %d: %.2fx\n", a, b, n, b / a }'
fi
