#!/usr/bin/env bash
# ldmc compile on a tiny U-Net (c=32, 8x8x4 latent, 32x4 context): the kernel
# count and planned peak printed and bounded by independent accounts (the
# printed histogram, the skip connections the architecture keeps alive, the
# naive sum recomputed from the dumped input IR); dumps numbered in pass order,
# parsing back and matching their .dot; --pass-stats chaining; --verify-each;
# FILE input; usage errors. Oracles: tests/cli/ir_account.py and arithmetic here.
source "$(dirname "$0")/lib.bash" || exit 1
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
ACCOUNT="$PY $LDMC_SRC/tests/cli/ir_account.py"
C=32 H=8 W=8 B=1
TINY=(--model unet --channels $C --latent ${H}x${W}x4 --context 32x4)

# Skip connections: conv_in's output and, per level l (width c*mult, H/2^l),
# two resnet outputs plus the downsampler's output (not on the last level) are
# all produced before the mid block and read after it, so they are live
# together in any order: a lower bound for any arena (f32).
skip_floats() { # C H W
  local c=$1 h=$2 w=$3 sum=$(($1 * $2 * $3)) l mult=(1 2 4 4)
  for l in 0 1 2 3; do
    sum=$((sum + 2 * c * mult[l] * (h >> l) * (w >> l)))
    [ $l -lt 3 ] && sum=$((sum + c * mult[l] * (h >> (l + 1)) * (w >> (l + 1))))
  done
  echo "$sum"
}
LOWER=$(($(skip_floats $C $H $W) * 4 * B))

# --- the summary -------------------------------------------------------------
run 0 "$LDMC" compile "${TINY[@]}" --target llvm-cpu --dump-passes '^input$' --dump-dir plain
cp "$T/out" summary.txt
out_has "graph unet on target llvm-cpu" "kernels after fusion:" "planned peak activation memory:" "fused patterns"
kernels=$(sed -n 's/^kernels after fusion: \([0-9]*\)$/\1/p' summary.txt)
peak=$(sed -n 's/^planned peak activation memory: \([0-9]*\) bytes .*/\1/p' summary.txt)
before=$(sed -n 's/^nodes: \([0-9]*\) before, [0-9]* after.*/\1/p' summary.txt)
after=$(sed -n 's/^nodes: [0-9]* before, \([0-9]*\) after.*/\1/p' summary.txt)
check "kernel count is a positive integer ('$kernels')" test "${kernels:-0}" -gt 0
check "planned peak is a positive integer ('$peak')" test "${peak:-0}" -gt 0
by_kind=$(sed -n '/^kernels after fusion/,/^fused patterns/p' summary.txt | awk 'NF == 2 && $2 ~ /^[0-9]+$/ { s += $2 } END { print s + 0 }')
check "the per-kind counts sum to the kernel count ($by_kind vs $kernels)" test "$by_kind" = "$kernels"
by_pattern=$(sed -n '/^fused patterns/,/^planned peak/p' summary.txt | awk '$1 ~ /^[0-9]+$/ && $2 ~ /:$/ { s += $1 } END { print s + 0 }')
check "the pattern counts sum to the kernel count ($by_pattern vs $kernels)" test "$by_pattern" = "$kernels"
check "the graph input is dumped" test -f plain/000-input.txt
"$LDMC" print plain/000-input.txt > input.txt
eval "$($ACCOUNT input.txt | sed 's/^/in_/')"
check "nodes before = nodes of the input dump ($before vs ${in_nodes:-})" test "$before" = "${in_nodes:-x}"
check "planned peak $peak <= naive sum of the input graph ${in_naive_bytes:-}" test "$peak" -le "${in_naive_bytes:-0}"
check "planned peak $peak >= the skip connections' $LOWER bytes" test "$peak" -ge "$LOWER"

# ldmc stats reports the same pipeline's figures
run 0 "$LDMC" stats "${TINY[@]}" --reference $C --target llvm-cpu --format csv
row=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i } NR == 2 { print $col["kernels"], $col["planned_peak_bytes"] }' "$T/out")
check "stats agrees with compile on kernels and planned peak ($row vs $kernels $peak)" test "$row" = "$kernels $peak"

