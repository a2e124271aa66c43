#!/bin/sh
# impute_tabular.sh — the MIWAE protocol on scikit-learn's tables (Debian's python3-sklearn):
# standardized columns, 50% of the cells removed completely at random, imputation MSE on the
# removed cells, for 5 seeds; vae against mean imputation (in standardized units, zero
# imputation is the same number: the columns' observed means are 0).
# Usage: sh bench/impute_tabular.sh [breast_cancer|iris|wine_data] [EXTRA TRAIN OPTIONS...]
set -eu
name=${1:-breast_cancer}
[ $# -gt 0 ] && shift
build=${BUILD:-build}
data=/usr/lib/python3/dist-packages/sklearn/datasets/data/$name.csv
[ -f "$data" ] || { echo "no $data: apt-get install python3-sklearn (or apt-get download + dpkg -x)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the features alone (the last column is the class), as the complete truth
"$build/vae" mask "$data" --label-column last --fraction 0 -o "$tmp/truth.csv" 2>/dev/null
for seed in 1 2 3 4 5; do
    "$build/vae" mask "$tmp/truth.csv" --fraction 0.5 --seed "$seed" -o "$tmp/holes.csv" 2>/dev/null
    "$build/vae" train --train "$tmp/holes.csv" --missing --standardize --likelihood gaussian \
        --variance sample --iwae 20 --encoder 128,128 --decoder 128,128 --latent 10 --epochs 500 \
        --batch 64 --seed "$seed" --no-test --out "$tmp/m$seed" -q "$@"
    "$build/vae" impute "$tmp/m$seed/model.safetensors" "$tmp/holes.csv" -k 1000 --seed "$seed" \
        -o "$tmp/filled.csv" --truth "$tmp/truth.csv" 2>/dev/null | sed -n 's/^missing cells.*MSE[^:]*: //p'
done | awk -v name="$name" '{ gsub(",", ""); v[NR] = $2; m[NR] = $5 }
    END { for (i = 1; i <= NR; i++) { sv += v[i]; sm += m[i] }
          mv = sv / NR; mm = sm / NR
          for (i = 1; i <= NR; i++) { dv += (v[i] - mv) ^ 2; dm += (m[i] - mm) ^ 2 }
          printf "%s, 50%% MCAR, %d seeds: imputation MSE vae %.3f +- %.3f, mean imputation %.3f +- %.3f\n",
                 name, NR, mv, sqrt(dv / (NR - 1)), mm, sqrt(dm / (NR - 1)) }'
