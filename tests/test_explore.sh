#!/bin/sh
# test_explore.sh — the commands that measure and show a saved model: eval (table, JSON,
# per-sample CSV/.npy), encode, interpolate, traverse, manifold, plot-latent, report (rendered
# by headless chromium: every embedded picture must decode), and their errors.
# Usage: sh tests/test_explore.sh BUILD_DIR
. "$(dirname "$0")/lib.sh"
# the width and height of a PNG, from its IHDR chunk
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d", $3 * 256 + $4, $7 * 256 + $8 }'; }

# 3000 training images with labels, a seed-preset model (2-D latent) and a 5-D one
fmnist_idx train 3000 "$tmp/fashion-images-idx3-ubyte" "$tmp/fashion-labels-idx1-ubyte"
test_images="$fmnist/t10k-images-idx3-ubyte.gz"
"$vae" train --train "$tmp/fashion-images-idx3-ubyte" --test "$test_images" --preset seed \
    --epochs 3 --batch 64 --out "$tmp/run" -q 2>"$tmp/err" &&
"$vae" train --train "$tmp/fashion-images-idx3-ubyte" --no-test --encoder 64 --decoder 64 \
    --latent 5 --epochs 2 --out "$tmp/run5" -q 2>>"$tmp/err"
if [ -s "$tmp/run/model.safetensors" ] && [ "$(wc -l <"$tmp/run/train_log.jsonl")" -eq 3 ] &&
    grep -q '"test_loss"' "$tmp/run/train_log.jsonl"; then ok train_for_explore; else
    fail train_for_explore "$(cat "$tmp/err")"; fi
model="$tmp/run/model.safetensors"

# eval: the table, a metrics file, per-sample rows
if "$vae" eval "$model" -k 50 -n 300 --json "$tmp/m.json" --per-sample "$tmp/ps.csv" -q \
    >"$tmp/eval.out" 2>"$tmp/err" &&
    grep -q "^-ELBO: .*reconstruction .* + KL" "$tmp/eval.out" &&
    grep -q "^-log p(x): .*K=50" "$tmp/eval.out" && grep -q "^active units: *[12] of 2" "$tmp/eval.out" &&
    grep -q "not binarized" "$tmp/eval.out"; then
    ok eval_table
else
    fail eval_table "$(cat "$tmp/eval.out" "$tmp/err")"
fi
elbo=$(sed -n 's/.*"neg_elbo": \([0-9.]*\).*/\1/p' "$tmp/m.json")
nll=$(sed -n 's/.*"nll_iwae": \([0-9.]*\).*/\1/p' "$tmp/m.json")
if [ -n "$elbo" ] && [ -n "$nll" ] && grep -q '"examples": 300' "$tmp/m.json" &&
    grep -q '"bits_per_dim"' "$tmp/m.json" && awk -v e="$elbo" -v n="$nll" 'BEGIN { exit !(n < e && n > 0) }'; then
    ok eval_json
else
    fail eval_json "$(cat "$tmp/m.json")"
fi
mean=$(awk -F, 'NR > 1 { s += $4; n++ } END { printf "%.3f", s / n }' "$tmp/ps.csv")
if [ "$(head -1 "$tmp/ps.csv")" = "neg_elbo,recon,kl,nll" ] && [ "$(wc -l <"$tmp/ps.csv")" -eq 301 ] &&
    awk -v a="$mean" -v b="$nll" 'BEGIN { exit !((a - b) ^ 2 < 1e-6) }'; then
    ok eval_per_sample_csv
else
    fail eval_per_sample_csv "mean $mean vs $nll; $(head -2 "$tmp/ps.csv")"
fi
"$vae" eval "$model" -k 0 -n 100 --per-sample "$tmp/ps.npy" -q >/dev/null 2>"$tmp/err"
size=$(wc -c <"$tmp/ps.npy")
if head -c 6 "$tmp/ps.npy" | tail -c 5 | grep -q NUMPY && grep -q "'shape': (100, 4)" "$tmp/ps.npy" &&
    [ $((size - 128)) -eq $((100 * 4 * 8)) ]; then ok eval_per_sample_npy; else
    fail eval_per_sample_npy "$size bytes: $(cat "$tmp/err")"; fi

# encode: means and log-variances by default, draws with --sample, labels first
"$vae" encode "$model" "$tmp/fashion-images-idx3-ubyte" -o "$tmp/z.csv" 2>"$tmp/err"
"$vae" encode "$model" "$tmp/fashion-images-idx3-ubyte" -o "$tmp/zs.csv" --sample 2>>"$tmp/err"
if [ "$(head -1 "$tmp/z.csv")" = "label,mu_0,mu_1,logvar_0,logvar_1" ] &&
    [ "$(wc -l <"$tmp/z.csv")" -eq 3001 ] && [ "$(head -1 "$tmp/zs.csv")" = "label,z_0,z_1" ] &&
    [ "$(sed -n 2p "$tmp/z.csv" | cut -d, -f1)" = "$(gzip -dc "$fmnist/train-labels-idx1-ubyte.gz" | od -An -tu1 -j8 -N1 | tr -d ' ')" ]; then
    ok encode
else
    fail encode "$(head -2 "$tmp/z.csv" "$tmp/zs.csv") $(cat "$tmp/err")"
