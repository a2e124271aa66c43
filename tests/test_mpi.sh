#!/bin/sh
# test_mpi.sh — data-parallel training with the MPI build (build-mpi, make MPI=1) on loopback:
# 2 ranks with global batch B give the losses and weights of 1 process with batch B (to float
# summation order), a checkpoint written by 2 ranks resumes in 1, and a rank that fails stops
# the whole job with a non-zero exit instead of hanging. Runs once, with the plain build.
# Usage: sh tests/test_mpi.sh BUILD_DIR
. "$(dirname "$0")/lib.sh"
[ "$build" = build ] || exit 0
mpivae=build-mpi/vae
if [ ! -x "$mpivae" ] || ! command -v mpirun >/dev/null; then
    fail mpi_build "no $mpivae or mpirun (make MPI=1; scripts/install-deps.sh --test)"
    exit 0
fi
# shared memory between the ranks without cross-memory attach, which containers often forbid
export OMPI_MCA_btl_vader_single_copy_mechanism=none
run() { mpirun --allow-run-as-root --oversubscribe "$@"; }
fmnist_idx train 2000 "$tmp/tr-images-idx3-ubyte"
common="--train $tmp/tr-images-idx3-ubyte --test $tmp/tr-images-idx3-ubyte --preset seed --batch 100 --threads 1 -q"
"$mpivae" train $common --epochs 2 --out "$tmp/one" 2>"$tmp/err"
run -np 2 "$mpivae" train $common --epochs 2 --out "$tmp/two" 2>>"$tmp/err"
# losses: equal to 1e-6 relative
if paste -d, "$tmp/one/train_log.csv" "$tmp/two/train_log.csv" | awk -F, 'NR > 1 {
        for (j = 2; j <= 7; j++) { a = $j; b = $(j + 10); if ((a - b) ^ 2 > 1e-12 * a * a) bad++ } }
        END { exit bad > 0 }'; then
    ok two_ranks_same_losses
else
    fail two_ranks_same_losses "$(cat "$tmp/one/train_log.csv" "$tmp/two/train_log.csv" "$tmp/err")"
fi
# weights: every float within 1e-4 of the other's (the same header, so the same layout)
weights() { n=$(od -An -tu8 -N8 "$1" | tr -d ' '); od -An -v -tf4 -j$((8 + n)) -w4 "$1"; }
weights "$tmp/one/model.safetensors" >"$tmp/w1"
weights "$tmp/two/model.safetensors" >"$tmp/w2"
if [ -s "$tmp/w1" ] && paste "$tmp/w1" "$tmp/w2" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4) bad++ }
        END { exit bad > 0 || NR < 1000 }'; then
    ok two_ranks_same_weights
else
    fail two_ranks_same_weights "$(paste "$tmp/w1" "$tmp/w2" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d } END { print "largest difference", m }')"
fi
# a checkpoint of 2 ranks resumes in 1 process and ends where the others did
run -np 2 "$mpivae" train $common --epochs 1 --out "$tmp/half" 2>>"$tmp/err"
"$mpivae" train --train "$tmp/tr-images-idx3-ubyte" --test "$tmp/tr-images-idx3-ubyte" \
    --resume "$tmp/half" --epochs 2 --threads 1 -q 2>>"$tmp/err"
weights "$tmp/half/model.safetensors" >"$tmp/w3"
if [ -s "$tmp/w3" ] && paste "$tmp/w1" "$tmp/w3" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4) bad++ }
        END { exit bad > 0 }'; then
    ok resume_with_other_rank_count
else
    fail resume_with_other_rank_count "$(cat "$tmp/err")"
fi
# rank 1 cannot read its data: the job ends, non-zero, saying which rank failed
timeout 120 mpirun --allow-run-as-root --oversubscribe -np 1 "$mpivae" train $common --epochs 1 --out "$tmp/x" : \
    -np 1 "$mpivae" train --train "$tmp/missing-file" --epochs 1 --out "$tmp/x" -q >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "rank 1 of 2 failed" "$tmp/out"; then
    ok failing_rank_stops_the_job
else
    fail failing_rank_stops_the_job "exit $rc: $(tail -5 "$tmp/out")"
fi
