#!/bin/sh
# Installs the Debian packages that vae needs to build and run its demo, when missing; with
# --test also clang and its runtime libraries (the libFuzzer targets), chromium (a headless
# browser checks the HTML report) and Open MPI (the data-parallel build), with --bench what the side-by-side benchmark needs
# (PyTorch, GNU time).
# Runs as root (apt-get update first); as another user it only reports what is missing.
# --check: only names what a build needs and is missing, and fails then (a plain `make` runs it
# before compiling anything: a header from another package would otherwise be compiled against).
set -eu
check=0
[ "${1:-}" = "--check" ] && check=1 && shift
command -v dpkg-query >/dev/null 2>&1 || exit 0 # not Debian: nothing to check with

PACKAGES="build-essential pkg-config help2man libopenblas-dev libopenblas-openmp-dev zlib1g-dev libpng-dev libjansson-dev libcsv-dev
libdnnl-dev dataset-fashion-mnist"
[ "${1:-}" = "--test" ] && PACKAGES="$PACKAGES clang libclang-rt-dev chromium libopenmpi-dev openmpi-bin
python3-numpy python3-pytest python3-sklearn python3-pip python3-setuptools python3-venv
python3-websocket"
[ "${1:-}" = "--bench" ] && PACKAGES="python3-torch python3-numpy time"

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$check" = 1 ]; then
    echo "install-deps: missing Debian packages:$missing; install them with 'make deps' (as" \
        "root) or apt-get install$missing" >&2
    exit 1
fi

echo "install-deps: installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: not root; install them with: sudo apt-get install$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# shellcheck disable=SC2086  # the list is meant to split into words
apt-get install -y -q --no-install-recommends $missing >&2
