#!/bin/sh
# test_resume.sh — checkpoints as a user meets them through `vae`: SIGKILL at random moments
# never leaves an unreadable checkpoint and a resumed run ends bit for bit where an
# uninterrupted one does; resuming other data or another architecture is refused; a diverged
# run stops naming the step and keeps its last good checkpoint; saved models open with
# `vae info`, `vae sample` and `vae reconstruct`.
# Usage: sh tests/test_resume.sh BUILD_DIR
. "$(dirname "$0")/lib.sh"

# the 10000 Fashion-MNIST test images: 200 steps of 50 per epoch, about 5 s for the whole run
gzip -dc "$fmnist/t10k-images-idx3-ubyte.gz" >"$tmp/data-images-idx3-ubyte"
# 2000 other images
fmnist_idx train 2000 "$tmp/other-images-idx3-ubyte"

args="train --train $tmp/data-images-idx3-ubyte --no-test --preset seed --epochs 8 --batch 50 --seed 11 --threads 1 --checkpoint-every 1 -q"
train() { "$vae" $args "$@"; }
# in the background as the shell's child itself, so that $! is the training process
train_bg() { (exec "$vae" $args "$@") & }

train --out "$tmp/whole" 2>"$tmp/whole.err"
if [ -s "$tmp/whole/model.safetensors" ]; then ok uninterrupted_run; else
    fail uninterrupted_run "$(cat "$tmp/whole.err")"; fi

# random moments between 0.05 s and 1.25 s into each run
random_delay() { od -An -N2 -tu2 /dev/urandom | awk '{ printf "%.2f", 0.05 + ($1 % 120) / 100 }'; }
kills=0 bad="" delays=""
for round in 1 2 3 4 5 6; do
    if [ -f "$tmp/crash/checkpoint.safetensors" ]; then
        train_bg --resume "$tmp/crash" 2>>"$tmp/crash.err"
    else
        train_bg --out "$tmp/crash" 2>>"$tmp/crash.err"
    fi
    pid=$!
    delay=$(random_delay)
    sleep "$delay"
    kill -KILL $pid 2>/dev/null && kills=$((kills + 1)) && delays="$delays ${delay}s"
    wait $pid 2>/dev/null
    [ -f "$tmp/crash/checkpoint.safetensors" ] || continue
    if ! "$vae" info "$tmp/crash/checkpoint.safetensors" >"$tmp/info" 2>&1; then
        bad="$bad round $round (killed after ${delay}s): $(cat "$tmp/info")"
    fi
done
if [ -z "$bad" ] && [ "$kills" -ge 3 ]; then ok "sigkill_leaves_a_loadable_checkpoint (killed after$delays)"; else
    fail sigkill_leaves_a_loadable_checkpoint "$kills kills; $bad"; fi

# finish the run; it must end exactly where the uninterrupted one did, logging each epoch once
if [ -f "$tmp/crash/checkpoint.safetensors" ]; then
    train --resume "$tmp/crash" 2>>"$tmp/crash.err"
else
    train --out "$tmp/crash" 2>>"$tmp/crash.err"
fi
if cmp -s "$tmp/whole/model.safetensors" "$tmp/crash/model.safetensors"; then
    ok killed_and_resumed_is_bit_identical
else
    fail killed_and_resumed_is_bit_identical "$(tail -3 "$tmp/crash.err")"
fi
cut -d, -f1-4 "$tmp/whole/train_log.csv" >"$tmp/a"
cut -d, -f1-4 "$tmp/crash/train_log.csv" >"$tmp/b"
if cmp -s "$tmp/a" "$tmp/b"; then ok resumed_log_matches; else
    fail resumed_log_matches "$(diff "$tmp/a" "$tmp/b" | head -6)"; fi
if ls "$tmp/crash" | grep -q '\.tmp\.'; then fail no_stale_temporaries "$(ls "$tmp/crash")"; else
    ok no_stale_temporaries; fi

# SIGTERM: finishes the step, writes the checkpoint, exits 130; resuming completes the run
train_bg --out "$tmp/term" 2>"$tmp/term.err"
pid=$!
sleep 0.3
kill -TERM $pid
wait $pid
rc=$?
if [ "$rc" -eq 130 ] && grep -q "resume" "$tmp/term.err" && train --resume "$tmp/term" 2>>"$tmp/term.err" &&
    cmp -s "$tmp/whole/model.safetensors" "$tmp/term/model.safetensors"; then
    ok sigterm_then_resume_is_bit_identical
else
    fail sigterm_then_resume_is_bit_identical "exit $rc: $(tail -3 "$tmp/term.err")"
fi

# refusals: the checkpoint says what it was trained on
"$vae" train --train "$tmp/other-images-idx3-ubyte" --no-test --resume "$tmp/whole" -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "other training data" "$tmp/err"; then ok refuses_other_data; else
    fail refuses_other_data "exit $rc: $(cat "$tmp/err")"; fi
train --resume "$tmp/whole" --preset pytorch 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "different architecture" "$tmp/err"; then ok refuses_other_architecture
else fail refuses_other_architecture "exit $rc: $(cat "$tmp/err")"; fi
"$vae" train --resume "$tmp/nowhere" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 66 ] && grep -q "nowhere/checkpoint.safetensors" "$tmp/err"; then ok resume_missing
else fail resume_missing "exit $rc: $(cat "$tmp/err")"; fi

# divergence: a learning rate of 1 blows up at step 2; the checkpoint of step 1 stays
"$vae" train --train "$tmp/data-images-idx3-ubyte" --no-test --preset seed --lr 1 --batch 50 \
    --threads 1 --checkpoint-every 1 --out "$tmp/nan" -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 3 ] && grep -q "diverged at step 2" "$tmp/err" && [ ! -e "$tmp/nan/model.safetensors" ] &&
    "$vae" info "$tmp/nan/checkpoint.safetensors" | grep -q "adam, 1 steps"; then
    ok divergence_keeps_last_good_checkpoint
else
    fail divergence_keeps_last_good_checkpoint "exit $rc: $(cat "$tmp/err")"
fi

# the saved model, used on its own
if "$vae" info "$tmp/whole/model.safetensors" >"$tmp/info" && grep -q "203828" "$tmp/info" &&
    grep -q "784-128-64-32-(2)-256-128-64-784" "$tmp/info"; then ok info; else
    fail info "$(cat "$tmp/info")"; fi
if "$vae" sample "$tmp/whole/model.safetensors" -o "$tmp/s.png" 2>"$tmp/err" &&
    head -c 8 "$tmp/s.png" | grep -q PNG &&
    "$vae" reconstruct "$tmp/whole/model.safetensors" "$tmp/data-images-idx3-ubyte" -o "$tmp/r.png" 2>>"$tmp/err" &&
    head -c 8 "$tmp/r.png" | grep -q PNG; then
    ok sample_and_reconstruct
else
    fail sample_and_reconstruct "$(cat "$tmp/err")"
fi
head -c 5000 "$tmp/whole/model.safetensors" >"$tmp/cut.safetensors"
"$vae" info "$tmp/cut.safetensors" >/dev/null 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 65 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "cut.safetensors" "$tmp/err"; then
    ok truncated_model_one_line
else
    fail truncated_model_one_line "exit $rc: $(cat "$tmp/err")"
fi