fi
# a draw lies near its mean: |z - mu| < 6 sigma for every coordinate
if paste -d, "$tmp/z.csv" "$tmp/zs.csv" | awk -F, 'NR > 1 { for (j = 0; j < 2; j++) {
        d = $(7 + j) - $(2 + j); s = exp(0.5 * $(4 + j)); if (d * d > 36 * s * s) bad++ } }
        END { exit bad > 0 }'; then ok encode_sample_near_mean; else
    fail encode_sample_near_mean; fi

# sample: raw probabilities as .npy, with or without the picture
"$vae" sample "$model" -n 7 --npy "$tmp/s.npy" 2>"$tmp/err"
size=$(wc -c <"$tmp/s.npy")
if grep -q "'<f4'.*'shape': (7, 784)" "$tmp/s.npy" && [ "$size" -eq $((128 + 7 * 784 * 4)) ] &&
    [ ! -e samples.png ]; then ok sample_npy; else fail sample_npy "$size bytes $(cat "$tmp/err")"; fi

# pictures: the grids have the sizes their options ask for (28x28 images, scale 2, 2-pixel gaps)
"$vae" interpolate "$model" --from 3 --to 7 --steps 6 -o "$tmp/i.png" 2>"$tmp/err"
"$vae" traverse "$model" --steps 5 -o "$tmp/t.png" 2>>"$tmp/err"
"$vae" traverse "$tmp/run5/model.safetensors" "$test_images" --from 2 --dims 4 -o "$tmp/t5.png" 2>>"$tmp/err"
"$vae" manifold "$model" --grid 7 -o "$tmp/m.png" 2>>"$tmp/err"
cell=58 # 28 * 2 + 2
got="$(png_size "$tmp/i.png") $(png_size "$tmp/t.png") $(png_size "$tmp/t5.png") $(png_size "$tmp/m.png")"
want="$((8 * cell + 2))x$((2 * cell + 2)) $((5 * cell + 2))x$((2 * cell + 2)) $((9 * cell + 2))x$((4 * cell + 2)) $((7 * cell + 2))x$((7 * cell + 2))"
if [ "$got" = "$want" ]; then ok picture_grids; else fail picture_grids "got $got, want $want" "$(cat "$tmp/err")"; fi
"$vae" manifold "$tmp/run5/model.safetensors" -o "$tmp/x.png" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "5-D latent" "$tmp/err"; then ok manifold_needs_2d; else
    fail manifold_needs_2d "exit $rc: $(cat "$tmp/err")"; fi
"$vae" interpolate "$model" --from 0 --to 10000 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "has 10000 images" "$tmp/err"; then ok interpolate_range; else
    fail interpolate_range "exit $rc: $(cat "$tmp/err")"; fi

# plot-latent: PNG with a legend; SVG with axes and Fashion-MNIST's class names; PCA for 5-D
"$vae" plot-latent "$model" "$tmp/fashion-images-idx3-ubyte" -o "$tmp/p.png" 2>"$tmp/err"
"$vae" plot-latent "$model" "$tmp/fashion-images-idx3-ubyte" -o "$tmp/p.svg" 2>>"$tmp/err"
"$vae" plot-latent "$tmp/run5/model.safetensors" -n 500 -o "$tmp/p5.svg" 2>>"$tmp/err"
if [ "$(png_size "$tmp/p.png")" = "840x640" ] && grep -q "Ankle boot" "$tmp/p.svg" &&
    [ "$(grep -c "<circle" "$tmp/p.svg")" -eq 3000 ] && grep -q "principal component 1" "$tmp/p5.svg" &&
    [ "$(grep -c "<circle" "$tmp/p5.svg")" -eq 500 ]; then
    ok plot_latent
else
    fail plot_latent "$(png_size "$tmp/p.png") $(grep -c "<circle" "$tmp/p.svg") $(cat "$tmp/err")"
fi

# wrong data for the model: one line, exit 65
head -c $((16 + 10 * 100)) "$tmp/fashion-images-idx3-ubyte" >"$tmp/w"
printf '\000\000\010\003\000\000\000\012\000\000\000\012\000\000\000\012' | dd of="$tmp/w" conv=notrunc 2>/dev/null
"$vae" eval "$model" "$tmp/w" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 65 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "100 values per sample, the model expects 784" "$tmp/err"; then
    ok eval_wrong_width
else
    fail eval_wrong_width "exit $rc: $(cat "$tmp/err")"
fi

# report: one self-contained page that a real browser renders with every picture
"$vae" report "$tmp/run" -k 20 -n 300 2>"$tmp/err"
html="$tmp/run/report.html"
if [ -s "$html" ] && [ "$(grep -c '<img alt=' "$html")" -eq 5 ] && ! grep -q 'src="[^d]' "$html" &&
    grep -q "Training curves" "$html" && grep -q "polyline" "$html"; then
    ok report_self_contained
else
    fail report_self_contained "$(cat "$tmp/err")"
fi
if command -v chromium >/dev/null; then
    dom=$(timeout 120 chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$html" 2>/dev/null)
    loaded=$(echo "$dom" | grep -o 'data-images-loaded="[^"]*"')
    if [ "$loaded" = 'data-images-loaded="5/5"' ]; then ok report_renders_in_chromium; else
        fail report_renders_in_chromium "chromium says: ${loaded:-nothing}"; fi
else
    fail report_renders_in_chromium "chromium is not installed (scripts/install-deps.sh --test)"
fi
