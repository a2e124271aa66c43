#!/bin/sh
# cores.sh — the many-core figures of issue 16, side by side in one run: vae (both CPU
# backends) and its PyTorch twin (bench/torch_vae.py, bench/torch_conv_vae.py) on the same
# machine, data, model, batch and thread count: the canonical MLP at batch 128 for 1, 2, 4, ...
# threads up to the machine's cores, then at batch 1024 and the conv preset on all cores.
# Prints the CPU, its features, its cores and vae's kernels, then one row per setting with samples/s
# of the last epoch (vae: OpenBLAS, oneDNN, batch threads on the faster of the two, and --precision
# bf16 on oneDNN with the faster of its two splits; PyTorch in fp32 and under bf16 autocast, with
# vae's OpenBLAS kernels, and on OpenBLAS the faster of with and without OpenBLAS's own threads),
# vae's best fp32 over PyTorch's fp32, vae's bf16 over PyTorch's bf16, vae's best of any column over
# PyTorch's best, what `--batch-threads auto` chose, and vae's peak memory (the largest resident set
# of its runs in the row) against the budget of issue 16: the data's floats + 64 MiB + 4 MiB per
# thread.
#   sh bench/cores.sh [BUILD (build)] [EPOCHS (2)]     PYTHON: the Python with torch (the first
#                                                       of python3, /usr/bin/python3 that has it),
#                                                       DATA: Fashion-MNIST's folder, ROWS:
#                                                       only these rows, e.g. "pytorch:1024:16
#                                                       conv:128:4" (preset:batch:threads),
#                                                       REPEAT: runs of each row (1; more on
#                                                       a noisy machine: the rows, then each
#                                                       row's median best / best)
set -eu
build=${1:-build} epochs=${2:-2} data=${DATA:-/usr/share/datasets/fashion-mnist}
python=$(sh "$(dirname "$0")/torch_python.sh")
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cores=$(nproc)
echo "CPU: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $cores cores"
echo "features: $(grep -o 'avx2\|avx512f\|avx512_bf16\|amx_bf16\|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
# two hardware threads of one core share its multiply units: scaling past the physical cores
# is not to be had on compute-bound work
echo "topology: $(sed -n 's/^cpu cores[^:]*: //p' /proc/cpuinfo | head -1) cores per socket," \
    "$(sed -n 's/^siblings[^:]*: //p' /proc/cpuinfo | head -1) hardware threads per socket," \
    "$(sort -u /sys/devices/system/cpu/cpu*/topology/physical_package_id 2>/dev/null | wc -l) socket(s);" \
    "cpu0 shares its core with CPUs $(cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list 2>/dev/null)"
# a program that does not start (a library missing) would otherwise fill the table with zeros
version=$("$build/vae" --version 2>&1) ||
    { echo "cores.sh: $build/vae does not run: $version" >&2; exit 1; }
echo "vae: $(echo "$version" | tr '\n' ';')"
echo "PyTorch: $("$python" -c 'import torch; print(torch.__version__, torch.backends.mkldnn.is_available())')"

