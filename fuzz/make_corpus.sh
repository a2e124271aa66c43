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
# CSV: plain, sklearn's header line, gzip; .npy: float32, float64 and uint8 images (numpy)
printf '1,2,3\n4,5.5,-6e-1\n' >"$out/csv/plain"
printf '150,4,setosa,versicolor,virginica\r\n5.1,3.5,1.4,0.2,0\r\n4.9,3.0,1.4,0.2,2\r\n' >"$out/csv/sklearn"
printf 'a,b\n1,2\n3,4\n' | gzip -c >"$out/csv/gzip"
printf 'a,b,c\n1,,3\nnan,2,1\n4,NA,0\n' >"$out/csv/missing"
/usr/bin/python3 - "$out/npy" <<'PY'
import sys, numpy as np
d = sys.argv[1]
for name, a in [("f4", np.arange(6, dtype="<f4").reshape(2, 3)), ("f8", np.array([0.5, -1, 2], "<f8")),
                ("u1", np.arange(8, dtype="u1").reshape(2, 2, 2))]:
    with open(f"{d}/{name}", "wb") as f:
        np.save(f, a)
PY
ls -l "$out"/*
