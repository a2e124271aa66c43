#!/bin/sh
# test_cli.sh — the `vae` program as a user meets it: help, exit codes, one-line errors on bad
# files, a small training run that writes its pictures and repeats bit for bit, interruption.
# Usage: sh tests/test_cli.sh BUILD_DIR
. "$(dirname "$0")/lib.sh"

# IDX image file of the first N Fashion-MNIST test images
make_idx() { fmnist_idx t10k "$1" "$2"; }

if "$vae" --help | grep -q "train"; then ok help; else fail help "no command list"; fi
if "$vae" --version | grep -q "OpenBLAS" && "$vae" -V | grep -q "^vae " &&
    "$vae" --version | grep -q "^backend: \(onednn (onednn and\|openblas (openblas only\)" &&
    "$vae" --backend openblas --version | grep -q "^backend: openblas "; then
    ok version
else
    fail version "no BLAS or backend named, or no -V"
fi
if "$vae" --version | grep -q "^kernels: [A-Za-z0-9]* (" &&
    OPENBLAS_CORETYPE=Prescott "$vae" --version | grep -q "^kernels: Prescott (named by OPENBLAS_CORETYPE)"; then
    ok version_names_kernels
else
    fail version_names_kernels "$("$vae" --version | tail -1)"
fi
if "$vae" train --help | grep -q -- "--epochs N.*default 10"; then ok train_help; else
    fail train_help "no --epochs default"; fi
expect unknown_command 64 "unknown command" -- "$vae" frobnicate
expect unknown_option 64 "unrecognized option" -- "$vae" train --frobnicate
expect bad_number 64 "\-\-epochs: expected an integer" -- "$vae" train --epochs 12abc
expect zero_epochs 64 "\-\-epochs" -- "$vae" train --epochs 0
expect bad_lr 64 "\-\-lr" -- "$vae" train --lr nan
expect bad_activation 64 "unknown activation" -- "$vae" train --train "$fmnist/t10k-images-idx3-ubyte.gz" --no-test --activation gelu
expect bad_device 64 "\-\-device: unknown device .tpu. (expected cpu, cuda or auto)" -- "$vae" eval m.safetensors --device tpu
expect device_needs_value 64 "\-\-device needs a value" -- "$vae" sample m.safetensors --device
expect bad_precision 64 "\-\-precision: unknown precision .fp8. (expected fp32, tf32 or bf16)" -- "$vae" train --precision=fp8
if ! "$vae" train --help | grep -q -- "--device D"; then fail device_help "train --help"; else ok device_help; fi
expect missing_file 66 "no-such-file.*cannot open" -- "$vae" train --train "$tmp/no-such-file"

printf 'GIF89a not an idx file at all' >"$tmp/bad-magic"
expect bad_magic 65 "bad-magic: not an IDX file" -- "$vae" train --train "$tmp/bad-magic"
make_idx 300 "$tmp/small-images-idx3-ubyte"
head -c 1000 "$tmp/small-images-idx3-ubyte" >"$tmp/cut-images-idx3-ubyte"
expect truncated 65 "cut-images-idx3-ubyte: truncated" -- "$vae" train --train "$tmp/cut-images-idx3-ubyte"
head -c 2000 "$tmp/small-images-idx3-ubyte" | gzip >"$tmp/cutgz-images-idx3-ubyte.gz"
expect truncated_gzip 65 "truncated" -- "$vae" train --train "$tmp/cutgz-images-idx3-ubyte.gz"
expect labels_mismatch 65 "10000 labels, but" -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --train-labels "$fmnist/t10k-labels-idx1-ubyte.gz"

