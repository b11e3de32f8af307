#!/usr/bin/env bash
# ldmc train on tiny models and a subset of Fashion-MNIST:
#  - exact resume: 40 steps in one run and 20 + 20 (--stop-after, --resume)
#    give byte-identical checkpoints, models and logged losses;
#  - kill -9 in the middle of a run: no partial file is left, the newest
#    checkpoint reads, and --resume finishes with the same bits as a clean run;
#  - a corrupted newest checkpoint: --resume warns, names it and falls back to
#    the previous one;
#  - SIGINT: a checkpoint of the step it reached, exit status 130;
#  - the classifier learns (validation accuracy above chance), the
#    autoencoder stores a latent scale factor, the latent diffusion model
#    trains on that autoencoder and bundles it;
#  - usage and data errors: one clear line, no output folder left behind.
source "$(dirname "$0")/lib.bash" || exit 1
BASE=(--model classifier --batch 32 --limit 640 --widths 8,16 --features 32 --warmup 5 --threads 2 --no-progress
      --log-every 5)
CLS=("${BASE[@]}" --val-every 0)

# --- exact resume ------------------------------------------------------------
run 0 "$LDMC" train "${CLS[@]}" --steps 40 --ckpt-every 10 --out a
out_has "trained classifier: steps 1..40" "model: a/model.ldmc"
run 0 "$LDMC" train "${CLS[@]}" --steps 40 --ckpt-every 10 --stop-after 20 --out b
out_has "stopped after step 20 of 40"
check "a stopped run leaves no model file" test ! -e b/model.ldmc
run 0 "$LDMC" train "${CLS[@]}" --steps 40 --ckpt-every 10 --resume --out b
out_has "trained classifier: steps 21..40"
check "resumed checkpoint at step 40 is byte-identical" cmp -s a/ckpt-0000000040.ldmc b/ckpt-0000000040.ldmc
check "resumed model is byte-identical" cmp -s a/model.ldmc b/model.ldmc
check "logged losses agree" diff <(cut -d, -f1-4 a/log.csv) <(cut -d, -f1-4 b/log.csv)
check "keeps the last 3 checkpoints" test "$(ls a/ckpt-*.ldmc | wc -l)" -eq 3
run 0 "$LDMC" inspect a/model.ldmc
out_has "model = classifier" "conv1.weight" "step: 40"

# --- kill -9 mid-run, then resume ----------------------------------------------
"$LDMC" train "${CLS[@]}" --steps 400 --ckpt-every 3 --out k >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 300); do # until a few checkpoints exist
  [ "$(ls k/ckpt-*.ldmc 2>/dev/null | wc -l)" -ge 2 ] && break
  sleep 0.1
done
sleep 0.3
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
check "killed before the end (no model yet)" test ! -e k/model.ldmc
check "no temp file visible as a checkpoint" bash -c '! ls k | grep -v -E "^(ckpt-[0-9]{10}\.ldmc|log\.csv)$" | grep -qv tmp'
newest=$(ls k/ckpt-*.ldmc | tail -1)
run 0 "$LDMC" inspect "$newest"
out_has "model = classifier"
run 0 "$LDMC" train "${CLS[@]}" --steps 400 --ckpt-every 3 --resume --out k
check "after kill -9 and resume: the same model as an uninterrupted run" bash -c \
  "'$LDMC' train ${CLS[*]} --steps 400 --ckpt-every 100 --out clean >/dev/null 2>&1 && cmp -s <('$LDMC' inspect clean/model.ldmc | grep crc32) <('$LDMC' inspect k/model.ldmc | grep crc32)"

# --- a corrupted newest checkpoint: fall back -----------------------------------
run 0 "$LDMC" train "${CLS[@]}" --steps 30 --ckpt-every 10 --stop-after 20 --out c
printf 'garbage' | dd of=c/ckpt-0000000020.ldmc bs=1 seek=200 conv=notrunc 2>/dev/null
run 0 "$LDMC" train "${CLS[@]}" --steps 30 --ckpt-every 10 --resume --out c
check "warns about the corrupt checkpoint, naming it" grep -q "ckpt-0000000020.ldmc" "$T/err"
out_has "trained classifier: steps 11..30"

