#!/bin/sh
# test_missing.sh — missing values end to end: vae mask removes values at random, a model
# trained with --missing (MIWAE) fills them in better than the column means, observed values
# come back unchanged, multiple imputation gives M copies, and bad inputs are refused clearly.
# Usage: sh tests/test_missing.sh BUILD_DIR
. "$(dirname "$0")/lib.sh"

# 400 rows of 6 columns driven by two hidden factors: the missing values are predictable
awk 'BEGIN { s = 99; print "a,b,c,d,e,f"
    for (i = 0; i < 400; i++) {
        for (k = 0; k < 3; k++) { s = (s * 1103515245 + 12345) % 2147483648; u[k] = s / 2147483648 }
        f1 = u[0] * 4 - 2; f2 = u[1] * 4 - 2
        printf "%.4f,%.4f,%.4f,%.4f,%.4f,%.4f\n", f1, f2, f1 + f2, f1 - f2, 2 * f1 + 0.1 * u[2], f2 * 3 }
}' >"$tmp/full.csv"
"$vae" mask "$tmp/full.csv" --fraction 0.3 --seed 4 -o "$tmp/holes.csv" 2>"$tmp/err"
holes=$(tail -n +2 "$tmp/holes.csv" | tr ',' '\n' | grep -c '^$') # removed: empty cells
if [ "$holes" -gt 600 ] && [ "$holes" -lt 840 ]; then ok mask_removes_about_30_percent; else
    fail mask_removes_about_30_percent "$holes of 2400 cells removed"; fi
"$vae" train --train "$tmp/holes.csv" --missing --standardize --likelihood gaussian --variance dim \
    --iwae 10 --encoder 32 --decoder 32 --latent 3 --epochs 150 --batch 40 --threads 2 --no-test \
    --out "$tmp/m" -q 2>"$tmp/err"
"$vae" impute "$tmp/m/model.safetensors" "$tmp/holes.csv" -o "$tmp/filled.csv" --truth "$tmp/full.csv" \
    >"$tmp/report" 2>>"$tmp/err"
cat "$tmp/report" | sed 's/^/# /'
if awk '/^missing cells/ { gsub(",", ""); for (i = 1; i <= NF; i++) { if ($i == "vae") v = $(i + 1); if ($i == "mean") m = $(i + 2) } }
        END { exit !(v > 0 && v < 0.5 * m) }' "$tmp/report"; then
    ok imputation_beats_column_means
else
    fail imputation_beats_column_means "$(cat "$tmp/report" "$tmp/err")"
fi
# observed cells unchanged (as numbers), and no cell left missing
if paste -d, "$tmp/holes.csv" "$tmp/filled.csv" | awk -F, 'NR > 1 { for (j = 1; j <= 6; j++) {
        if ($j != "" && $j + 0 != $(j + 6) + 0) bad++; if ($(j + 6) == "") bad++ } }
        END { exit bad > 0 }'; then
    ok observed_values_unchanged
else
    fail observed_values_unchanged
fi
"$vae" impute "$tmp/m/model.safetensors" "$tmp/holes.csv" -m 3 -o "$tmp/multi.npy" 2>"$tmp/err"
# three copies of 400 rows x 6 float32 after the 128-byte header: drawn, so they differ
copy() { tail -c +$((129 + $1 * 9600)) "$tmp/multi.npy" | head -c 9600; }
if grep -q "'shape': (1200, 6)" "$tmp/multi.npy" && [ "$(copy 0 | od -An -tx1 | md5sum)" != "$(copy 1 | od -An -tx1 | md5sum)" ] &&
    [ "$(copy 1 | od -An -tx1 | md5sum)" != "$(copy 2 | od -An -tx1 | md5sum)" ]; then
    ok multiple_imputation
else
    fail multiple_imputation "$(cat "$tmp/err")"
fi
# refusals
"$vae" train --train "$tmp/holes.csv" --likelihood gaussian --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "\-\-missing" "$tmp/err"; then ok missing_needs_the_flag; else
    fail missing_needs_the_flag "exit $rc: $(cat "$tmp/err")"; fi
printf 'a,b\n1,2\nnan,\n3,4\n' >"$tmp/row.csv"
"$vae" train --train "$tmp/row.csv" --missing --likelihood gaussian --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 65 ] && grep -q "sample 2 has every value missing" "$tmp/err"; then ok empty_row_refused; else
    fail empty_row_refused "exit $rc: $(cat "$tmp/err")"; fi
printf 'a,b\n1,\n2,NA\n3,nan\n' >"$tmp/col.csv"
"$vae" train --train "$tmp/col.csv" --missing --likelihood gaussian --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 65 ] && grep -q "column 2 is missing in every sample" "$tmp/err"; then ok empty_column_refused; else
    fail empty_column_refused "exit $rc: $(cat "$tmp/err")"; fi
"$vae" impute "$tmp/m/model.safetensors" "$tmp/full.csv" -o "$tmp/x.csv" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 65 ] && grep -q "no missing values" "$tmp/err" && [ ! -e "$tmp/x.csv" ]; then
    ok impute_needs_missing_values
else
    fail impute_needs_missing_values "exit $rc: $(cat "$tmp/err")"
fi

# anomaly scores: a Gaussian model of a tight cloud; 20 far points labelled 1 score higher
awk 'BEGIN { s = 5; for (i = 0; i < 300; i++) {
        for (k = 0; k < 2; k++) { s = (s * 1103515245 + 12345) % 2147483648; u[k] = s / 2147483648 }
        far = i % 15 == 0
        printf "%.4f,%.4f,%.4f,%d\n", u[0] + 8 * far, u[1] - 8 * far, u[0] + u[1], far } }' >"$tmp/cloud.csv"
"$vae" train --train "$tmp/cloud.csv" --label-column last --exclude-label 1 --likelihood gaussian \
    --variance dim --encoder 16 --decoder 16 --latent 2 --epochs 60 --batch 20 --no-test \
    --out "$tmp/a" -q 2>"$tmp/err"
"$vae" score "$tmp/a/model.safetensors" "$tmp/cloud.csv" --label-column last --anomaly-label 1 \
    -o "$tmp/scores.csv" >"$tmp/auc" 2>>"$tmp/err"
cat "$tmp/auc" | sed 's/^/# /'
if grep -q "anomalies (label 1): 20 of 300; ROC AUC 1.0000" "$tmp/auc" &&
    [ "$(wc -l <"$tmp/scores.csv")" -eq 301 ]; then
    ok anomaly_scores_and_auc
else
    fail anomaly_scores_and_auc "$(cat "$tmp/auc" "$tmp/err")"
fi
"$vae" score "$tmp/a/model.safetensors" "$tmp/cloud.csv" --label-column last -k 50 --anomaly-label 0 \
    -o "$tmp/scores.npy" >"$tmp/auc" 2>>"$tmp/err"
if grep -q "ROC AUC 0.0000" "$tmp/auc" && grep -q "'shape': (300, 1)" "$tmp/scores.npy"; then
    ok auc_of_the_complement
else
    fail auc_of_the_complement "$(cat "$tmp/auc" "$tmp/err")"
fi
