#!/bin/sh
# dnnl_profile.sh COMMAND [ARGS...] — where oneDNN's time goes in a run: COMMAND (a
# build/step_phases or build/vae line, in a build with oneDNN) under DNNL_VERBOSE=1, then each
# primitive (kind, implementation, propagation, shape) with its calls, total and mean ms, the
# largest first, after the first SKIP (500) executions (oneDNN's JIT and the warm-up). The
# command's own output comes first.
#   sh bench/dnnl_profile.sh build/step_phases --preset conv --threads 2 --backend onednn --bf16
set -eu
DNNL_VERBOSE=1 "$@" 2>&1 | awk -F, -v skip="${SKIP:-500}" '
    /^onednn_verbose,exec/ {
        if (++n <= skip) next
        key = $4 "," $5 "," $6 "," $(NF - 1)
        ms[key] += $NF; calls[key]++; total += $NF
        next
    }
    !/^onednn_verbose/ { print }
    END {
        for (k in ms)
            printf "%10.2f ms %7d calls %8.4f ms each  %s\n", ms[k], calls[k], ms[k] / calls[k],
                k | "sort -rn"
        close("sort -rn")
        printf "%10.2f ms in oneDNN over %d executions after the first %d\n", total, n - skip, skip
    }'
