#!/bin/sh
# test_tabular.sh — continuous and count data from CSV and .npy: Gaussian likelihoods (fixed,
# per-value and per-sample variance) with standardization kept in the model, Poisson on counts,
# the variance floor, and clear errors for data a likelihood cannot model.
# Usage: sh tests/test_tabular.sh BUILD_DIR
. "$(dirname "$0")/lib.sh"

# 600 rows: a header, 6 correlated columns (two hidden factors), a constant column, a label
awk 'BEGIN { s = 12345; print "a,b,c,d,e,f,const,label"
    for (i = 0; i < 600; i++) {
        for (k = 0; k < 4; k++) { s = (s * 1103515245 + 12345) % 2147483648; u[k] = s / 2147483648 }
        f1 = sqrt(-2 * log(u[0] + 1e-9)) * cos(6.2831853 * u[1]); f2 = u[2] * 4 - 2
        printf "%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,3,%d\n", 10 + 3 * f1, 100 + 20 * f2, f1 + f2, f1 - f2,
            0.5 * f1 + u[3], 2 * f2 - u[3], (f1 > 0) + 2 * (f2 > 0) }
}' >"$tmp/t.csv"
common="--train $tmp/t.csv --label-column last --no-test --encoder 32 --decoder 32 --latent 2 --epochs 40 --batch 50 -q"
for var in fixed dim sample; do
    "$vae" train $common --likelihood gaussian --variance $var --standardize --out "$tmp/g-$var" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -eq 0 ] && "$vae" info "$tmp/g-$var/model.safetensors" | grep -q "Gaussian"; then
        ok "gaussian_$var"
    else
        fail "gaussian_$var" "exit $rc: $(cat "$tmp/err")"
    fi
done
# the learned variances fit better than a fixed sigma of 1 on standardized data
recon() { "$vae" eval "$tmp/$1/model.safetensors" "$tmp/t.csv" --label-column last -k 0 -q |
    sed -n 's/^-ELBO: .*(reconstruction \([-0-9.]*\) + KL.*/\1/p'; }
rf=$(recon g-fixed) rd=$(recon g-dim) rs=$(recon g-sample)
echo "# reconstruction nats: fixed $rf, per-value $rd, per-sample $rs"
if awk -v f="$rf" -v d="$rd" 'BEGIN { exit !(d < f) }'; then ok learned_variance_fits_better; else
    fail learned_variance_fits_better "fixed $rf, per-value $rd"; fi
# a constant column: its variance drops to the floor, not to 0: each value costs at least
# log(2 pi 1e-3) / 2 = -2.535 nats, 7 values
if awk -v s="$rs" 'BEGIN { exit !(s >= -7 * 2.535 - 1e-3) }'; then ok variance_floor_holds; else
    fail variance_floor_holds "reconstruction $rs below the floor's bound"; fi
# samples come back in the data's units: column 2's mean near 100, the constant column at 3
"$vae" sample "$tmp/g-dim/model.safetensors" -n 2000 --npy "$tmp/s.npy" 2>"$tmp/err"
means=$(od -An -v -tf4 -j128 -w28 "$tmp/s.npy" | awk '{ b += $2; c += $7; n++ } END { printf "%.2f %.3f", b / n, c / n }')
if awk -v m="$means" 'BEGIN { split(m, v, " "); exit !(v[1] > 90 && v[1] < 110 && v[2] > 2.9 && v[2] < 3.1) }'; then
    ok samples_unstandardized
else
    fail samples_unstandardized "means $means $(cat "$tmp/err")"
fi

# Poisson on counts
awk 'BEGIN { s = 7; for (i = 0; i < 400; i++) { line = ""
    for (k = 0; k < 5; k++) { s = (s * 1103515245 + 12345) % 2147483648; line = line (k ? "," : "") int(s / 2147483648 * (k + 2) * 3) }
    print line } }' >"$tmp/counts.csv"
if "$vae" train --train "$tmp/counts.csv" --no-test --likelihood poisson --encoder 16 --decoder 16 \
    --latent 2 --epochs 20 --batch 40 --out "$tmp/p" -q 2>"$tmp/err" &&
    "$vae" eval "$tmp/p/model.safetensors" "$tmp/counts.csv" -k 50 -q | grep -q "^-log p(x):"; then
    ok poisson_counts
else
    fail poisson_counts "$(cat "$tmp/err")"
fi

# .npy input: the 6 columns as float32
"$vae" encode "$tmp/g-dim/model.safetensors" "$tmp/t.csv" --label-column last -o "$tmp/z.npy" 2>"$tmp/err"
if grep -q "'shape': (600, 5)" "$tmp/z.npy" &&
    "$vae" train --train "$tmp/z.npy" --no-test --likelihood gaussian --encoder 8 --decoder 8 \
        --latent 1 --epochs 2 --out "$tmp/n" -q 2>>"$tmp/err"; then
    ok npy_data
else
    fail npy_data "$(cat "$tmp/err")"
fi

# errors: data outside the likelihood's support, a bad cell, a missing label column
"$vae" train $common --out "$tmp/b" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "outside what a bernoulli likelihood models.*gaussian" "$tmp/err"; then
    ok bernoulli_refuses_real_values
else
    fail bernoulli_refuses_real_values "exit $rc: $(cat "$tmp/err")"
fi
sed '5s/^[^,]*,/x7,/' "$tmp/t.csv" >"$tmp/bad.csv"
"$vae" train --train "$tmp/bad.csv" --likelihood gaussian --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 65 ] && grep -q "bad.csv: row 5, column 1: expected a number, got \"x7\"" "$tmp/err"; then
    ok bad_cell_named
else
    fail bad_cell_named "exit $rc: $(cat "$tmp/err")"
fi
"$vae" train --train "$tmp/t.csv" --likelihood poisson --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "poisson" "$tmp/err"; then ok poisson_refuses_negative; else
    fail poisson_refuses_negative "exit $rc: $(cat "$tmp/err")"; fi
"$vae" train --train "$tmp/t.csv" --variance dim --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "need --likelihood gaussian" "$tmp/err"; then ok variance_needs_gaussian; else
    fail variance_needs_gaussian "exit $rc: $(cat "$tmp/err")"; fi