# --- dumps -------------------------------------------------------------------
run 0 "$LDMC" compile "${TINY[@]}" --target llvm-cpu --dump-passes '.*' --dump-dir dumps/all --pass-stats
cp "$T/out" stats.txt
check "the dump folder is created" test -d dumps/all
ls dumps/all > files.txt
n_txt=$(grep -c '\.txt$' files.txt)
n_dot=$(grep -c '\.dot$' files.txt)
check "one .dot per .txt ($n_txt, $n_dot)" test "$n_txt" -eq "$n_dot" -a "$n_txt" -gt 4
check "only NNN-<pass>.txt/.dot files" bash -c "! grep -Evq '^[0-9]{3}-[a-z-]+\.(txt|dot)$' files.txt"
expect=$(seq -f '%03g' 0 $((n_txt - 1)) | tr '\n' ' ')
got=$(sed -n 's/^\([0-9]*\)-.*\.txt$/\1/p' files.txt | tr '\n' ' ')
check "numbered 000..$((n_txt - 1)) without gaps ($got)" test "$got" = "$expect"
check "000 is the input" test -f dumps/all/000-input.txt
# dumped passes, in number order, appear in the same order in the --pass-stats log
sed -n 's/^[0-9]*-\(.*\)\.txt$/\1/p' files.txt | tail -n +2 > dumped.txt
awk '$1 == "pass" { print $2 }' stats.txt > ran.txt
check "dumps follow the order the passes ran" $PY -c '
import sys
dumped = open(sys.argv[1]).read().split(); ran = iter(open(sys.argv[2]).read().split())
sys.exit(not (dumped and all(d in ran for d in dumped)))' dumped.txt ran.txt
for p in fusion tiling schedule buffers; do
  check "the plan pass $p is dumped" grep -qx "$p" dumped.txt