make_idx 100 "$tmp/held-images-idx3-ubyte"
run_small() { # OUT [THREADS [OPTION...]]
    out=$1 threads=${2:-1}
    shift $(($# > 1 ? 2 : 1))
    "$vae" train --train "$tmp/small-images-idx3-ubyte" --test "$tmp/held-images-idx3-ubyte" \
        --preset seed --epochs 2 --batch 50 --threads "$threads" --seed 7 --out "$out" "$@" \
        >"$out.stdout" 2>"$out.stderr"
}
if run_small "$tmp/run1" && [ -s "$tmp/run1/samples.png" ] && [ -s "$tmp/run1/reconstructions.png" ] &&
    [ "$(wc -l <"$tmp/run1/train_log.csv")" -eq 3 ] && [ "$(grep -c '^epoch' "$tmp/run1.stdout")" -eq 2 ]; then
    ok small_training_run
else
    fail small_training_run "$(cat "$tmp/run1.stderr")"
fi
if file "$tmp/run1/samples.png" 2>/dev/null | grep -q "PNG image" || head -c 8 "$tmp/run1/samples.png" | grep -q PNG; then
    ok writes_png
else
    fail writes_png "samples.png is not a PNG"
fi
run_small "$tmp/run2"
# identical losses (columns 1-7); only the timing columns may differ
if cut -d, -f1-7 "$tmp/run1/train_log.csv" >"$tmp/a" && cut -d, -f1-7 "$tmp/run2/train_log.csv" >"$tmp/b" &&
    cmp -s "$tmp/a" "$tmp/b" && cmp -s "$tmp/run1/samples.png" "$tmp/run2/samples.png"; then
    ok deterministic_run
else
    fail deterministic_run "$(diff "$tmp/a" "$tmp/b" | head -5)"
fi
# the same with two threads (matrix products and elementwise loops split): bit for bit again
run_small "$tmp/run3" 2
run_small "$tmp/run4" 2
if cut -d, -f1-7 "$tmp/run3/train_log.csv" >"$tmp/c" && cut -d, -f1-7 "$tmp/run4/train_log.csv" >"$tmp/d" &&
    cmp -s "$tmp/c" "$tmp/d" && cmp -s "$tmp/run3/samples.png" "$tmp/run4/samples.png"; then
    ok deterministic_run_two_threads
else
    fail deterministic_run_two_threads "$(diff "$tmp/c" "$tmp/d" | head -5)"
fi
# --batch-threads auto times the ways of using the threads and says which it took; that
# choice given again reruns the same bits
run_small "$tmp/run5" 2 --batch-threads auto
split='each batch\|each batch, on prepacked weights\|the products'
took=$(sed -n "s/.*the threads split \($split\) (--batch-threads auto: timed)\$/\1/p" \
    "$tmp/run5.stderr")
case $took in
"each batch") mode=on ;;
"each batch, on prepacked weights") mode=prepacked ;;
*) mode=off ;;
esac
run_small "$tmp/run6" 2 --batch-threads "$mode"
if [ -n "$took" ] && cut -d, -f1-7 "$tmp/run5/train_log.csv" >"$tmp/e" &&
    cut -d, -f1-7 "$tmp/run6/train_log.csv" >"$tmp/f" && cmp -s "$tmp/e" "$tmp/f"; then
    ok batch_threads_auto_says_its_choice
else
    fail batch_threads_auto_says_its_choice "$(head -c 300 "$tmp/run5.stderr")"
fi
# prepacked weights: the banner says so, and a rerun gives the same bits
run_small "$tmp/run7" 2 --batch-threads prepacked
run_small "$tmp/run8" 2 --batch-threads prepacked
if grep -q "the threads split each batch, on prepacked weights$" "$tmp/run7.stderr" &&
    cut -d, -f1-7 "$tmp/run7/train_log.csv" >"$tmp/g" &&
    cut -d, -f1-7 "$tmp/run8/train_log.csv" >"$tmp/h" && cmp -s "$tmp/g" "$tmp/h"; then
    ok batch_threads_prepacked
else
    fail batch_threads_prepacked "$(head -c 300 "$tmp/run7.stderr")"
fi
expect bf16_is_the_cpus 64 "bf16 products are the CPU's" -- "$vae" train \
    --train "$tmp/small-images-idx3-ubyte" --no-test --precision bf16 --device cuda --out "$tmp/bf"
expect bf16_not_on_openblas 64 "\-\-precision bf16 runs its products on oneDNN; \-\-backend openblas has none" \
    -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --backend openblas \
    --precision bf16 --out "$tmp/bf"
expect batch_threads_free_bits 64 "\-\-batch-threads on: free bits floor each latent unit's KL" \
    -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --batch-threads on \
    --free-bits 0.5 --out "$tmp/bt"
expect batch_threads_not_on_gpu 64 "\-\-batch-threads prepacked: the threads split the CPU's work" \
    -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --batch-threads prepacked \
    --device cuda --out "$tmp/bt"
expect floor_needs_learned_variance 64 "\-\-variance-floor bounds a learned variance" \
    -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --likelihood gaussian \
    --variance-floor 0.01 --out "$tmp/vf"
expect sigma_needs_fixed_variance 64 "\-\-sigma is a fixed variance's; \-\-variance dim learns it" \
    -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --likelihood gaussian \
    --variance dim --sigma 0.5 --out "$tmp/vf"
