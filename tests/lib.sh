# lib.sh — sourced by the shell tests: the program under test, a scratch folder removed on exit,
# and the "ok"/"not ok" lines tests/run.sh counts. Expects $1 = BUILD_DIR.
set -u
build=${1:-build}
vae="$build/vae"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fmnist=${FMNIST:-/usr/share/datasets/fashion-mnist} # FMNIST: elsewhere (a machine without the package)

# fmnist_idx KIND N IMAGES [LABELS]: the first N Fashion-MNIST images of KIND (train or t10k)
# as an IDX file of their own (header with N, then N*784 bytes; IMAGES "": none), and their
# labels when asked
fmnist_idx() {
    be32() { printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) \
        $(($1 >> 8 & 255)) $(($1 & 255)))"; }
    [ -z "$3" ] || { printf '\000\000\010\003'; be32 "$2"; printf '\000\000\000\034\000\000\000\034'
      gzip -dc "$fmnist/$1-images-idx3-ubyte.gz" | tail -c +17 | head -c $(($2 * 784)); } >"$3"
    [ -z "${4:-}" ] && return 0
    { printf '\000\000\010\001'; be32 "$2"
      gzip -dc "$fmnist/$1-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$2"; } >"$4"
}

ok() { echo "ok $1"; }
fail() { echo "not ok $1"; shift; for line in "$@"; do echo "#   $line"; done; }

# expect NAME CODE PATTERN -- COMMAND...: the command exits with CODE and says PATTERN on stderr
# in at most two lines (one clear message, no dump)
expect() {
    name=$1 code=$2 pattern=$3
    shift 4
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -eq "$code" ] && grep -q -- "$pattern" "$tmp/err" && [ "$lines" -le 2 ]; then
        ok "$name"
    else
        fail "$name" "exit $rc (want $code), stderr: $(head -c 300 "$tmp/err")"
    fi
}
