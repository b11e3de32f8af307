#!/bin/bash
# `ldmc compile --memory-budget`: the remat pass under a budget, on the tiny
# U-Net's training step. The oracle is the unbudgeted compile of the same step:
# a budget below its pipeline peak is met (the reported peak fits it and is
# below the unbudgeted one, extra FLOPs > 0); a budget above it changes
# nothing; bad values are usage errors. (An impossible budget, reported as not
# met, is test_pass_remat's: it runs remat to its planning cap, too long here.)
source "$(dirname "$0")/lib.bash"
M=(--model unet --channels 32 --latent 8x8x4 --context 16x5 --train)
mib_of() { sed -n 's/^planned peak activation memory: \([0-9]*\) bytes.*/\1/p' "$T/out"; }

run 0 "$LDMC" compile "${M[@]}"
base=$(mib_of)
[ -n "$base" ] && pass || fail "no planned peak: $(head -3 "$T/out")"
half=$((base / 2))
run 0 "$LDMC" compile "${M[@]}" --memory-budget "$half"
out_has "remat: budget" " met: pipeline peak"
line=$(grep '^remat:' "$T/out")
after=$(echo "$line" | sed -n 's/.*-> \([0-9.]*\) MiB.*/\1/p')
extra=$(echo "$line" | sed -n 's/.*recomputed, \([0-9.e+-]*\) extra GFLOP.*/\1/p')
python3 -c "import sys; a=float('$after')*2**20; sys.exit(0 if a <= $half and a < $base else 1)" && pass ||
  fail "pipeline peak $after MiB does not fit the budget $half bytes (unbudgeted $base): $line"
python3 -c "import sys; sys.exit(0 if float('$extra') > 0 else 1)" && pass || fail "no extra FLOPs reported: $line"
run 0 "$LDMC" compile "${M[@]}" --memory-budget $((base * 2))
out_has "budget" " met"
grep -q "planned peak activation memory: $base bytes" "$T/out" && pass || fail "a budget above the peak changed it"
for bad in 0 -5 3X 1.5Q; do
  run 2 "$LDMC" compile "${M[@]}" --memory-budget "$bad"
  err_is_one_line_with "--memory-budget" "positive byte count"
done
summary remat
