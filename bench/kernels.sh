#!/bin/sh
# kernels.sh — what bounds the many-core figures of bench/cores.sh on this machine: the matrix
# products alone (gemm_limit: one step's products through cblas_sgemm, at each thread count),
# the kernels oneDNN picks for vae's fp32 and bf16 products (its verbose log), bf16 with the AMX
# tiles allowed, the MLP on all cores, the conv preset by thread count against PyTorch, and
# where a step's time goes on all cores (step_phases) with and without batch threads.
#   sh bench/kernels.sh [BUILD (build)] [EPOCHS (1)]    PYTHON, DATA as for cores.sh
set -u
build=${1:-build} epochs=${2:-1} data=${DATA:-/usr/share/datasets/fashion-mnist}
python=$(sh "$(dirname "$0")/torch_python.sh")
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cores=$(nproc)
core=$("$build/vae" --version | sed -n 's/^kernels: \([A-Za-z0-9]*\).*/\1/p')
echo "OpenBLAS kernels vae uses: $core"
echo "== the products alone (gemm_limit, OpenBLAS $core)"
for b in 128 1024; do
    for t in $(printf '%s\n' 1 2 4 8 16 "$cores" | sort -nu); do
        [ "$t" -le "$cores" ] || continue
        [ "$b" = 1024 ] && [ "$t" != "$cores" ] && continue
        OPENBLAS_CORETYPE=$core "$build/gemm_limit" --batch "$b" --threads "$t" --seconds 1
    done
done
OPENBLAS_CORETYPE=$core "$build/gemm_limit" --preset conv --threads "$cores" --seconds 1
train() { # LOG ARGS...: one run's last-epoch samples/s (0 if refused), its output in LOG
    log=$1
    shift
    rm -rf "$tmp/run"
    "$build/vae" train --device cpu -d "$data" --epochs "$epochs" --out "$tmp/run" --force \
        --no-test "$@" >"$log" 2>&1
    if [ -f "$tmp/run/train_log.csv" ]; then awk -F, 'END { print $8 }' "$tmp/run/train_log.csv"
    else echo "0 ($(tail -n 1 "$log"))"; fi
}
echo "== oneDNN's kernels (first verbose lines of a run)"
for p in fp32 bf16; do
    ONEDNN_VERBOSE=1 DNNL_VERBOSE=1 "$build/vae" train --device cpu -d "$data" --epochs 1 \
        --threads "$cores" --backend onednn --precision "$p" --out "$tmp/v" --force --no-test \
        2>&1 | grep -m 12 -E 'info|exec' | cut -c1-220
done
echo "== bf16, AMX allowed (ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX)"
for t in 1 "$cores"; do
    r=$(ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX DNNL_MAX_CPU_ISA=AVX512_CORE_AMX \
        train "$tmp/amx.log" --threads "$t" --backend onednn --precision bf16)
    echo "MLP batch 128, $t threads, bf16 AMX allowed: $r samples/s"
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_AMX DNNL_MAX_CPU_ISA=AVX512_CORE_AMX ONEDNN_VERBOSE=1 \
        DNNL_VERBOSE=1 "$build/vae" train --device cpu -d "$data" --epochs 1 --threads "$t" \
        --backend onednn --precision bf16 --out "$tmp/v" --force --no-test 2>&1 |
        grep -m 3 exec | cut -c1-220
done
echo "== MLP batch 128, $cores threads (samples/s: OpenBLAS, oneDNN, OpenBLAS + batch threads)"
for opts in "--backend openblas" "--backend onednn" "--backend openblas --batch-threads on"; do
    echo "$opts: $(train "$tmp/m.log" --threads "$cores" $opts)"
done
echo "== conv preset by threads (samples/s: oneDNN, oneDNN + batch threads, PyTorch)"
for t in $(printf '%s\n' 4 8 "$cores" | sort -nu); do
    [ "$t" -le "$cores" ] || continue
    a=$(train "$tmp/c.log" --preset conv --threads "$t" --backend onednn)
    b=$(train "$tmp/c.log" --preset conv --threads "$t" --backend onednn --batch-threads on)
    c=$("$python" "$here/torch_conv_vae.py" --data "$data" --epochs "$epochs" --batch 128 \
        --threads "$t" | awk 'END { print $8 }')
    echo "conv, $t threads: $a / $b / $c"
done
echo "== where a step's time goes on all cores (step_phases, oneDNN; with batch threads the"
echo "   'forward' is the threads' slices, the 'backward' the parameters' gradients;"
echo "   prepacked: on the dense weights transposed once a step)"
if [ -x "$build/step_phases" ]; then
    for b in 128 1024; do
        for split in "" --batch-threads --prepacked; do
            "$build/step_phases" --batch "$b" --threads "$cores" --backend onednn $split
        done
    done
else
    echo "($build/step_phases not built: make $build/step_phases)"
fi
