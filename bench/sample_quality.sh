#!/usr/bin/env bash
# Sample quality of a latent diffusion model over samplers and step counts:
# for DDIM at 4, 8, 16, 32 and 50 steps and DPM-Solver++ 2M at 10 and 20,
# N images of each of the ten classes at guidance W, scored by `ldmc eval`
# (FD and KID against the Fashion-MNIST test split in the classifier's
# feature space, class accuracy), with the sampling cost of each setting.
# --settings takes SAMPLER:STEPS items (default the seven above); lcm:N
# items sample a distilled model (--lcm-model FILE, default the shipped one).
#   bench/sample_quality.sh [--bin build/bin] [--model FILE] [--lcm-model FILE] [--n 50] [--cfg 5] [--seed 0]
#                           [--threads 2] [--settings ddim:4,ddim:8,lcm:4]
set -euo pipefail
BIN=build/bin MODEL= LCM_MODEL= N=50 CFG=5 SEED=0 THREADS=2
SETTINGS=ddim:4,ddim:8,ddim:16,ddim:32,ddim:50,dpmpp2m:10,dpmpp2m:20
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --lcm-model) LCM_MODEL=$2; shift 2 ;;
    --settings) SETTINGS=$2; shift 2 ;;
    --n) N=$2; shift 2 ;;
    --cfg) CFG=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    *) echo "sample_quality.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
T=$(mktemp -d /tmp/ldmc-quality.XXXXXX)
trap 'rm -rf "$T"' EXIT
P=()
for c in t-shirt trouser pullover dress coat sandal shirt sneaker bag "ankle boot"; do P+=(--prompt "$c"); done
M=()
[ -n "$MODEL" ] && M=(--model "$MODEL")
printf '%-8s %5s %6s %9s %10s %18s %9s %8s\n' sampler steps cfg samples FD KID accuracy cost
for s in ${SETTINGS//,/ }; do
  sampler=${s%:*} steps=${s#*:}
  MM=("${M[@]}")
  if [ "$sampler" = lcm ]; then MM=(); [ -n "$LCM_MODEL" ] && MM=(--model "$LCM_MODEL"); fi
  "$BIN/ldmc" sample "${MM[@]}" "${P[@]}" --sampler "$sampler" --steps "$steps" --cfg "$CFG" --n "$N" --seed "$SEED" \
    --threads "$THREADS" --no-progress -o "$T/grid.png" --save-samples "$T/s.safetensors" >"$T/sample.txt" 2>/dev/null
  cost=$(sed -n 's/.* = \([0-9.]*\)$/\1/p' "$T/sample.txt")
  "$BIN/ldmc" eval "$T/s.safetensors" --threads "$THREADS" --kid-subset-size 100 --json "$T/e.json" >/dev/null 2>&1
  /usr/bin/python3 - "$T/e.json" "$sampler" "$steps" "$CFG" "$cost" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))
fd, kid, acc = e["fd"], e["kid"], e["class_accuracy"]
print("%-8s %5s %6s %9d %10.2f %10.2f +- %5.2f %8.1f%% %8s" % (sys.argv[2], sys.argv[3], sys.argv[4], acc["count"],
      fd["value"], kid["mean"], kid["std"], 100 * acc["value"], sys.argv[5]))
EOF
done
