#!/bin/sh
# test_convnet.sh — the convolutional VAE through the program: a small --conv model trains,
# saves 4-D kernels in PyTorch's layout, reloads and resumes bit for bit; bad convolution
# specifications and data without an image shape are refused clearly.
# Usage: sh tests/test_convnet.sh BUILD_DIR
. "$(dirname "$0")/lib.sh"

fmnist_idx train 1000 "$tmp/tr-images-idx3-ubyte"
small="--train $tmp/tr-images-idx3-ubyte --no-test --conv 8x4s2p1,16x4s2p1 --encoder 64 --decoder 64 --latent 8 --batch 100 --threads 2 -q"
"$vae" train $small --epochs 2 --out "$tmp/c" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 0 ] && "$vae" info "$tmp/c/model.safetensors" | grep -q "Conv2d 8x4s2p1,16x4s2p1" &&
    head -c 4000 "$tmp/c/model.safetensors" | grep -q '"encoder.conv.0.weight":{"dtype":"F32","shape":\[8,1,4,4\]' &&
    head -c 4000 "$tmp/c/model.safetensors" | grep -q '"output.weight":{"dtype":"F32","shape":\[8,1,4,4\]'; then
    ok conv_train_and_save
else
    fail conv_train_and_save "exit $rc: $(cat "$tmp/err")"
fi
# learning: the second epoch's train loss is below the first's
if awk -F, 'NR == 2 { a = $2 } NR == 3 { b = $2 } END { exit !(b < a) }' "$tmp/c/train_log.csv"; then
    ok conv_learns
else
    fail conv_learns "$(cat "$tmp/c/train_log.csv")"
fi
# stop after epoch 1, resume to 2: the same bits
"$vae" train $small --epochs 1 --out "$tmp/r" 2>"$tmp/err" &&
    "$vae" train --train "$tmp/tr-images-idx3-ubyte" --no-test \
        --resume "$tmp/r" --epochs 2 --threads 2 -q 2>>"$tmp/err"
if cmp -s "$tmp/c/model.safetensors" "$tmp/r/model.safetensors"; then ok conv_resume_bit_identical; else
    fail conv_resume_bit_identical "$(cat "$tmp/err")"; fi
if "$vae" eval "$tmp/c/model.safetensors" -k 10 -n 100 -q | grep -q "^-log p(x)" &&
    "$vae" sample "$tmp/c/model.safetensors" -n 10 -o "$tmp/s.png" 2>"$tmp/err"; then
    ok conv_eval_and_sample
else
    fail conv_eval_and_sample "$(cat "$tmp/err")"
fi
"$vae" train --train "$tmp/tr-images-idx3-ubyte" --conv 8x5s2 --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "cannot be mirrored" "$tmp/err"; then ok conv_unmirrorable; else
    fail conv_unmirrorable "exit $rc: $(cat "$tmp/err")"; fi
"$vae" train --train "$tmp/tr-images-idx3-ubyte" --conv 8x4q2 --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "unexpected 'q' at position 4" "$tmp/err"; then ok conv_bad_spec; else
    fail conv_bad_spec "exit $rc: $(cat "$tmp/err")"; fi
printf '1,2,3,4\n5,6,7,8\n' >"$tmp/t.csv"
"$vae" train --train "$tmp/t.csv" --likelihood gaussian --conv 4x2s2 --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "convolutions need images" "$tmp/err"; then ok conv_needs_images; else
    fail conv_needs_images "exit $rc: $(cat "$tmp/err")"; fi