expect tf32_not_on_cpu 64 "\-\-precision tf32 is a GPU's; \-\-device cpu computes fp32 or bf16" \
    -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --device cpu \
    --precision tf32 --out "$tmp/tf"
expect bad_batch_threads 64 "\-\-batch-threads fast: expected on, prepacked, off or auto" -- \
    "$vae" train --batch-threads fast
# the GPU, where this build has CUDA and a GPU is there: trained there with the same model and
# data as run1, evaluated on both devices (the same draws: -log p(x) agrees to the sums'
# rounding); elsewhere --device cuda is refused with the reason
if "$vae" train --train "$tmp/small-images-idx3-ubyte" --test "$tmp/held-images-idx3-ubyte" \
    --preset seed --epochs 2 --batch 50 --seed 7 --device cuda --out "$tmp/gpu" >"$tmp/gpu.out" 2>"$tmp/gpu.err"; then
    nll() { "$vae" eval "$tmp/gpu/model.safetensors" "$tmp/held-images-idx3-ubyte" -k 50 -q --device "$1" | awk '/^-log p/ { print $3 }'; }
    a=$(nll cpu) b=$(nll cuda)
    gpu_test=$(awk -F, 'END { print $5 }' "$tmp/gpu/train_log.csv")
    cpu_test=$(awk -F, 'END { print $5 }' "$tmp/run1/train_log.csv")
    if awk -v a="$a" -v b="$b" -v g="$gpu_test" -v c="$cpu_test" 'BEGIN {
           d = a - b; e = g - c; if (d < 0) d = -d; if (e < 0) e = -e
           exit !(a != "" && b != "" && d <= 1e-4 * a && e <= 1e-3 * c) }'; then
        ok gpu_train_then_eval_on_both
    else
        fail gpu_train_then_eval_on_both "-log p(x) cpu $a cuda $b; test loss gpu $gpu_test cpu $cpu_test"
    fi
else
    if grep -q "no CUDA device" "$tmp/gpu.err"; then ok gpu_absent_refused; else
        fail gpu_absent_refused "$(head -c 300 "$tmp/gpu.err")"; fi
fi
# every command reads every format: reconstruct takes CSV rows of the model's image size
tail -c +17 "$tmp/small-images-idx3-ubyte" | head -c $((3 * 784)) | od -An -v -tu1 -w784 |
    awk '{ for (i = 1; i <= NF; i++) printf "%s%.4f", (i > 1 ? "," : ""), $i / 255; print "" }' >"$tmp/three.csv"
if "$vae" reconstruct "$tmp/run1/model.safetensors" "$tmp/three.csv" -o "$tmp/rec.png" 2>"$tmp/err" &&
    [ -s "$tmp/rec.png" ]; then ok reconstruct_reads_csv; else fail reconstruct_reads_csv "$(cat "$tmp/err")"; fi
# off a terminal vae eval still says how it goes: a line every 5 s and one at the end
if "$vae" eval "$tmp/run1/model.safetensors" "$tmp/held-images-idx3-ubyte" -k 5 >/dev/null 2>"$tmp/err" &&
    grep -q "^eval: 100 done in [0-9.]* s$" "$tmp/err"; then ok eval_progress_off_terminal; else
    fail eval_progress_off_terminal "$(cat "$tmp/err")"; fi
# vae mask writes what its help says: removed values as empty cells, kept ones as written
printf 'a,b,c\n5.1,3.5,1.4\n4.9,3.0,0.2\n0.1,7,2.25\n' >"$tmp/iris.csv"
if "$vae" mask "$tmp/iris.csv" -o "$tmp/holes.csv" --fraction 0.4 --seed 3 2>"$tmp/err" &&
    grep -q ',,' "$tmp/holes.csv" && ! grep -q 'nan\|0999' "$tmp/holes.csv" &&
    grep -q '^0.1,7,2.25$' "$tmp/holes.csv"; then
    ok mask_writes_empty_cells_and_values_as_written
else
    fail mask_writes_empty_cells_and_values_as_written "$(cat "$tmp/holes.csv" "$tmp/err")"