done
last=$(ls dumps/all/*.txt | tail -1)
parsed=0
for f in dumps/all/*.txt; do
  if "$LDMC" print "$f" > p.txt 2> p.err; then parsed=$((parsed + 1)); else fail "$f does not parse: $(head -1 p.err)"; continue; fi
  dot=${f%.txt}.dot
  eval "$($ACCOUNT p.txt)"
  outs=$(grep -o '%[0-9]* "' p.txt | wc -l)
  dnodes=$(grep -Ec '^ *n[0-9]+ \[label=' "$dot")
  dedges=$(grep -Ec -- '-> (n|out)[0-9]+' "$dot")
  check "$dot: digraph with the text's $nodes nodes ($dnodes) and $edges+$outs edges ($dedges)" \
    test "$(head -1 "$dot")" = "digraph ldmc {" -a "$dnodes" = "$nodes" -a "$dedges" = "$((edges + outs))"
done
check "every .txt parses back ($parsed of $n_txt)" test "$parsed" -eq "$n_txt"
"$LDMC" print "$last" > final.txt
eval "$($ACCOUNT final.txt | sed 's/^/fin_/')"
check "the last dump is the final graph ($fin_nodes nodes vs $after)" test "$fin_nodes" = "$after"
plan_k=$(sed -n 's/^# plan: \([0-9]*\) kernels.*/\1/p' "$last")
check "the last dump's plan has the printed kernel count ($plan_k)" test "$plan_k" = "$kernels"
check "the plan's .dot has one cluster per kernel" test "$(grep -c 'subgraph cluster' "${last%.txt}.dot")" = "$kernels"
run 0 "$LDMC" convert "$last" final.ldmc
run 0 "$LDMC" print final.ldmc
check "a dump round-trips through .ldmc" cmp -s "$T/out" final.txt

# a regex picks passes; numbering restarts at 000; the environment works, the flag wins
run 0 "$LDMC" compile "${TINY[@]}" --dump-passes '^(fusion|buffers)$' --dump-dir some
check "only the matching passes, numbered in order" test "$(ls some | tr '\n' ' ')" = \
  "000-fusion.dot 000-fusion.txt 001-buffers.dot 001-buffers.txt "
LDMC_DUMP_PASSES=tiling LDMC_DUMP_DIR=envdir run 0 "$LDMC" compile "${TINY[@]}"
check "LDMC_DUMP_PASSES / LDMC_DUMP_DIR" test -f envdir/000-tiling.txt
LDMC_DUMP_PASSES=tiling LDMC_DUMP_DIR=envdir run 0 "$LDMC" compile "${TINY[@]}" --dump-passes schedule --dump-dir flagdir
check "the flags win over the environment" test -f flagdir/000-schedule.txt -a ! -e flagdir/000-tiling.txt

# --- --pass-stats ------------------------------------------------------------
check "--pass-stats logs the totals" grep -q '^pipeline llvm-cpu totals:' stats.txt
check "no pass lines without --pass-stats" bash -c "! grep -q '^pass ' summary.txt"
check "each pass starts from the node count the previous one left" $PY -c '
import re, sys
runs = [tuple(map(int, m.groups())) for m in re.finditer(r"^pass \S+ .*nodes +(\d+) -> +(\d+)", open(sys.argv[1]).read(), re.M)]
ok = len(runs) > 10 and runs[0][0] == int(sys.argv[2]) and runs[-1][1] == int(sys.argv[3])
ok = ok and all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
sys.exit(not ok)' stats.txt "$before" "$after"
for p in simplify cse dce fusion schedule buffers; do
  check "totals list $p" grep -Eq "^  $p +runs +[0-9]+ changed +[0-9]+ +[0-9.]+ ms" stats.txt
done

# --- --verify-each, FILE input, other targets -----------------------------------
run 0 "$LDMC" compile "${TINY[@]}" --verify-each
check "--verify-each changes nothing" cmp -s <(grep -v '^build ' "$T/out") <(grep -v '^build ' summary.txt)
run 0 "$LDMC" compile plain/000-input.txt --activation-params 3 --verify-each
check "the dumped input compiled as a FILE gives the same kernels and peak" \
  grep -q "^planned peak activation memory: $peak bytes" "$T/out"
out_has "kernels after fusion: $kernels"
for t in interp llvm-cpu nvptx tpusim; do
  run 0 "$LDMC" compile "${TINY[@]}" --target $t
  k=$(sed -n 's/^kernels after fusion: \([0-9]*\)$/\1/p' "$T/out")
  p=$(sed -n 's/^planned peak activation memory: \([0-9]*\) bytes .*/\1/p' "$T/out")
  check "$t: kernels $k > 0, $LOWER <= peak $p <= $in_naive_bytes" \
    test "${k:-0}" -gt 0 -a "${p:-0}" -ge "$LOWER" -a "${p:-0}" -le "$in_naive_bytes"
done

# --- usage errors: exit 2, one line, nothing on stdout, no dump folder ------------
usage() { # usage EXPECTED-TEXT ARGS...
  local want=$1
  shift
  run 2 "$LDMC" compile "$@"
  err_is_one_line_with "ldmc compile: " "$want"
  check "no stdout for: $*" test ! -s "$T/out"
}
usage "unknown target 'bogus'" "${TINY[@]}" --target bogus
usage "cpu" "${TINY[@]}" --target bogus
usage "unknown flag '--bogus'" "${TINY[@]}" --bogus
usage "unknown flag '--dump'" "${TINY[@]}" --dump x
usage "'--dump-passes' needs a value" "${TINY[@]}" --dump-passes
usage "--dump-passes '('" "${TINY[@]}" --dump-passes '(' --dump-dir never
LDMC_DUMP_PASSES='a[' run 2 "$LDMC" compile "${TINY[@]}"
err_is_one_line_with "ldmc compile: " "LDMC_DUMP_PASSES 'a['"
usage "--dump-dir needs --dump-passes" "${TINY[@]}" --dump-dir never
usage "latent 12x8" --model unet --channels 32 --latent 12x8 --dump-passes . --dump-dir never
check "usage errors leave no dump folder" test ! -e never
usage "unknown model 'vae'" --model vae
usage "either --model NAME or one graph FILE"
usage "either --model NAME or one graph FILE" "${TINY[@]}" plain/000-input.txt
usage "'--channels' needs --model" plain/000-input.txt --channels 32
usage "'--batch' needs --model" plain/000-input.txt --batch 2
usage "one width" --model unet --channels 32,64
usage "'--batch'" "${TINY[@]}" --batch 0
usage "'--pass-stats' takes no value" "${TINY[@]}" --pass-stats=1
run 1 "$LDMC" compile no-such-file.txt
err_is_one_line_with "ldmc compile: " "no-such-file.txt"

# --help lists every flag the command accepts
run 0 "$LDMC" compile --help
for f in model channels latent context batch target dump-passes dump-dir pass-stats verify-each kernels out activation-params; do
  check "compile --help lists --$f" grep -Eq "^  --$f( |$)" "$T/out"
done
out_has "interp, llvm-cpu, nvptx, tpusim"

# --- images folded into a convolution's GEMM columns (passes/tiling.c) ---------
# 5 images of 4x4 outputs fill half of a 32-wide column panel each: the plan
# folds them (fold=images); one image of 16x16 outputs (a whole number of
# panels) stays one GEMM per image.
conv_txt() { # N H
  cat <<EOT
graph fold {
  %0 = f32[$1,6,$2,$2] parameter() name="x"
  %1 = f32[7,6,3,3] parameter() name="w"
  %2 = f32[$1,7,$2,$2] convolution(%0, %1) window_stride={1,1} pad_low={1,1} pad_high={1,1} lhs_dilation={1,1} rhs_dilation={1,1} input_dims={0,1,2,3} kernel_dims={0,1,2,3} output_dims={0,1,2,3} groups=1
  return %2 "y"
}
EOT
}
# avx2 (nr = 16): 9 positions per image is below nr and no multiple of it; 256 is
conv_txt 5 3 >fold.txt
conv_txt 1 16 >nofold.txt
run 0 "$LDMC" compile fold.txt --target llvm-cpu:avx2 --kernels
check "5 images of 3x3 fold into the columns" grep -q "convolution.*fold=images" "$T/out"
run 0 "$LDMC" compile nofold.txt --target llvm-cpu:avx2 --kernels
check "one image of 16x16 does not fold" bash -c "! grep -q 'fold=images' '$T/out'"

summary cli_compile
