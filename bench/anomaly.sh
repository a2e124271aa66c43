#!/bin/sh
# anomaly.sh — Fashion-MNIST anomaly detection: for each class L, train on the 9 other classes
# (vae train --exclude-label L) and score the test set, the class-L images being the
# anomalies; prints the ROC AUC per held-out class. Usage: sh bench/anomaly.sh [EPOCHS] [K]
# (default 5 epochs of the pytorch preset; K = 0 scores with the negative ELBO)
set -eu
epochs=${1:-5} k=${2:-0}
build=${BUILD:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
names="T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag Ankle_boot"
echo "| held-out class | ROC AUC ($([ "$k" -eq 0 ] && echo "negative ELBO" || echo "-log p(x), K=$k")) |"
echo "| --- | --- |"
label=0
for name in $names; do
    "$build/vae" train --preset pytorch --epochs "$epochs" --exclude-label $label --no-test \
        --out "$tmp/m$label" -q
    auc=$("$build/vae" score "$tmp/m$label/model.safetensors" \
        /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz -k "$k" -o "$tmp/s.csv" \
        --anomaly-label $label 2>/dev/null | sed -n 's/.*ROC AUC //p')
    echo "| $label $name | $auc |"
    label=$((label + 1))
done
