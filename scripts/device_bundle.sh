#!/bin/sh
# device_bundle.sh [BUILD (build-cuda)] [DIR (.dev)] — what the GPU machine needs to run BUILD's
# program, tests and benches: it has CUDA, PyTorch and a C runtime but none of the Debian
# libraries vae links, and no registry. DIR/lib.tar.xz holds those libraries as ldd finds them
# (the C runtime, CUDA and the driver left out), DIR/data Fashion-MNIST's four files: 42 MiB,
# with the two programs under the 64 MiB the device tool carries. Build first (make CUDA=1 all
# build-cuda/tests/test_cuda), then on the device: sh scripts/device_run.sh, carrying DIR,
# BUILD/vae and BUILD/tests/test_cuda (the run tool's carry: [".dev", "build-cuda/vae",
# "build-cuda/tests/test_cuda"]).
set -eu
build=${1:-build-cuda} dir=${2:-.dev}
data=${DATA:-/usr/share/datasets/fashion-mnist}
[ -x "$build/vae" ] || { echo "device_bundle: no $build/vae (build it first)" >&2; exit 66; }
rm -rf "$dir"
mkdir -p "$dir/lib" "$dir/data"
for bin in "$build/vae" "$build"/tests/test_*; do
    [ -x "$bin" ] && ldd "$bin"
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
    grep -v -E '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s)\.so|ld-linux|/usr/local/cuda|libcuda\.so' |
    while read -r lib; do cp -L "$lib" "$dir/lib/"; done
tar -C "$dir" -cJf "$dir/lib.tar.xz" lib
rm -rf "$dir/lib"
cp "$data"/*-ubyte.gz "$dir/data/"
echo "$dir: $(du -sh "$dir" | cut -f1): $(tar -tJf "$dir/lib.tar.xz" | grep -c '\.so') libraries and $(ls "$dir/data" | wc -l) data files"