fi
# --threads on every command that computes, said when the BLAS runs fewer
expect threads_capped 0 "\-\-threads 1000: the BLAS runs at most" -- "$vae" sample "$tmp/run1/model.safetensors" -o "$tmp/t.png" --threads 1000
expect threads_bad 64 "\-\-threads: expected an integer in 1..1024" -- "$vae" encode "$tmp/run1/model.safetensors" "$tmp/three.csv" -o "$tmp/z.csv" -t 0
# report works on a run of any data: a CSV run needs its data named, and takes a label column
awk 'BEGIN { for (i = 0; i < 120; i++) printf "%.3f,%.3f,%.3f,%d\n", (i % 7) / 7, (i % 5) / 5, (i % 3) / 3, i % 3 }' >"$tmp/tab.csv"
"$vae" train --train "$tmp/tab.csv" --label-column last --no-test --epochs 2 --batch 20 --out "$tmp/tab" -q 2>"$tmp/err"
expect report_csv_run_needs_data 64 "name its test data with --data" -- "$vae" report "$tmp/tab"
if "$vae" report "$tmp/tab" -d "$tmp/tab.csv" --label-column last -k 5 2>"$tmp/err" && [ -s "$tmp/tab/report.html" ]; then
    ok report_of_a_csv_run
else
    fail report_of_a_csv_run "$(cat "$tmp/err")"
fi
# mask and impute keep a CSV's header and its label column where they were
awk 'BEGIN { print "a,lab,b,c"; for (i = 0; i < 90; i++) printf "%.2f,%d,%.2f,%.2f\n", (i % 9) / 9, i % 3, (i % 9) / 4.5, (i % 5) / 5 }' >"$tmp/lab.csv"
"$vae" mask "$tmp/lab.csv" --label-column 2 -o "$tmp/lab-holes.csv" --fraction 0.3 2>"$tmp/err"
"$vae" train --train "$tmp/lab-holes.csv" --label-column 2 --missing --likelihood gaussian --epochs 2 \
    --batch 30 --no-test --out "$tmp/labm" -q 2>>"$tmp/err"
"$vae" impute "$tmp/labm/model.safetensors" "$tmp/lab-holes.csv" --label-column 2 -k 5 \
    -o "$tmp/lab-filled.csv" 2>>"$tmp/err"
if [ "$(head -1 "$tmp/lab-holes.csv")" = "a,lab,b,c" ] && [ "$(head -1 "$tmp/lab-filled.csv")" = "a,lab,b,c" ] &&
    cut -d, -f2 "$tmp/lab.csv" >"$tmp/l0" && cut -d, -f2 "$tmp/lab-filled.csv" >"$tmp/l1" &&
    cmp -s "$tmp/l0" "$tmp/l1" && ! grep -q ',,' "$tmp/lab-filled.csv"; then
    ok mask_and_impute_keep_header_and_labels
else
    fail mask_and_impute_keep_header_and_labels "$(head -3 "$tmp/lab-holes.csv" "$tmp/lab-filled.csv" "$tmp/err")"
fi
# a sparse label set is named, not made into classes without samples
awk 'BEGIN { for (i = 0; i < 60; i++) printf "%.2f,%.2f,%d\n", (i % 7) / 7, (i % 4) / 4, i % 3 == 2 ? 5 : i % 3 }' >"$tmp/sparse.csv"
expect sparse_labels 64 "labels 2..4 never occur in" -- "$vae" train --train "$tmp/sparse.csv" --label-column last --conditional --no-test --epochs 1 --out "$tmp/sp"
# -q on every command: nothing but errors
if "$vae" sample "$tmp/run1/model.safetensors" -o "$tmp/q.png" -q 2>"$tmp/err" && [ ! -s "$tmp/err" ] &&
    [ -s "$tmp/q.png" ]; then ok quiet_everywhere; else fail quiet_everywhere "$(cat "$tmp/err")"; fi
