#!/bin/sh
# test_install.sh — the library installs like one (issue 14): `make install` into a scratch
# DESTDIR puts libvae.so.MAJOR.MINOR.PATCH with its SONAME and links, libvae.a, vae.h, vae.pc,
# vae and vae.1 there; libvae.so exports exactly the header's functions; examples/ builds with
# `pkg-config --cflags --libs vae` against the installed copy and runs; `make uninstall`
# leaves no file behind.
# Usage: sh tests/test_install.sh BUILD_DIR (the normal build only: a sanitizer build's
# library needs its runtime in every program linked to it)
. "$(dirname "$0")/lib.sh"
case "$build" in build) ;; *) exit 0 ;; esac

dest="$tmp/dest"
version=$(sed -n 's/^#define VAE_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' include/vae.h | paste -sd.)
major=${version%%.*}
make --no-print-directory BUILD="$build" CUDA=0 MPI=0 DESTDIR="$dest" PREFIX=/usr install \
    >"$tmp/install.log" 2>&1
rc=$?
lib="$dest/usr/lib"
if [ "$rc" -eq 0 ] && [ -f "$lib/libvae.so.$version" ] && [ "$(readlink "$lib/libvae.so.$major")" = "libvae.so.$version" ] &&
    [ "$(readlink "$lib/libvae.so")" = "libvae.so.$major" ] && [ -f "$lib/libvae.a" ] &&
    [ -f "$dest/usr/include/vae.h" ] && [ -f "$lib/pkgconfig/vae.pc" ] && [ -x "$dest/usr/bin/vae" ] &&
    [ -f "$dest/usr/share/man/man1/vae.1" ]; then
    ok install_layout
else
    fail install_layout "exit $rc" "$(find "$dest" | sort | tr '\n' ' ')" "$(tail -3 "$tmp/install.log")"
fi

soname=$(objdump -p "$lib/libvae.so.$version" 2>/dev/null | awk '$1 == "SONAME" { print $2 }')
if [ "$soname" = "libvae.so.$major" ]; then ok soname; else fail soname "SONAME '$soname'"; fi

# exactly the header's functions, nothing internal (vae_fail, op_*, the GPU seam...)
scripts/exports.sh include/vae.h >"$tmp/api"
nm -D --defined-only "$lib/libvae.so.$version" | awk '{ print $3 }' | sort >"$tmp/exported"
if [ "$(wc -l <"$tmp/api")" -gt 80 ] && cmp -s "$tmp/api" "$tmp/exported"; then
    ok exports_only_the_public_api
else
    fail exports_only_the_public_api "$(diff "$tmp/api" "$tmp/exported" | head -5)"
fi

# the version is the header's, in the library, vae.pc and the program
export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
if [ "$(pkg-config --modversion vae)" = "$version" ] &&
    "$dest/usr/bin/vae" --version | head -1 | grep -qx "vae $version"; then
    ok version_defined_once
else
    fail version_defined_once "pkg-config says '$(pkg-config --modversion vae)', vae says" \
        "'$("$dest/usr/bin/vae" --version | head -1)', the header $version"
fi

# the man page: every command's options under COMMANDS
if man -l "$dest/usr/share/man/man1/vae.1" 2>/dev/null | grep -q "vae impute" &&
    grep -q "^\.SH COMMANDS" "$dest/usr/share/man/man1/vae.1"; then
    ok man_page
else
    fail man_page "$(head -5 "$dest/usr/share/man/man1/vae.1")"
fi

# examples/ against the installed copy, found by pkg-config alone
built=1
for ex in train_sample encode_impute; do
    # shellcheck disable=SC2046 # pkg-config's flags are meant to split
    cc -std=c11 -Wall -Wextra -Werror examples/$ex.c $(pkg-config --cflags --libs vae) \
        -Wl,-rpath,"$lib" -o "$tmp/$ex" 2>"$tmp/cc.$ex" || { built=0; fail "example_builds_$ex" "$(head -3 "$tmp/cc.$ex")"; }
done
if [ "$built" = 1 ]; then
    ok examples_build_with_pkg_config
    # 600 Fashion-MNIST images as an IDX file of their own
    fmnist_idx t10k 600 "$tmp/imgs-idx3-ubyte"
    if "$tmp/train_sample" "$tmp/imgs-idx3-ubyte" "$tmp/m.safetensors" "$tmp/s.png" 2 >"$tmp/ex1" 2>&1 &&
        grep -q "^epoch 2/2: train -ELBO" "$tmp/ex1" && [ -s "$tmp/s.png" ] &&
        ldd "$tmp/train_sample" | grep -q "$lib/libvae.so.$major" &&
        "$dest/usr/bin/vae" info "$tmp/m.safetensors" >/dev/null 2>&1; then
        ok example_train_sample
    else
        fail example_train_sample "$(tail -3 "$tmp/ex1")"
    fi
    # a table with holes: a missing-value model from the installed vae, then the example
    awk 'BEGIN { s = 7; for (i = 0; i < 300; i++) { s = (s * 1103515245 + 12345) % 2147483648
        f = s / 2147483648; printf "%.4f,%.4f,%.4f,%.4f\n", f, 2 * f, 1 - f, f * f } }' >"$tmp/t.csv"
    printf '0.5,,0.5,0.25\n0.2,0.4,,\n' >"$tmp/holes.csv"
    "$dest/usr/bin/vae" train --train "$tmp/t.csv" --likelihood gaussian --missing --no-test --encoder 16 \
        --decoder 16 --latent 1 --epochs 30 --batch 30 --out "$tmp/miss" -q >/dev/null 2>&1
    if "$tmp/encode_impute" "$tmp/miss/model.safetensors" "$tmp/holes.csv" >"$tmp/ex2" 2>&1 &&
        [ "$(grep -c '^latent ' "$tmp/ex2")" = 2 ] &&
        grep -q '^imputed 1: 0.5 [-0-9.e]* 0.5 0.25$' "$tmp/ex2" &&
        ! grep -qi 'nan' "$tmp/ex2"; then
        ok example_encode_impute
    else
        fail example_encode_impute "$(cat "$tmp/ex2")"
    fi
fi

make --no-print-directory BUILD="$build" CUDA=0 MPI=0 DESTDIR="$dest" PREFIX=/usr uninstall >"$tmp/un.log" 2>&1
left=$(find "$dest" ! -type d | head -5)
if [ -z "$left" ]; then ok uninstall_leaves_nothing; else fail uninstall_leaves_nothing "$left"; fi
