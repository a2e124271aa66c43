#!/bin/sh
# exports.sh HEADER — the functions a public header declares, one per line: what libvae.so
# exports (the Makefile turns the list into a linker version script; everything else stays
# hidden) and what the test of its symbols expects `nm -D` to show.
set -eu
${CC:-cc} -E -P -D__extension__= "$1" |
    tr '\n' ' ' | tr ';' '\n' |
    grep -v '^ *typedef' |
    sed -n 's/.*[^A-Za-z0-9_(]\(vae_[a-z0-9_]*\) *(.*/\1/p' |
    sort -u
