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
