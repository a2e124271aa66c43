#!/bin/sh
# test_explore_page.sh — `vae explore` (issue 15): the pages it writes for an image model (fp32 and
# fp16 weights), a conditional model and a tabular one, its refusals, and then the pages in
# headless Chromium (tests/explore_check.py: the decoder against the library's, speed, drag,
# slider, click, interpolation, frame rate, size, console). The browser part runs with the
# normal build; the sanitizer build writes the pages too.
# Usage: sh tests/test_explore_page.sh BUILD_DIR [SCREENSHOT.png]
. "$(dirname "$0")/lib.sh"
pages="$tmp/pages"
mkdir -p "$pages"
# 3,000 training images with their labels, as IDX files of their own
fmnist_idx train 3000 "$tmp/tr-images-idx3-ubyte" "$tmp/tr-labels-idx1-ubyte"
common="--train $tmp/tr-images-idx3-ubyte --no-test --epochs 1 -q"
"$vae" train $common --preset pytorch --out "$tmp/image" 2>"$tmp/err" &&
    "$vae" train $common --preset pytorch --conditional --out "$tmp/cond" 2>>"$tmp/err" || cat "$tmp/err"
awk 'BEGIN { s = 5; print "a,b,c,d,e,label"; for (i = 0; i < 300; i++) {
    s = (s * 1103515245 + 12345) % 2147483648; f = s / 2147483648
    printf "%.4f,%.4f,%.4f,%.4f,%.4f,%d\n", 10 * f, 5 - f, f * f, 3 + f, 100 * f, (f > 0.5) } }' >"$tmp/t.csv"
"$vae" train --train "$tmp/t.csv" --label-column last --likelihood gaussian --standardize --no-test \
    --encoder 16 --decoder 16 --latent 3 --epochs 5 --out "$tmp/table" -q 2>>"$tmp/err"
for m in image cond table; do cp "$tmp/$m/model.safetensors" "$pages/$m.safetensors"; done

ex() { "$vae" explore "$@" 2>>"$tmp/err"; }
if ex "$pages/image.safetensors" -o "$pages/image.html" -q && ex "$pages/image.safetensors" --fp16 -o "$pages/image16.html" -q &&
    ex "$pages/cond.safetensors" -o "$pages/cond.html" -q &&
    ex "$pages/table.safetensors" "$tmp/t.csv" --label-column last --class-names low,high -o "$pages/table.html" -q; then
    ok explore_writes_pages
else
    fail explore_writes_pages "$(tail -3 "$tmp/err")"
fi
# self-contained: no address outside the page, its data and its policy
if grep -q 'default-src .none.' "$pages/image.html" && ! grep -Eq '(src|href)="(https?:)?//' "$pages/image.html" &&
    grep -q '"class_names":\["T-shirt/top"' "$pages/image.html" && grep -q '"n":2000,' "$pages/image.html" &&
    grep -q '"class_names":\["low","high"\]' "$pages/table.html"; then
    ok explore_page_self_contained
else
    fail explore_page_self_contained "$(head -c 600 "$pages/image.html")"
fi
[ "$(wc -c <"$pages/image16.html")" -lt "$(wc -c <"$pages/image.html")" ] && ok explore_fp16_smaller ||
    fail explore_fp16_smaller "fp16 $(wc -c <"$pages/image16.html") bytes, fp32 $(wc -c <"$pages/image.html")"
# refusals: a convolutional decoder, an output that cannot be written (before any work)
"$vae" train $common --conv 4x4s2p1 --encoder 16 --decoder 16 --latent 2 --out "$tmp/conv" 2>>"$tmp/err"
expect explore_refuses_conv 64 "transposed convolutions" -- "$vae" explore "$tmp/conv/model.safetensors" -o "$tmp/c.html"
expect explore_unwritable 73 "" -- "$vae" explore "$pages/image.safetensors" -o "$tmp/no/such/dir/x.html"

case "$build" in build) ;; *) exit 0 ;; esac
if ! command -v chromium >/dev/null || ! /usr/bin/python3 -c "import websocket, numpy" 2>/dev/null; then
    fail explore_in_chromium "chromium, python3-websocket or python3-numpy missing (make test installs them)"
    exit 0
fi
VAE_LIBRARY="$PWD/$build/libvae.so.0" FMNIST="$fmnist" timeout 300 \
    /usr/bin/python3 tests/explore_check.py chromium "$pages" "${2:-$tmp/explore.png}" 2>"$tmp/py.err" ||
    fail explore_in_chromium "$(tail -5 "$tmp/py.err")"
