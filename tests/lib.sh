# lib.sh — sourced by the shell tests: the program under test, a scratch folder removed on exit,
# and the "ok"/"not ok" lines tests/run.sh counts. Expects $1 = BUILD_DIR.
set -u
build=${1:-build}
vae="$build/vae"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fmnist=${FMNIST:-/usr/share/datasets/fashion-mnist} # FMNIST: elsewhere (a machine without the package)

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
