#!/usr/bin/env bash
# Data-parallel training throughput on this machine (docs/distributed.md):
# the U-Net (latent diffusion, 8x8x4 latents, global batch 64) at each width
# for 1 rank x 2 threads, 2 ranks x 1 thread and 1 rank x 1 thread, with the
# all-reduce figures `ldmc train` reports, then bench_allreduce's latency and
# bandwidth. Every configuration runs the same --steps; images/s is over the
# whole run after compilation (the trainer's figure).
#   bash bench/dp_train.sh [--widths 32,64] [--steps 40] [--out DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LDMC=${LDMC:-$ROOT/build/bin/ldmc}
WIDTHS=32,64 STEPS=40 OUT=${TMPDIR:-/tmp}/ldmc-dp-train
while [ $# -gt 0 ]; do
  case $1 in
    --widths) WIDTHS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "dp_train.sh: unknown flag $1 (--widths, --steps, --out)" >&2; exit 2 ;;
  esac
done
MPI=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
mkdir -p "$OUT"
VAE=$OUT/vae/model.ldmc
if [ ! -e "$VAE" ]; then # any autoencoder with the default model's latent shape: only throughput is measured
  "$LDMC" train --model autoencoder --vae-channels 16,32,64 --batch 32 --steps 20 --limit 2048 --val-every 0 \
    --no-progress --out "$OUT/vae" >/dev/null 2>&1
fi
COMMON=(--model unet --vae "$VAE" --batch 64 --steps "$STEPS" --limit 4096 --val-every 0 --ckpt-every 0 --no-progress
        --log-every "$STEPS" --text-width 64 --tokens 4)
printf "%-6s %-16s %10s %10s %s\n" width config "img/s" "vs 1x1" "all-reduce"
for c in ${WIDTHS//,/ }; do
  base=
  for cfg in 1x1 1x2 2x1; do
    ranks=${cfg%x*} threads=${cfg#*x}
    rm -rf "$OUT/run"
    cmd=("$LDMC" train "${COMMON[@]}" --channels "$c" --threads "$threads" --out "$OUT/run")
    [ "$ranks" -gt 1 ] && cmd=("${MPI[@]}" -np "$ranks" -x OMP_NUM_THREADS="$threads" "${cmd[@]}")
    OMP_NUM_THREADS=$threads "${cmd[@]}" >"$OUT/stdout" 2>"$OUT/stderr"
    ips=$(sed -n 's/.*images\/s \([0-9.]*\).*/\1/p' "$OUT/stdout" | tail -1)
    comm=$(sed -n 's/^all-reduce: //p' "$OUT/stderr" | tail -1)
    [ -z "$base" ] && base=$ips
    printf "%-6s %-16s %10s %10s %s\n" "c=$c" "$ranks rank x $threads thr" "$ips" \
      "$(awk -v a="$ips" -v b="$base" 'BEGIN { printf "%.2fx", a / b }')" "${comm:--}"
  done
done
echo
"${MPI[@]}" -np 2 "$(dirname "$LDMC")/bench_allreduce" --max-mib 64
