#!/bin/sh
# test_objective.sh — the objective controls do what they say on real data: beta > 1 trades
# reconstruction for a smaller KL and beta < 1 the reverse, free bits keep every latent unit's
# KL near its floor, KL warm-up leaves more KL than the plain ELBO; the choice is stored in the
# model file and a resumed run refuses another one.
# Usage: sh tests/test_objective.sh BUILD_DIR
. "$(dirname "$0")/lib.sh"

fmnist_idx train 3000 "$tmp/tr-images-idx3-ubyte"
train() { # NAME OPTIONS...: 20-D latent, 4 epochs
    name=$1
    shift
    "$vae" train --train "$tmp/tr-images-idx3-ubyte" --no-test --encoder 200 --decoder 200 \
        --latent 20 --epochs 4 --batch 64 --threads 2 --out "$tmp/$name" -q "$@" 2>>"$tmp/err"
}
# "recon kl" of a model on 1000 test images
parts() { "$vae" eval "$tmp/$1/model.safetensors" -k 0 -n 1000 -q |
    sed -n 's/^-ELBO: .*(reconstruction \([0-9.]*\) + KL \([0-9.]*\))/\1 \2/p'; }

train elbo && train beta4 --beta 4 && train beta02 --beta 0.2 && train free --free-bits 1 &&
    train warm --kl-warmup 150 && train iwae --iwae 5
