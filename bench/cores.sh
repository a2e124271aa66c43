#!/bin/sh
# cores.sh — the many-core figures of issue 16, side by side in one run: vae (both CPU
# backends) and its PyTorch twin (bench/torch_vae.py, bench/torch_conv_vae.py) on the same
# machine, data, model, batch and thread count: the canonical MLP at batch 128 for 1, 2, 4, ...
# threads up to the machine's cores, then at batch 1024 and the conv preset on all cores.
# Prints the CPU, its features and vae's kernels, then one row per setting with samples/s of
# the last epoch (vae: OpenBLAS, oneDNN, and batch threads on OpenBLAS) and vae's best over
# PyTorch.
#   sh bench/cores.sh [BUILD (build)] [EPOCHS (2)]     PYTHON: the Python with torch (python3)
set -eu
build=${1:-build} epochs=${2:-2}
python=${PYTHON:-python3}
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cores=$(nproc)
echo "CPU: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $cores cores"
echo "features: $(grep -o 'avx2\|avx512f\|avx512_bf16\|amx_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "vae: $("$build/vae" --version | tr '\n' ';')"
echo "PyTorch: $("$python" -c 'import torch; print(torch.__version__, torch.backends.mkldnn.is_available())')"

vae_rate() { # PRESET BATCH THREADS BACKEND [--batch-threads]: samples/s of vae's last epoch
    "$build/vae" train --preset "$1" --batch "$2" --threads "$3" --backend "$4" --epochs "$epochs" \
        --no-test --out "$tmp/run" --force -q ${5:-} >/dev/null 2>&1
    awk -F, 'END { print $8 }' "$tmp/run/train_log.csv"
}
torch_rate() { # PRESET BATCH THREADS: samples/s of PyTorch's last epoch
    script=$here/torch_vae.py
    [ "$1" = conv ] && script=$here/torch_conv_vae.py
    set -- "$script" --epochs "$epochs" --batch "$2" --threads "$3" $([ "$1" = conv ] || echo --preset "$1")
    "$python" "$@" | awk 'END { print $8 }'
}
row() { # PRESET BATCH THREADS
    a=$(vae_rate "$1" "$2" "$3" openblas) b=$(vae_rate "$1" "$2" "$3" onednn)
    d=$(vae_rate "$1" "$2" "$3" openblas --batch-threads) c=$(torch_rate "$1" "$2" "$3")
    awk -v p="$1" -v bt="$2" -v t="$3" -v a="$a" -v b="$b" -v c="$c" -v d="$d" 'BEGIN {
        best = a > b ? a : b
        best = d > best ? d : best
        printf "| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %.2fx |\n", p, bt, t, a, b, d, c,
            best / c }'
}
echo "| model | batch | threads | vae OpenBLAS | vae oneDNN | vae batch threads | PyTorch | vae / PyTorch |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
t=1
while [ "$t" -le "$cores" ]; do
    row pytorch 128 "$t"
    t=$((t * 2))
done
[ $((t / 2)) -eq "$cores" ] || row pytorch 128 "$cores"
row pytorch 1024 "$cores"
row conv 128 "$cores"
