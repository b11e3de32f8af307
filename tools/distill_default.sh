#!/usr/bin/env bash
# Distills the default model (models/default/ldm.ldmc) into the few-step
# latent consistency model shipped as models/default/lcm.ldmc
# (docs/distillation.md). About 15 minutes on 2 cores. Resumable: run it
# again after an interruption and it continues from its last checkpoint.
#   bash tools/distill_default.sh [RUN_DIR (default runs/lcm)] [LDMC (default build/bin/ldmc)]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/lcm}
LDMC=${2:-build/bin/ldmc}
THREADS=${THREADS:-2}
if [ -e "$RUN/model.ldmc" ]; then
  echo "== done ($RUN/model.ldmc)"
else
  resume=()
  ls "$RUN"/ckpt-*.ldmc >/dev/null 2>&1 && resume=(--resume)
  "$LDMC" distill --teacher models/default/ldm.ldmc --out "$RUN" --steps 1100 --batch 32 --lr 3e-5 --warmup 100 \
    --ema 0.95 --ckpt-every 200 --val-every 550 --threads "$THREADS" --export-dtype bf16 "${resume[@]}"
fi
echo "== to make it the default distilled model: cp $RUN/model.ldmc models/default/lcm.ldmc"