# the data's floats in MiB: Fashion-MNIST's 60,000 training and 10,000 test images of 784
data_mib=$(awk 'BEGIN { printf "%.1f", 70000 * 784 * 4 / 1048576 }')
vae_rate() { # PRESET BATCH THREADS BACKEND SPLIT [PRECISION]: samples/s of vae's last epoch
    rm -rf "$tmp/run" # (0: the run was refused, as bf16 is where the CPU lacks its instructions)
    kib=$("$python" -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$build/vae" train --device cpu -d "$data" --preset "$1" \
        --batch "$2" --threads "$3" --backend "$4" --batch-threads "$5" --epochs "$epochs" \
        --precision "${6:-fp32}" --out "$tmp/run" --force -q)
    echo "$kib" >>"$tmp/peaks" # (a function called in $(...) cannot set a variable)
    if [ -f "$tmp/run/train_log.csv" ]; then awk -F, 'END { print $8 }' "$tmp/run/train_log.csv"
    else echo 0; fi
}
splits='each batch, on prepacked weights\|each batch\|the products' # as the banner says
auto_choice() { # PRESET BATCH THREADS: what --batch-threads auto takes
    "$build/vae" train --device cpu -d "$data" --preset "$1" --batch "$2" --threads "$3" \
        --batch-threads auto --epochs 1 \
        --no-test --out "$tmp/auto" --force 2>&1 |
        sed -n "s/.*the threads split \\($splits\\).*/\\1/p" | head -1
}
# PyTorch gets the OpenBLAS kernels vae uses: where its BLAS is OpenBLAS (Debian's PyTorch) and
# OpenBLAS misreads the CPU, it would otherwise run SSE3 kernels that vae does not (the 2-core
# machines: 11k samples/s on one thread against 21k with SkylakeX's); a no-op for one on MKL
core=$("$build/vae" --version | sed -n 's/^kernels: \([A-Za-z0-9]*\).*/\1/p')
torch_blas=$("$python" -c 'import torch, re
m = re.search("BLAS_INFO=([a-z]*)", torch.__config__.show()); print(m.group(1) if m else "?")')
echo "PyTorch's BLAS: $torch_blas; OpenBLAS kernels for both: ${core:-as detected}"
larger() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > a ? b : a) }'; } # A B: the larger
torch_once() { # NAME=VALUE PRESET BATCH THREADS [--bf16]: one run's last-epoch samples/s,
    # with NAME=VALUE in its environment
    envs=$1 && shift
    script=$here/torch_vae.py
    [ "$1" = conv ] && script=$here/torch_conv_vae.py
    set -- "$script" --data "$data" --epochs "$epochs" --batch "$2" --threads "$3" \
        $([ "$1" = conv ] || echo --preset "$1") ${4:-}
    env "$envs" ${core:+OPENBLAS_CORETYPE=$core} "$python" "$@" | awk 'END { print $8 }'
}
torch_rate() { # PRESET BATCH THREADS [--bf16]: samples/s of PyTorch's best setting: on
    # OpenBLAS with threads, also with OpenBLAS's own threads off (PyTorch's OpenMP threads and
    # OpenBLAS's fight: 2.6k samples/s at 2 threads on the 2-core machines)
    r=$(torch_once VAE_BENCH=1 "$@")
    if [ "$torch_blas" != mkl ] && [ "$3" -gt 1 ]; then
        r2=$(torch_once OPENBLAS_NUM_THREADS=1 "$@")
        r=$(larger "$r" "$r2")
    fi
    echo "$r"
}
row() { # PRESET BATCH THREADS
    rm -f "$tmp/peaks"
    a=$(vae_rate "$1" "$2" "$3" openblas off) b=$(vae_rate "$1" "$2" "$3" onednn off)
    d=$(vae_rate "$1" "$2" "$3" openblas on) d2=$(vae_rate "$1" "$2" "$3" onednn on)
    d=$(larger "$d" "$d2") # on the faster backend
    c=$(torch_rate "$1" "$2" "$3")
    f=$(vae_rate "$1" "$2" "$3" onednn off bf16) f2=$(vae_rate "$1" "$2" "$3" onednn on bf16)
    f=$(larger "$f" "$f2") # bf16's better split
    g=$(torch_rate "$1" "$2" "$3" --bf16)
    e=$(auto_choice "$1" "$2" "$3") peak=$(sort -n "$tmp/peaks" | tail -1)
    awk -v p="$1" -v bt="$2" -v t="$3" -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v e="${e:-n/a}" \
        -v f="$f" -v g="$g" -v peak="$peak" -v data="$data_mib" -v ratios="$tmp/ratios" 'BEGIN {
        best = a > b ? a : b
        best = d > best ? d : best
        bf = f > 0 ? sprintf("%.0f", f) : "n/a"
        tb = g > 0 ? sprintf("%.0f", g) : "n/a"
        rb = f > 0 && g > 0 ? sprintf("%.2fx", f / g) : "n/a"
        rf = c > 0 ? sprintf("%.2fx", best / c) : "n/a"
        ours = f > best ? f : best
        theirs = g > c ? g : c
        rbest = theirs > 0 ? sprintf("%.2fx", ours / theirs) : "n/a"
        if (theirs > 0) printf "%.4f\n", ours / theirs >>ratios
        printf "| %s | %d | %d | %.0f | %.0f | %.0f | %s | %.0f | %s | %s | %s | %s | %s | %.0f / %.0f |\n",
            p, bt, t, a, b, d, bf, c, tb, rf, rb, rbest, e, peak / 1024, data + 64 + 4 * t }'
}
repeat=${REPEAT:-1}
rows() { # PRESET BATCH THREADS: the row REPEAT times; with more, its median best / best apart
    rm -f "$tmp/ratios"
    i=0
    while [ "$i" -lt "$repeat" ]; do
        row "$@"
        i=$((i + 1))
    done
    [ "$repeat" -gt 1 ] && [ -f "$tmp/ratios" ] || return 0
    sort -n "$tmp/ratios" | awk -v p="$1" -v b="$2" -v t="$3" '{ r[NR] = $1 } END {
        m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
        printf "%s, batch %d, %d threads: best / best over %d runs: median %.2fx, %.2f-%.2fx\n",
            p, b, t, NR, m, r[1], r[NR] }' >>"$tmp/medians"
}
echo "| model | batch | threads | vae OpenBLAS | vae oneDNN | vae batch threads (faster backend) | vae bf16 (oneDNN, faster split) | PyTorch | PyTorch bf16 (autocast) | vae / PyTorch, fp32 | vae / PyTorch, bf16 | best / best | auto splits | peak / budget MiB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
if [ -n "${ROWS:-}" ]; then # PRESET:BATCH:THREADS ... (a short lease: the rows that changed)
    for r in $ROWS; do
        IFS=: read -r p b t <<EOF_ROW
$r
EOF_ROW
        rows "$p" "$b" "$t"
    done
else
    t=1
    while [ "$t" -le "$cores" ]; do
        rows pytorch 128 "$t"
        t=$((t * 2))
    done
    [ $((t / 2)) -eq "$cores" ] || rows pytorch 128 "$cores"
    rows pytorch 1024 "$cores"
    rows conv 128 "$cores"
fi
[ ! -f "$tmp/medians" ] || { echo; cat "$tmp/medians"; }
