#!/bin/sh
# device_run.sh [BUILD (build-cuda)] [DIR (.dev)] — on the GPU machine, with BUILD and the bundle
# of scripts/device_bundle.sh carried: the machine's CPU and GPU, the GPU tests under
# compute-sanitizer with the CUDA bench (tests/cuda_check.sh), then the many-core CPU table
# (bench/cores.sh, against the machine's PyTorch). Everything goes to $OUT (or device-out);
# PARTS (default "cuda cores") picks which run (kernels: bench/kernels.sh, what bounds the
# cores table; gputest: the GPU tests alone; cputest: test_backend, its AMX branches on a CPU
# with tiles; cudabench: the CUDA bench alone, for a short lease; conv: the conv preset on all
# cores and on 4, its layers (conv_ops), a step's phases in fp32 and bf16 and oneDNN's time in
# each by primitive (bench/dnnl_profile.sh), then its rows of the cores table; phases: a
# step's phases at 4, 8 and all threads (PHASE_THREADS: others), each split: products, batch
# threads, batch threads on prepacked weights, about a minute), EPOCHS the cores table's
# epochs (1), CUDA_EPOCHS the CUDA bench's (10).
# Carry BUILD/gemm_limit and BUILD/step_phases for kernels, BUILD/conv_ops and
# BUILD/step_phases for conv, BUILD/step_phases for phases, BUILD/tests/test_backend for
# cputest.
set -u
build=${1:-build-cuda} dir=${2:-.dev}
out=${OUT:-device-out}
mkdir -p "$out"
tar -C "$dir" -xJf "$dir/lib.tar.xz"
export LD_LIBRARY_PATH="$PWD/$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{ lscpu; nvidia-smi 2>&1; "$build/vae" --version; } >"$out/machine.txt" 2>&1
status=0
for part in ${PARTS:-cuda cores}; do
    t0=$(date +%s)
    case $part in
    cuda) EPOCHS=${CUDA_EPOCHS:-10} sh tests/cuda_check.sh "$build" "$out/cuda" "$dir/data" \
        >"$out/cuda.txt" 2>&1 ;;
    gputest) "$build/tests/test_cuda" >"$out/gputest.txt" 2>&1 ;;
    cputest) "$build/tests/test_backend" >"$out/cputest.txt" 2>&1 ;; # the AMX branches
    cudabench) sh bench/cuda.sh "$build" "$dir/data" "${CUDA_EPOCHS:-10}" >"$out/cudabench.txt" \
        2>&1 ;;
    cores) DATA="$dir/data" sh bench/cores.sh "$build" "${EPOCHS:-1}" >"$out/cores.txt" 2>&1 ;;
    kernels) DATA="$dir/data" sh bench/kernels.sh "$build" >"$out/kernels.txt" 2>&1 ;;
    conv) n=$(nproc)
        { "$build/conv_ops" --threads "$n"
          for p in "" --bf16; do
              "$build/step_phases" --preset conv --threads "$n" --backend onednn $p
          done
          for p in "" --bf16; do # where oneDNN's time goes, primitive by primitive
              sh bench/dnnl_profile.sh "$build/step_phases" --preset conv --threads "$n" \
                  --backend onednn --seconds 2 $p
          done
          ROWS="conv:128:$n conv:128:4" DATA="$dir/data" sh bench/cores.sh "$build" "${EPOCHS:-1}"
        } >"$out/conv.txt" 2>&1 ;;
    phases) n=$(nproc)
        for t in $(printf '%s\n' ${PHASE_THREADS:-4 8 $n} | sort -nu); do
            for preset in pytorch conv; do
                for split in "" --batch-threads --prepacked; do
                    "$build/step_phases" --preset "$preset" --threads "$t" --backend onednn \
                        $split
                done
            done
        done >"$out/phases.txt" 2>&1 ;;
    *) echo "device_run: unknown part $part" >"$out/$part.txt"; false ;;
    esac
    rc=$?
    [ "$rc" -eq 0 ] || status=1
    echo "== $part: exit $rc after $(($(date +%s) - t0)) s"
    tail -n 30 "$out/$part.txt"
done
exit $status
