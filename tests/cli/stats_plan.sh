#!/usr/bin/env bash
# ldmc stats' memory and kernel columns: the activation sum and the unfused
# peak recomputed from the graph's text IR by tests/cli/ir_account.py; kernel
# counts positive integers; the planned peak between the skip connections the
# architecture keeps alive and the naive sum; the same figures as
# `ldmc compile`; CSV, JSON and table agree; --target and its errors.
source "$(dirname "$0")/lib.bash" || exit 1
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
ACCOUNT="$PY $LDMC_SRC/tests/cli/ir_account.py"

skip_floats() { # C H W: see compile.sh; live together at the mid block
  local c=$1 h=$2 w=$3 sum=$(($1 * $2 * $3)) l mult=(1 2 4 4)
  for l in 0 1 2 3; do
    sum=$((sum + 2 * c * mult[l] * (h >> l) * (w >> l)))
    [ $l -lt 3 ] && sum=$((sum + c * mult[l] * (h >> (l + 1)) * (w >> (l + 1))))
  done
  echo "$sum"
}

# --- columns ---------------------------------------------------------------
run 0 "$LDMC" stats --model unet --channels 32,64 --latent 16x16x4 --context 64x8 --batch 2 --format csv
cp "$T/out" s.csv
check "the first columns are fixed" grep -q '^channels,params,gflops_per_step,normalized_cost,' s.csv
for col in other_gflops activation_sum_mib unfused_peak_mib param_tensors kernels prepack_kernels planned_peak_bytes; do
  check "CSV has column $col" grep -q "^channels,.*\b$col\b" <(head -1 s.csv)
done
check "two rows" test "$(wc -l <s.csv)" -eq 3
check "kernel counts are positive integers, prepack kernels among them" awk -F, '
  NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
  { k = $c["kernels"]; p = $c["prepack_kernels"]; b = $c["planned_peak_bytes"]
    if (k !~ /^[1-9][0-9]*$/ || p !~ /^[0-9]+$/ || p + 0 > k + 0 || b !~ /^[1-9][0-9]*$/) bad = 1 }
  END { exit bad }' s.csv

run 0 "$LDMC" stats --model unet --channels 32,64 --latent 16x16x4 --context 64x8 --batch 2 --format json
cp "$T/out" s.json
check "JSON: target llvm-cpu, and the CSV's figures" $PY - s.json s.csv <<'PY'
import csv, json, sys
d = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
assert d["target"] == "llvm-cpu", d["target"]
for j, r in zip(d["widths"], rows):
    assert j["channels"] == int(r["channels"])
    for k in ("kernels", "prepack_kernels", "planned_peak_bytes"):
        assert j[k] == int(r[k]), (k, j[k], r[k])
    assert abs(j["activation_sum_bytes"] / 2**20 - float(r["activation_sum_mib"])) <= 0.0005
    assert abs(j["unfused_peak_bytes"] / 2**20 - float(r["unfused_peak_mib"])) <= 0.0005
PY

# per width: the IR account and the bounds, and ldmc compile's figures
for c in 32 64; do
  read -r sum unfused kernels planned < <($PY -c '
import json, sys
w = [x for x in json.load(open(sys.argv[1]))["widths"] if x["channels"] == int(sys.argv[2])][0]
print(w["activation_sum_bytes"], w["unfused_peak_bytes"], w["kernels"], w["planned_peak_bytes"])' s.json $c)
  run 0 "$LDMC" compile --model unet --channels $c --latent 16x16x4 --context 64x8 --batch 2 --dump-passes '^input$' --dump-dir d$c
  cp "$T/out" compile$c.txt
  "$LDMC" print d$c/000-input.txt > in$c.txt
  eval "$($ACCOUNT in$c.txt)"
  check "c=$c: activation sum $sum = the IR's naive sum $naive_bytes" test "$sum" = "$naive_bytes"
  check "c=$c: unfused peak $unfused = the IR's graph-order peak $unfused_peak" test "$unfused" = "$unfused_peak"
  check "c=$c: planned peak $planned <= activation sum $sum" test "$planned" -le "$sum"
  lower=$(($(skip_floats $c 16 16) * 4 * 2))
  check "c=$c: planned peak $planned >= skip connections $lower" test "$planned" -ge "$lower"
  check "c=$c: ldmc compile prints the same kernel count" grep -qx "kernels after fusion: $kernels" compile$c.txt
  check "c=$c: ldmc compile prints the same planned peak" grep -q "^planned peak activation memory: $planned bytes" compile$c.txt
done

# --- another target, the table ------------------------------------------------
run 0 "$LDMC" stats --channels 32 --latent 16x16x4 --context 64x8 --target tpusim --format csv
tp=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i } NR == 2 { print $c["kernels"], $c["planned_peak_bytes"], $c["prepack_kernels"] }' "$T/out")
run 0 "$LDMC" compile --model unet --channels 32 --latent 16x16x4 --context 64x8 --target tpusim
k=$(sed -n 's/^kernels after fusion: \([0-9]*\)$/\1/p' "$T/out")
p=$(sed -n 's/^planned peak activation memory: \([0-9]*\) bytes .*/\1/p' "$T/out")
check "--target tpusim: the figures of ldmc compile --target tpusim ($tp vs $k $p)" test "$tp" = "$k $p 0"
run 0 "$LDMC" stats --channels 32,64 --latent 16x16x4 --context 64x8 --format json --target interp
check "JSON names the target" grep -q '"target": "interp"' "$T/out"

run 0 "$LDMC" stats --channels 32 --latent 16x16x4 --context 64x8
out_has "target llvm-cpu" "act sum MiB" "unfused peak MiB" "kernels" "planned peak MiB" "norm cost"
check "the table's kernel column matches" awk -v k="$(sed -n 's/^kernels after fusion: \([0-9]*\)$/\1/p' compile32.txt)" '
  $1 == "32" && $7 == k { found = 1 } END { exit !found }' "$T/out"

mkdir quiet && (cd quiet && LDMC_DUMP_PASSES=fusion "$LDMC" stats --channels 32 --latent 16x16x4 --context 64x8 >/dev/null)
check "stats writes no dumps, even with LDMC_DUMP_PASSES set" test -z "$(ls quiet)"

# --- errors and help --------------------------------------------------------------
run 2 "$LDMC" stats --channels 32 --target bogus
err_is_one_line_with "ldmc stats: " "unknown target 'bogus'" "llvm-cpu"
check "no stdout on a usage error" test ! -s "$T/out"
run 2 "$LDMC" stats --channels 32 --target
err_is_one_line_with "'--target' needs a value"
run 0 "$LDMC" stats --help
check "help lists --target" grep -Eq '^  --target NAME ' "$T/out"
out_has "interp, llvm-cpu, nvptx, tpusim"
for col in params gflops_per_step other_gflops activation_sum_mib unfused_peak_mib kernels prepack_kernels \
  planned_peak_bytes normalized_cost param_tensors; do
  out_has "$col"
done

summary cli_stats_plan