# --- SIGINT: checkpoint and exit 130 ----------------------------------------------
"$LDMC" train "${CLS[@]}" --steps 100000 --ckpt-every 0 --out i >/dev/null 2>"$T/sigint.err" &
pid=$!
for _ in $(seq 1 300); do
  grep -q "step 5/" "$T/sigint.err" 2>/dev/null && break
  sleep 0.1
done
kill -INT "$pid"
wait "$pid"
rc=$?
check "SIGINT exits with 130 (got $rc)" test "$rc" -eq 130
check "SIGINT wrote a checkpoint" bash -c 'ls i/ckpt-*.ldmc >/dev/null 2>&1'
check "SIGINT says where" grep -q "interrupted at step" "$T/sigint.err"

# --- the models learn / carry what they should -------------------------------------
run 0 "$LDMC" train "${BASE[@]}" --steps 60 --val-every 60 --out learn
acc=$(sed -n 's/.*val_accuracy \([0-9.]*\).*/\1/p' "$T/out")
check "classifier validation accuracy $acc is above chance (0.1)" awk -v a="$acc" 'BEGIN { exit !(a > 0.3) }'
VAE=(--model autoencoder --batch 8 --limit 64 --vae-channels 8,16,32 --threads 2 --no-progress --val-every 0)
run 0 "$LDMC" train "${VAE[@]}" --steps 4 --out vae
out_has "val_psnr"
check "latent scale factor logged" grep -q "latent scale factor" "$T/err"
run 0 "$LDMC" inspect vae/model.ldmc
out_has "model = autoencoder" "scaling_factor = " "encoder.conv_in.weight" "decoder.conv_out.weight"
LDM=(--model unet --vae vae/model.ldmc --batch 8 --limit 64 --channels 32 --text-width 32 --tokens 4 --threads 2
     --no-progress --val-every 0 --val-batches 1)
run 0 "$LDMC" train "${LDM[@]}" --steps 2 --export-dtype bf16 --out ldm
run 0 "$LDMC" inspect ldm/model.ldmc
out_has "model = ldm" "vae.scaling_factor" "text_model.embeddings.token_embedding.weight" "conv_in.weight" \
  "vae.decoder.conv_out.weight" "bf16"
# --vae from a latent diffusion model file: its bundled autoencoder, carried into the new model unchanged
run 0 "$LDMC" train "${LDM[@]/vae\/model.ldmc/ldm\/model.ldmc}" --steps 1 --export-dtype bf16 --out ldm2
run 0 "$LDMC" inspect ldm2/model.ldmc
out_has "model = ldm" "vae.decoder.conv_out.weight"
check "the bundled autoencoder is carried over bit for bit" bash -c \
  "diff <('$LDMC' inspect ldm/model.ldmc | grep -E '^  vae\.' | awk '{print \$1, \$NF}') <('$LDMC' inspect ldm2/model.ldmc | grep -E '^  vae\.' | awk '{print \$1, \$NF}')"
run 1 "$LDMC" train "${LDM[@]/vae\/model.ldmc/a\/model.ldmc}" --steps 1 --out ldm3
err_is_one_line_with "not an autoencoder model or a latent diffusion model bundling one"

# --- errors ---------------------------------------------------------------------------
run 2 "$LDMC" train --out x
err_is_one_line_with "--model is required"
run 2 "$LDMC" train --model gan --out x
err_is_one_line_with "--model gan" "classifier, autoencoder or unet"
run 2 "$LDMC" train --model classifier --out x --steps 3 --epochs 1
err_is_one_line_with "--steps or --epochs"
run 2 "$LDMC" train --model unet --out x --steps 3
err_is_one_line_with "--vae FILE"
run 2 "$LDMC" train --model classifier --out x --steps 3 --lr abc
err_is_one_line_with "--lr abc"
LDMC_FASHION_MNIST_DIR=$T/nothing run 1 "$LDMC" train "${CLS[@]}" --steps 3 --out nodata
check "missing dataset names the Debian package" grep -q "dataset-fashion-mnist" "$T/err"
run 1 "$LDMC" train "${CLS[@]}" --steps 3 --resume --out a
check "resuming a finished run says so" grep -q "nothing to resume" "$T/err"
run 0 "$LDMC" train --help
for f in model out steps epochs batch lr warmup lr-decay ema clip seed threads resume ckpt-every keep limit vae \
         stop-after export-dtype prediction schedule cond-drop; do
  check "train --help lists --$f" grep -Eq "^  --$f( |$)" "$T/out"
done

summary cli_train