set -- $(parts elbo) $(parts beta4) $(parts beta02) $(parts free) $(parts warm)
echo "# recon/KL: ELBO $1/$2, beta 4 $3/$4, beta 0.2 $5/$6, free bits 1 $7/$8, warm-up ${9}/${10}"
if [ $# -eq 10 ] && awk -v r1="$1" -v k1="$2" -v r4="$3" -v k4="$4" -v r02="$5" -v k02="$6" \
    'BEGIN { exit !(k4 < k1 && k1 < k02 && r4 > r1 && r1 > r02) }'; then
    ok beta_trades_kl_for_reconstruction
else
    fail beta_trades_kl_for_reconstruction "$*" "$(cat "$tmp/err")"
fi
# 20 units, each kept near 1 nat or above
if [ $# -eq 10 ] && awk -v k="$8" -v k1="$2" 'BEGIN { exit !(k > 18 && k > k1) }'; then ok free_bits_floor; else
    fail free_bits_floor "KL $8 (ELBO's $2)"; fi
if [ $# -eq 10 ] && awk -v k="${10}" -v k1="$2" 'BEGIN { exit !(k > k1) }'; then ok kl_warmup; else
    fail kl_warmup "KL ${10} (ELBO's $2)"; fi
# IWAE training: a better -log p(x) for a worse ELBO (Burda et al.'s trade), and a train loss
# that is the bound
nll() { "$vae" eval "$tmp/$1/model.safetensors" -k 100 -n 500 -q | sed -n 's/^-log p(x): *\([0-9.]*\).*/\1/p'; }
n_elbo=$(nll elbo) n_iwae=$(nll iwae)
echo "# -log p(x), K=100: ELBO-trained $n_elbo, IWAE(5)-trained $n_iwae"
if awk -v a="$n_elbo" -v b="$n_iwae" 'BEGIN { exit !(b < a) }' &&
    [ "$(tail -1 "$tmp/iwae/train_log.csv" | cut -d, -f4)" = "0.000000" ]; then
    ok iwae_training_improves_log_likelihood
else
    fail iwae_training_improves_log_likelihood "ELBO-trained $n_elbo, IWAE-trained $n_iwae"
fi
"$vae" train --train "$tmp/tr-images-idx3-ubyte" --iwae 5 --beta 2 --no-test -q 2>"$tmp/err2"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "no separate KL term" "$tmp/err2"; then ok iwae_refuses_beta; else
    fail iwae_refuses_beta "exit $rc: $(cat "$tmp/err2")"; fi
if "$vae" info "$tmp/beta4/model.safetensors" | grep -q "recon + 4 x KL"; then ok objective_stored; else
    fail objective_stored "$("$vae" info "$tmp/beta4/model.safetensors")"; fi
"$vae" train --train "$tmp/tr-images-idx3-ubyte" --no-test --resume "$tmp/beta4" --epochs 5 --beta 1 -q 2>"$tmp/err2"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "another objective" "$tmp/err2"; then ok resume_refuses_other_objective; else
    fail resume_refuses_other_objective "exit $rc: $(cat "$tmp/err2")"; fi
"$vae" train --train "$tmp/tr-images-idx3-ubyte" --beta -1 2>"$tmp/err2"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "\-\-beta" "$tmp/err2"; then ok bad_beta; else fail bad_beta "exit $rc"; fi

# a conditional VAE: labels join both networks; sampling draws a chosen class
fmnist_idx train 3000 "" "$tmp/tr-labels-idx1-ubyte"
train cond --conditional --latent 2
if "$vae" info "$tmp/cond/model.safetensors" | grep -q "conditional on 10 classes" &&
    "$vae" sample "$tmp/cond/model.safetensors" -n 30 -o "$tmp/c.png" 2>"$tmp/err" &&
    "$vae" sample "$tmp/cond/model.safetensors" --label 1 -n 200 --npy "$tmp/c1.npy" 2>>"$tmp/err" &&
    "$vae" sample "$tmp/cond/model.safetensors" --label 7 -n 200 --npy "$tmp/c7.npy" 2>>"$tmp/err" &&
    "$vae" eval "$tmp/cond/model.safetensors" -k 20 -n 200 -q >/dev/null 2>>"$tmp/err"; then
    ok conditional_train_sample_eval
else
    fail conditional_train_sample_eval "$(cat "$tmp/err")"
fi
# trousers (1) are narrow, sneakers (7) wide and low: the mean image differs by class
class_mean() { od -An -v -tf4 -j128 -w3136 "$1" |
    awk '{ for (i = 1; i <= NF; i++) s[i] += $i } END { for (i = 1; i <= 784; i++) print s[i] / NR }'; }
"$vae" sample "$tmp/cond/model.safetensors" --label 1 -n 200 --seed 2 --npy "$tmp/c1b.npy" 2>>"$tmp/err"
class_mean "$tmp/c1.npy" >"$tmp/m1"
class_mean "$tmp/c1b.npy" >"$tmp/m1b"
class_mean "$tmp/c7.npy" >"$tmp/m7"
sq() { paste "$1" "$2" | awk '{ d += ($1 - $2) ^ 2 } END { printf "%.3f", d }'; }
between=$(sq "$tmp/m1" "$tmp/m7") within=$(sq "$tmp/m1" "$tmp/m1b")
echo "# squared distance of mean samples: trouser vs sneaker $between, trouser vs trouser (other draws) $within"
if awk -v b="$between" -v w="$within" 'BEGIN { exit !(b > 4 * w) }'; then ok conditional_label_matters; else
    fail conditional_label_matters "between classes $between, within $within"; fi
"$vae" sample "$tmp/cond/model.safetensors" --label 12 -o "$tmp/x.png" 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "classes 0..9" "$tmp/err"; then ok conditional_label_range; else
    fail conditional_label_range "exit $rc: $(cat "$tmp/err")"; fi
awk 'BEGIN { for (i = 0; i < 50; i++) print i % 3 "," i % 5 }' >"$tmp/nolabel.csv"
"$vae" train --train "$tmp/nolabel.csv" --conditional --likelihood gaussian --no-test -q 2>"$tmp/err"
rc=$?
if [ "$rc" -eq 64 ] && grep -q "needs labels" "$tmp/err"; then ok conditional_needs_labels; else
    fail conditional_needs_labels "exit $rc: $(cat "$tmp/err")"; fi
