#!/bin/sh
# make_corpus.sh — writes the fuzzers' seed files (committed under fuzz/corpus; rerun after a
# format change): valid small IDX files in every mode, and a tiny model and training checkpoint.
# Usage: sh fuzz/make_corpus.sh BUILD_DIR
set -eu
build=${1:-build}
out=fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# IDX: 6 images of 4x4 and their labels
images() { printf '\000\000\010\003\000\000\000\006\000\000\000\004\000\000\000\004'; head -c 96 /dev/urandom; }
labels() { printf '\000\000\010\001\000\000\000\006\000\001\002\003\004\005'; }
images >"$tmp/x-images-idx3-ubyte"
labels >"$tmp/x-labels-idx1-ubyte"
# fuzz_idx input: mode byte (bit 0: with labels), 2-byte big-endian split, then the file(s)
{ printf '\000\000\000'; cat "$tmp/x-images-idx3-ubyte"; } >"$out/idx/plain"
{ printf '\000\000\000'; gzip -c "$tmp/x-images-idx3-ubyte"; } >"$out/idx/gzip"
{ printf '\001\000\160'; cat "$tmp/x-images-idx3-ubyte" "$tmp/x-labels-idx1-ubyte"; } >"$out/idx/labels"
n=$(gzip -c "$tmp/x-images-idx3-ubyte" | wc -c)
{ printf '\001\000'; printf "\\$(printf %03o "$n")"; gzip -c "$tmp/x-images-idx3-ubyte";
  gzip -c "$tmp/x-labels-idx1-ubyte"; } >"$out/idx/gzip-labels"

# safetensors: a 16-4-(2)-4-16 model trained one epoch, and its checkpoint
"$build/vae" train --train "$tmp/x-images-idx3-ubyte" --train-labels "$tmp/x-labels-idx1-ubyte" \
    --no-test --encoder 4 --decoder 4 --latent 2 --epochs 1 --batch 3 --out "$tmp/run" -q
cp "$tmp/run/model.safetensors" "$out/safetensors/model"
cp "$tmp/run/checkpoint.safetensors" "$out/safetensors/checkpoint"
ls -l "$out/idx" "$out/safetensors"
