#!/bin/sh
# On a GPU machine: the GPU tests, the same under compute-sanitizer's memcheck and racecheck,
# then the side-by-side benchmark. Each part's output goes to OUTDIR/<part>.log; the exit status
# is non-zero when a part failed.
#
#   sh tests/cuda_check.sh [BUILD (build-cuda)] [OUTDIR (cuda-check)] [DATA_DIR]
set -u
BUILD=${1:-build-cuda}
OUT=${2:-cuda-check}
DATA=${3:-/usr/share/datasets/fashion-mnist}
mkdir -p "$OUT"
status=0
part() { # NAME COMMAND...
    name=$1
    shift
    t0=$(date +%s)
    "$@" >"$OUT/$name.log" 2>&1 || { status=1; echo "FAILED: $name"; }
    echo "== $name ($(($(date +%s) - t0)) s)"
    tail -n 25 "$OUT/$name.log"
}
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
part tests "$BUILD/tests/test_cuda"
part memcheck "$SANITIZER" --tool memcheck --leak-check full --error-exitcode 3 "$BUILD/tests/test_cuda"
part racecheck "$SANITIZER" --tool racecheck --error-exitcode 3 "$BUILD/tests/test_cuda"
part bench sh "$(dirname "$0")/../bench/cuda.sh" "$BUILD" "$DATA" "${EPOCHS:-10}"
exit $status