# flags that would do nothing are refused with the reason; outputs that cannot be made exit 73
m1="$tmp/run1/model.safetensors"
expect test_and_no_test 64 "\-\-no-test: give one or the other" -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --test "$tmp/held-images-idx3-ubyte" --no-test
expect label_column_on_idx 64 "\-\-label-column is for CSV data" -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --label-column 3 --no-test
expect label_of_unconditional 64 "is not a conditional model" -- "$vae" sample "$m1" --label 3 -o "$tmp/s.png"
expect exclude_absent_label 64 "\-\-exclude-label 99: no training sample has that label" -- "$vae" train --train "$fmnist/t10k-images-idx3-ubyte.gz" --no-test --exclude-label 99 --epochs 1 --out "$tmp/ex"
expect anomaly_label_absent 64 "\-\-anomaly-label 42: no sample of" -- "$vae" score "$m1" "$fmnist/t10k-images-idx3-ubyte.gz" -o "$tmp/scores.csv" --anomaly-label 42
expect eval_json_checked_first 73 "cannot create .*no-such-folder/j.json" -- "$vae" eval "$m1" "$fmnist/t10k-images-idx3-ubyte.gz" --json "$tmp/no-such-folder/j.json"
expect picture_not_png 64 "pictures are written as PNG" -- "$vae" sample "$m1" -o "$tmp/x.jpg"
expect train_out_is_a_folder 64 "names the run's folder" -- "$vae" train --train "$tmp/small-images-idx3-ubyte" -o "$tmp/model.safetensors"
expect output_folder_missing 73 "cannot create .*no-such-folder/s.png" -- "$vae" sample "$m1" -o "$tmp/no-such-folder/s.png"
mkdir "$tmp/dir.png"
expect output_is_a_folder 73 "is a folder; name a file to write" -- "$vae" sample "$m1" -o "$tmp/dir.png"
# threads that never collapse: by default no thread is started on a core another process keeps
# busy (a hog pinned to CPU 0 here), so a busy machine does not make every step wait
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    taskset -c 0 sh -c 'while :; do :; done' &
    hog=$!
    sleep 0.3
    threads=$("$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --epochs 1 --batch 50 \
        --preset seed --out "$tmp/busy" 2>&1 | sed -n 's/.* \([0-9][0-9]*\) threads*,.*/\1/p')
    kill $hog
    if [ -n "$threads" ] && [ "$threads" -lt "$(nproc)" ]; then ok default_threads_leave_busy_cores; else
        fail default_threads_leave_busy_cores "$threads threads on $(nproc) cores, one busy"; fi
fi
# nothing lost: a refused run changes no file of the folder it was given and makes no folder;
# a folder holding a run is refused unless --force (or --resume); resuming a finished run
# says there is nothing to do
cp -r "$tmp/run1" "$tmp/kept"
printf '0.5,2.0\n0.1,0.2\n' >"$tmp/big.csv"
expect refused_run_changes_nothing 64 "outside what a bernoulli likelihood" -- "$vae" train --train "$tmp/big.csv" --no-test --out "$tmp/kept"
if diff -r "$tmp/run1" "$tmp/kept" >/dev/null; then ok refused_run_kept_the_folder; else
    fail refused_run_kept_the_folder "$(diff -r "$tmp/run1" "$tmp/kept" | head -3)"; fi
expect refused_run_no_folder 64 "outside what" -- "$vae" train --train "$tmp/big.csv" --no-test --out "$tmp/new-run"
if [ -e "$tmp/new-run" ]; then fail refused_run_made_no_folder "it exists"; else ok refused_run_made_no_folder; fi
expect folder_holds_a_run 64 "holds another run (model.safetensors): continue it with --resume" -- \
    "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --epochs 1 --out "$tmp/kept"
if diff -r "$tmp/run1" "$tmp/kept" >/dev/null; then ok folder_with_a_run_untouched; else
    fail folder_with_a_run_untouched "changed"; fi
if "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --preset seed --epochs 1 --batch 50 \
    --out "$tmp/kept" --force -q 2>"$tmp/err" && [ "$(wc -l <"$tmp/kept/train_log.csv")" -eq 2 ]; then
    ok force_replaces_the_run
else
    fail force_replaces_the_run "$(cat "$tmp/err")"
fi
expect finished_run_nothing_to_do 0 "has finished its 1 epochs: nothing to do" -- "$vae" train --resume "$tmp/kept" --train "$tmp/small-images-idx3-ubyte" --no-test
expect out_is_a_file 73 "exists and is not a folder" -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --epochs 1 --out "$tmp/big.csv"
expect cannot_create_out 73 "cannot create" -- "$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --epochs 1 --out /proc/vae-out

# SIGINT stops training at the end of a step with exit 130
"$vae" train --train "$tmp/small-images-idx3-ubyte" --no-test --epochs 100000 --batch 10 --threads 1 \
    --out "$tmp/int" >/dev/null 2>"$tmp/int.err" &
pid=$!
sleep 1
kill -INT $pid
wait $pid
rc=$?
if [ "$rc" -eq 130 ] && grep -q "cancelled" "$tmp/int.err"; then ok interrupt; else
    fail interrupt "exit $rc: $(cat "$tmp/int.err")"; fi
