#!/bin/sh
# GPU side by side, in one run on one GPU: `vae train --device cuda` against its PyTorch twin
# (bench/torch_vae_cuda.py: eager with fused Adam, and the whole step as one CUDA graph), the
# canonical model on Fashion-MNIST, plus vae on the CPU for the quality comparison.
# Prints each run's samples/s (the median epoch after the first, which captures the graphs),
# test -ELBO after EPOCHS epochs, kernel launches per step and device memory, then the ratios.
#
#   sh bench/cuda.sh [BUILD (build-cuda)] [DATA_DIR] [EPOCHS (10)]      (or: make bench-cuda)
set -eu
BUILD=${1:-build-cuda}
DATA=${2:-/usr/share/datasets/fashion-mnist}
EPOCHS=${3:-10}
PYTHON=${PYTHON:-python3}
VAE="$BUILD/vae"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# vae NAME ARGS...: one training run; its summary line
vae_run() {
    name=$1
    shift
    "$VAE" train -d "$DATA" --epochs "$EPOCHS" --out "$tmp/$name" "$@" >"$tmp/$name.log" 2>&1 ||
        { cat "$tmp/$name.log"; echo "bench: vae $name failed" >&2; exit 1; }
    awk -v name="$name" '
        /^epoch/ { for (i = 1; i <= NF; i++) {
                       if ($i == "samples/s") rate[++n] = $(i - 1)
                       if ($i == "test") test = $(i + 1)
                       if ($i == "[cuda:") launches = $(i + 1)
                       if ($i == "MB]") mb = $(i - 1) } }
        END { m = 0; for (i = 2; i <= n; i++) r[++m] = rate[i]; if (m == 0) r[++m] = rate[1]
              for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
              printf "vae %s samples_per_s %.0f test_neg_elbo %s launches_per_step %s device_mb %s\n",
                     name, r[int((m + 1) / 2)], test, launches == "" ? "-" : launches, mb == "" ? "-" : mb }' \
        "$tmp/$name.log" | tee -a "$tmp/summary"
}

echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
"$VAE" --version | head -2
vae_run cuda-b128-fp32 --device cuda --batch 128
vae_run cuda-b128-tf32 --device cuda --batch 128 --precision tf32
vae_run cuda-b1024-fp32 --device cuda --batch 1024
vae_run cuda-b1024-tf32 --device cuda --batch 1024 --precision tf32
vae_run conv-b128-fp32 --device cuda --batch 128 --preset conv
vae_run conv-b128-tf32 --device cuda --batch 128 --preset conv --precision tf32
# evaluation: -log p(x) with K = 5000 importance samples over the whole test set on the GPU,
# timed; and the first 200 examples on both devices, whose estimates must agree
MODEL="$tmp/cuda-b128-fp32/model.safetensors"
TEST="$DATA/t10k-images-idx3-ubyte.gz"
eval_run() { # NAME ARGS...: timed vae eval
    name=$1
    shift
    t0=$(date +%s.%N)
    "$VAE" eval "$MODEL" "$TEST" -q "$@" >"$tmp/$name.log" 2>&1 ||
        { cat "$tmp/$name.log"; echo "bench: vae eval $name failed" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v name="$name" -v t0="$t0" -v t1="$t1" '
        /^-log p\(x\)/ { nll = $3 } /^-ELBO/ { elbo = $2 }
        END { printf "eval %s seconds %.2f neg_elbo %s nll %s\n", name, t1 - t0, elbo, nll }' \
        "$tmp/$name.log" | tee -a "$tmp/summary"
}
eval_run cuda-k5000 -k 5000 --device cuda
eval_run cuda-k5000-tf32 -k 5000 --device cuda --precision tf32
eval_run cuda-n200 -k 5000 -n 200 --device cuda
eval_run cpu-n200 -k 5000 -n 200 --device cpu

# the CPU's run is the quality reference (SKIP_CPU=1 leaves it out: slow on a few cores)
[ "${SKIP_CPU:-0}" = 1 ] || vae_run cpu-b128 --device cpu --batch 128
"$PYTHON" "$(dirname "$0")/torch_vae_cuda.py" --data "$DATA" --epochs "$EPOCHS" | tee -a "$tmp/summary"

awk '
    $1 == "vae" { rate[$2] = $4; test[$2] = $6 }
    $1 == "torch" && $5 == "graph" { key = $3 "-" $7 "-" $9; trate[key] = $13; ttest[key] = $15 }
    $1 == "eval" { esec[$2] = $4; enll[$2] = $8 }
    END {
        printf "eval: K=5000 over 10,000 test images on the GPU: fp32 %s s, tf32 %s s; first 200: -log p(x) cuda %s, cpu %s\n",
               esec["cuda-k5000"], esec["cuda-k5000-tf32"], enll["cuda-n200"], enll["cpu-n200"]
        printf "ratios: vae cuda / PyTorch CUDA graph: b128 fp32 %.2fx, b128 tf32 %.2fx, b1024 fp32 %.2fx, b1024 tf32 %.2fx, conv b128 fp32 %.2fx, conv b128 tf32 %.2fx\n",
               rate["cuda-b128-fp32"] / trate["128-fp32-mlp"], rate["cuda-b128-tf32"] / trate["128-tf32-mlp"],
               rate["cuda-b1024-fp32"] / trate["1024-fp32-mlp"], rate["cuda-b1024-tf32"] / trate["1024-tf32-mlp"],
               rate["conv-b128-fp32"] / trate["128-fp32-conv"], rate["conv-b128-tf32"] / trate["128-tf32-conv"]
        cpu = test["cpu-b128"] == "" ? "not run" : sprintf("%s (cuda/cpu - 1 = %+.3f%%)", test["cpu-b128"],
              100 * (test["cuda-b128-fp32"] / test["cpu-b128"] - 1))
        printf "quality: test -ELBO after the epochs: vae cuda fp32 %s, tf32 %s, cpu %s; PyTorch graph fp32 %s\n",
               test["cuda-b128-fp32"], test["cuda-b128-tf32"], cpu, ttest["128-fp32-mlp"]
    }' "$tmp/summary"
