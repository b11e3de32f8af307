#!/usr/bin/env bash
# Trains ldmc's default model on Fashion-MNIST from scratch, as shipped in
# models/default/ (docs/training.md, "The default model"): the classifier
# (for the sampling metrics), the autoencoder, then the latent diffusion
# model (prompt encoder + U-Net, c=32) over its latents. About an hour on
# 2 cores. Resumable: run it again after an interruption and every stage
# continues from its last checkpoint (a finished stage is skipped).
#   bash tools/train_default.sh [RUN_DIR (default runs/default)] [LDMC (default build/bin/ldmc)]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default}
LDMC=${2:-build/bin/ldmc}
THREADS=${THREADS:-2}
mkdir -p "$RUN"

stage() { # NAME FLAGS...: train into RUN/NAME unless its model exists; resume if it has checkpoints
  local name=$1
  shift
  if [ -e "$RUN/$name/model.ldmc" ]; then
    echo "== $name: done ($RUN/$name/model.ldmc)"
    return
  fi
  local resume=()
  ls "$RUN/$name"/ckpt-*.ldmc >/dev/null 2>&1 && resume=(--resume)
  echo "== $name: ldmc train $* --out $RUN/$name ${resume[*]}"
  "$LDMC" train "$@" --out "$RUN/$name" --threads "$THREADS" "${resume[@]}"
}

stage classifier --model classifier --epochs 4 --batch 64 --lr 1e-3 --warmup 200 --val-every 1000 --ckpt-every 500 \
  --export-dtype bf16
stage autoencoder --model autoencoder --epochs 2 --batch 64 --lr 1e-3 --warmup 200 --vae-channels 16,32,64 \
  --val-every 1000 --ckpt-every 300 --export-dtype bf16
stage ldm --model unet --vae "$RUN/autoencoder/model.ldmc" --channels 32 --text-width 64 --text-layers 2 --text-heads 4 \
  --tokens 4 --batch 64 --steps 10000 --lr 3e-4 --warmup 300 --ema 0.9995 --val-every 1000 --val-batches 8 \
  --ckpt-every 250 --export-dtype bf16

echo "== done. To make it the default model: cp $RUN/ldm/model.ldmc models/default/ldm.ldmc &&" \
  "cp $RUN/classifier/model.ldmc models/default/classifier.ldmc"
