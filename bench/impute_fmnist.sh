#!/bin/sh
# impute_fmnist.sh — Fashion-MNIST with 50% of the pixels missing completely at random (seed 1):
# train on the masked training images (--missing, importance-weighted with K=5), fill in the
# masked test images, and print the RMSE on the missing pixels beside mean and zero imputation.
# Usage: sh bench/impute_fmnist.sh [EPOCHS] (default 5)
set -eu
epochs=${1:-5}
build=${BUILD:-build}
d=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/vae" mask "$d/train-images-idx3-ubyte.gz" --fraction 0.5 --seed 1 -o "$tmp/train.npy" 2>/dev/null
"$build/vae" mask "$d/t10k-images-idx3-ubyte.gz" --fraction 0.5 --seed 2 -o "$tmp/test.npy" 2>/dev/null
"$build/vae" train --train "$tmp/train.npy" --missing --preset pytorch --iwae 5 --epochs "$epochs" \
    --no-test --out "$tmp/m" -q
"$build/vae" impute "$tmp/m/model.safetensors" "$tmp/test.npy" -k 100 -o "$tmp/filled.npy" \
    --truth "$d/t10k-images-idx3-ubyte.gz" 2>/dev/null
