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
theirs=$(/usr/bin/python3 "$(dirname "$0")/torch_conv_vae.py" --epochs "$epochs" --threads "$threads" |
    awk '{ s += $8; n++; t = $6 } END { printf "%.0f %.3f", s / n, t }')
set -- $ours $theirs
echo "| conv preset, batch 128, $epochs epoch(s), $threads threads | samples/s | test -ELBO |"
echo "| --- | --- | --- |"
echo "| vae | $1 | $2 |"
echo "| PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') | $3 | $4 |"
awk -v a="$1" -v b="$3" 'BEGIN { printf "vae / PyTorch speed: %.2fx\n", a / b }'
