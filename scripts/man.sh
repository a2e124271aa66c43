#!/bin/sh
# man.sh VAE OUT — the man page vae.1, made by help2man from `vae --help` and `vae --version`,
# with every command's own --help as a section of its own.
set -eu
vae=$1 out=$2
inc=$(mktemp)
trap 'rm -f "$inc"' EXIT
{
    echo "[COMMANDS]"
    for cmd in $("$vae" --help | sed -n '/^commands:/,/^$/s/^  \([a-z-]*\)  .*/\1/p'); do
        echo ".SS vae $cmd"
        echo ".nf"
        "$vae" "$cmd" --help | sed 's/\\/\\e/g; s/^\./\\\&./'
        echo ".fi"
    done
    echo "[SEE ALSO]"
    echo "The library's manual is its header, vae.h; pkg-config --cflags --libs vae builds against it."
} >"$inc"
help2man --no-info --name "a variational autoencoder toolkit" --include "$inc" \
    --version-string "$("$vae" --version | head -1 | cut -d' ' -f2)" "$vae" >"$out.tmp"
mv "$out.tmp" "$out"
