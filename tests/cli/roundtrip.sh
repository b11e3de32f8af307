#!/usr/bin/env bash
# ldmc print / convert / inspect: text IR -> .ldmc -> text is exact, print is
# canonical (idempotent), safetensors -> .ldmc -> safetensors keeps every
# value, and inspect reports the names, dtypes, shapes and counts that the
# hand-written inputs have.
source "$(dirname "$0")/lib.bash" || exit 1
G="$LDMC_SRC/tests/cli/axpy.txt"

run 0 "$LDMC" print "$G"
cp "$T/out" canon.txt
check "print keeps the graph's header" grep -q '^graph axpy {$' canon.txt
check "print writes every node" test "$(grep -c '^  %' canon.txt)" -eq 8
check "print writes the outputs" grep -q '^  return %5 "z", %6 "s", %7 "g"$' canon.txt
run 0 "$LDMC" print canon.txt
check "print is idempotent on its own output" cmp -s "$T/out" canon.txt
run 0 "$LDMC" print "$G" --out printed.txt
check "print --out writes what stdout shows" cmp -s printed.txt canon.txt

run 0 "$LDMC" convert "$G" g.ldmc
check ".ldmc starts with its magic" test "$(head -c 4 g.ldmc)" = LDMC
run 0 "$LDMC" print g.ldmc
check "text -> .ldmc -> print is exact" cmp -s "$T/out" canon.txt
run 0 "$LDMC" convert g.ldmc back.ldmcir
check "text -> .ldmc -> text is exact" cmp -s back.ldmcir canon.txt
run 0 "$LDMC" convert back.ldmcir g2.ldmc
check "text -> .ldmc is deterministic" cmp -s g.ldmc g2.ldmc
run 0 "$LDMC" convert g.ldmc anything.bin --to text
check "--to text overrides the extension" cmp -s anything.bin canon.txt
# kinds come from content, not names
cp g.ldmc disguised.txt
run 0 "$LDMC" print disguised.txt
check "a .ldmc named .txt is still read as a module" cmp -s "$T/out" canon.txt

# inspect of the graph: hand counts (8 nodes, 2 parameters of 6 elements, 3 outputs),
# FLOPs: dot_general 3x3 outputs x 2 contracted x 2 = 36; mul 6 + add 6 + reduce 6 = 18
run 0 "$LDMC" inspect g.ldmc
out_has "g.ldmc: ldmc module" "tensors: 0" "graph 'axpy': 8 nodes, 2 parameters (12 elements), 3 outputs" \
  "FLOPs: 54 FLOP (convolution/dot 36 FLOP, other 18 FLOP)" "parameter 2," "dot_general 1" \
  "    x  f32[2,3]" "    g  f32[3,3]  (%7 dot_general)"
run 0 "$LDMC" inspect --brief g.ldmc
check "--brief drops the parameter list" bash -c "! grep -q '^  parameters:' '$T/out'"
out_has "graph 'axpy': 8 nodes"

# safetensors: every dtype of the spec, a scalar and an empty tensor
$ST write w.safetensors a.f32 F32 2,2 1.5,-2,3.25,1e-3 b.i64 I64 3 -5,0,7 c.f16 F16 "" 0.5 \
  d.f64 F64 2 1e300,-1 e.bool BOOL 2 1,0 f.i32 I32 0 "" g.u8 U8 3 1,2,255
run 0 "$LDMC" inspect w.safetensors
out_has "w.safetensors: safetensors" "tensors: 7 (15 elements, 63 B)"
tr -s ' ' <"$T/out" >listing.txt # columns are padded; compare words
for line in "a.f32 f32 [2,2]" "b.i64 i64 [3]" "c.f16 f16 []" "d.f64 f64 [2]" "e.bool pred [2]" "f.i32 i32 [0]" \
  "g.u8 U8 [3]"; do
  check "inspect lists '$line'" grep -qxF -- " $line" listing.txt
done
check "a safetensors file has no graph summary" bash -c "! grep -q '^graph' '$T/out'"
run 0 "$LDMC" convert w.safetensors w.ldmc
run 0 "$LDMC" inspect w.ldmc
out_has "w.ldmc: ldmc module" "tensors: 7" "graph: none"
run 0 "$LDMC" convert w.ldmc w2.safetensors
for name in a.f32 b.i64 c.f16 d.f64 e.bool f.i32 g.u8; do
  check "safetensors -> .ldmc -> safetensors keeps $name" \
    test "$($ST read w.safetensors $name | paste -sd,)" = "$($ST read w2.safetensors $name | paste -sd,)"
done
check "the values survive as written" test "$($ST read w2.safetensors a.f32 | paste -sd,)" = "1.5,-2,3.25,0.00100000005"
run 1 "$LDMC" print w.ldmc
err_is_one_line_with "w.ldmc" "no graph"
run 1 "$LDMC" convert w.safetensors w.txt
err_is_one_line_with "w.safetensors" "no graph"
check "no text file after the failure" test ! -e w.txt

# a module with graph and weights splits back into both
run 0 "$LDMC" convert "$G" gw.ldmc --weights w.safetensors
run 0 "$LDMC" inspect --brief gw.ldmc
out_has "tensors: 7" "graph 'axpy'"
run 0 "$LDMC" convert gw.ldmc gw.safetensors
check "convert notes the graph it drops" grep -q "graph of gw.ldmc is not written" "$T/err"
check "weights come back out unchanged" test "$($ST header gw.safetensors)" = "$($ST header w2.safetensors)"
run 1 "$LDMC" convert gw.ldmc gw3.ldmc --weights w.safetensors
err_is_one_line_with "w.safetensors" "already"
check "no module after a clash" test ! -e gw3.ldmc

summary cli_roundtrip
