#!/bin/sh
# conv.sh — vae's `conv` preset and its PyTorch twin (bench/torch_conv_vae.py) trained side by
# side on Fashion-MNIST, same threads, batch and epochs; prints each one's samples per second,
# the ratio and the test -ELBO. Usage: sh bench/conv.sh [EPOCHS] [THREADS] (default 1, 2)
set -eu
epochs=${1:-1} threads=${2:-2}
build=${BUILD:-build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$build/vae" train --preset conv --epochs "$epochs" --threads "$threads" --out "$out/run" -q
ours=$(awk -F, 'NR > 1 { s += $8; n++; t = $5 } END { printf "%.0f %.3f", s / n, t }' "$out/run/train_log.csv")
# PyTorch at its best: vae's OpenBLAS kernels (where OpenBLAS misreads the CPU it would run
# SSE3 ones), and the faster of with and without OpenBLAS's own threads (they fight PyTorch's:
# 320 against 2,274 samples/s on 2 threads of the 2-core machines)
core=$("$build/vae" --version | sed -n 's/^kernels: \([A-Za-z0-9]*\).*/\1/p')
torch_run() { # NAME=VALUE: mean samples/s and last test -ELBO of one run with it set
    env "$1" ${core:+OPENBLAS_CORETYPE=$core} /usr/bin/python3 "$(dirname "$0")/torch_conv_vae.py" \
        --epochs "$epochs" --threads "$threads" |
        awk '{ s += $8; n++; t = $6 } END { printf "%.0f %.3f", s / n, t }'
}
theirs=$(torch_run VAE_BENCH=1)
if [ "$threads" -gt 1 ]; then
    other=$(torch_run OPENBLAS_NUM_THREADS=1)
    [ "${other%% *}" -gt "${theirs%% *}" ] && theirs=$other
fi
set -- $ours $theirs
echo "| conv preset, batch 128, $epochs epoch(s), $threads threads | samples/s | test -ELBO |"
echo "| --- | --- | --- |"
echo "| vae | $1 | $2 |"
echo "| PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') | $3 | $4 |"
awk -v a="$1" -v b="$3" 'BEGIN { printf "vae / PyTorch speed: %.2fx\n", a / b }'
