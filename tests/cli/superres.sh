#!/usr/bin/env bash
# ldmc train --init MODEL --superres 4 and ldmc sample --superres-from test on
# a tiny model (docs/training.md, "Super-resolution"):
#  - finetuning with --lr 0 keeps every weight (conv_in widened): the
#    super-resolution model then samples exactly the latents of the model it
#    started from, prompted with the test images' class names (the new conv_in
#    channels are zero: the condition contributes nothing);
#  - a real finetuning step writes unet.cond_channels and superres.factor and
#    a model that samples a (low-res, sample, original) grid;
#  - flags that conflict with --init, a plain model with --superres-from, a
#    super-resolution model without it: one clear line each.
source "$(dirname "$0")/lib.bash" || exit 1

VAE=(--model autoencoder --batch 8 --limit 64 --vae-channels 8,16,32 --threads 2 --no-progress --val-every 0)
run 0 "$LDMC" train "${VAE[@]}" --steps 1 --out vae
LDM=(--batch 8 --limit 64 --threads 2 --no-progress --val-every 0 --val-batches 1 --model unet)
run 0 "$LDMC" train "${LDM[@]}" --vae vae/model.ldmc --channels 16 --groups 8 --text-width 16 --tokens 4 --steps 1 --out ldm
# --lr 0: the finetuned model is the trained one plus zero conv_in channels
run 0 "$LDMC" train "${LDM[@]}" --init ldm/model.ldmc --superres 4 --steps 2 --lr 0 --out sr0
params() { "$LDMC" inspect "$1" | grep -E '^  [^ ]+ +param ' | grep -v '^  conv_in.weight ' | awk '{print $1, $NF}'; }
check "--lr 0 keeps every prompt encoder and U-Net weight but conv_in.weight" diff <(params ldm/model.ldmc) <(params sr0/model.ldmc)
run 0 "$LDMC" inspect sr0/model.ldmc
out_has "unet.cond_channels = 4" "superres.factor = 4" "init = ldm/model.ldmc"
check "conv_in.weight widened to 4 + 4 input channels" grep -qE '^  conv_in.weight .*\[16,8,3,3\]' "$T/out"
S=(--steps 3 --threads 2)
run 0 "$LDMC" sample --model sr0/model.ldmc --superres-from test --n 4 "${S[@]}" -o a.png --save-latents a.st
out_has "4x super-resolution of the first 4 test images" "prompt: each image's class name, no guidance"
# the first four test images are an ankle boot, a pullover and two trousers
run 0 "$LDMC" sample --model ldm/model.ldmc --prompt "ankle boot" --prompt pullover --prompt trouser --prompt trouser \
  --n 1 --cfg 1 "${S[@]}" -o b.png --save-latents b.st
check "zero cond channels: the same latents as the model it started from" \
  diff <($ST read a.st latents) <($ST read b.st latents)
# a real finetuning step
run 0 "$LDMC" train "${LDM[@]}" --init ldm/model.ldmc --superres 4 --steps 2 --out sr
check "the cond latents are encoded once per split" grep -q "4x-pooled images (the super-resolution condition)" "$T/err"
run 0 "$LDMC" sample --model sr/model.ldmc --superres-from test --n 3 --steps 2 --threads 2 -o sr.png
check "the grid is written" test -s sr.png
# continuing a super-resolution model needs its factor
run 0 "$LDMC" train "${LDM[@]}" --init sr/model.ldmc --superres 4 --steps 1 --out sr2
run 2 "$LDMC" train "${LDM[@]}" --init sr/model.ldmc --steps 1 --out sr3
err_is_one_line_with "a 4x super-resolution model; continue it with --superres 4"

# --- errors ---------------------------------------------------------------------------
run 2 "$LDMC" train "${LDM[@]}" --init ldm/model.ldmc --superres 4 --channels 32 --steps 1 --out e1
err_is_one_line_with "--channels conflicts with --init"
run 2 "$LDMC" train "${LDM[@]}" --init ldm/model.ldmc --superres 4 --vae vae/model.ldmc --steps 1 --out e2
err_is_one_line_with "--vae conflicts with --init"
run 2 "$LDMC" train "${LDM[@]}" --init ldm/model.ldmc --superres 5 --steps 1 --out e3
err_is_one_line_with "--superres 5 does not divide the 32x32 images"
run 2 "$LDMC" train --model autoencoder --superres 4 --steps 1 --out e4
err_is_one_line_with "--superres is for --model unet"
run 1 "$LDMC" train "${LDM[@]}" --init nothing.ldmc --superres 4 --steps 1 --out e5
err_is_one_line_with "--init" "nothing.ldmc"
run 2 "$LDMC" sample --model sr/model.ldmc --prompt bag -o x.png
err_is_one_line_with "is a 4x super-resolution model: sample it with --superres-from test"
run 2 "$LDMC" sample --model ldm/model.ldmc --superres-from test -o x.png
err_is_one_line_with "is not a super-resolution model"
run 2 "$LDMC" sample --model sr/model.ldmc --superres-from test --cfg 3 -o x.png
err_is_one_line_with "give no --prompt, --cfg"
run 2 "$LDMC" sample --model sr/model.ldmc --superres-from train -o x.png
err_is_one_line_with "--superres-from train: expected test"
check "no output folder or grid left by the errors" bash -c '! ls -d e1 e2 e3 e4 e5 x.png 2>/dev/null | grep -q .'
summary superres
