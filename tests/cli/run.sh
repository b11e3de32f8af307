#!/usr/bin/env bash
# ldmc run on a small hand-written graph (axpy.txt): inputs written and outputs
# read by an independent safetensors implementation (st.py), results checked
# against hand-computed values; parameters from .ldmc module tensors; errors
# never leave an output file.
source "$(dirname "$0")/lib.bash" || exit 1
G="$LDMC_SRC/tests/cli/axpy.txt"

# values_are FILE NAME V1,V2,...: the tensor's values equal the list (within 1e-6)
values_are() {
  local got
  got=$($ST read "$1" "$2" | paste -sd, -)
  if python3 -c "import sys; a=[float(v) for v in sys.argv[1].split(',')]; b=[float(v) for v in sys.argv[2].split(',')]; sys.exit(0 if len(a)==len(b) and all(abs(x-y)<=1e-6*max(1,abs(y)) for x,y in zip(a,b)) else 1)" "$got" "$3"; then
    pass
  else
    fail "$1 $2 = [$got], expected [$3]"
  fi
}

# x = [[1,2,3],[4,5,6]], y = [[0.5,-1,2],[3,0,-2]]
$ST write in.safetensors x F32 2,3 1,2,3,4,5,6 y F32 2,3 0.5,-1,2,3,0,-2
run 0 "$LDMC" run "$G" --inputs in.safetensors --out out.safetensors
out_has "ran graph 'axpy'" "on interp" "wrote out.safetensors" "z f32[2,3]"
values_are out.safetensors z 2.5,3,8,11,10,10          # 2x + y
values_are out.safetensors s 13.5,31                   # row sums of z
values_are out.safetensors g 12.5,-1,-6,16,-2,-6,19.5,-3,-6  # x^T y
check "the outputs are exactly z, s, g" test "$($ST header out.safetensors | python3 -c 'import json,sys; print(",".join(sorted(json.load(sys.stdin))))')" = "g,s,z"
run 0 "$LDMC" run "$G" --inputs=in.safetensors --out=out_eq.safetensors --backend=interp
check "--flag=value spelling gives the same file" cmp -s out.safetensors out_eq.safetensors

# the same graph from a .ldmc module gives the same bytes
run 0 "$LDMC" convert "$G" axpy.ldmc
run 0 "$LDMC" run axpy.ldmc --inputs in.safetensors --out out2.safetensors
check "text and .ldmc graphs give identical outputs" cmp -s out.safetensors out2.safetensors

# parameters from the module's tensors: y stored in the module, x given
$ST write y.safetensors y F32 2,3 0.5,-1,2,3,0,-2
$ST write x.safetensors x F32 2,3 1,2,3,4,5,6
run 0 "$LDMC" convert "$G" axpy_w.ldmc --weights y.safetensors
run 0 "$LDMC" run axpy_w.ldmc --inputs x.safetensors --out out3.safetensors
values_are out3.safetensors z 2.5,3,8,11,10,10
# an input of the same name replaces the module's tensor: y = 0
$ST write xy0.safetensors x F32 2,3 1,2,3,4,5,6 y F32 2,3 0,0,0,0,0,0
run 0 "$LDMC" run axpy_w.ldmc --inputs xy0.safetensors --out out4.safetensors
values_are out4.safetensors z 2,4,6,8,10,12
# no --inputs at all when the module holds everything
$ST write xy.safetensors x F32 2,3 1,1,1,1,1,1 y F32 2,3 1,2,3,4,5,6
run 0 "$LDMC" convert "$G" axpy_all.ldmc --weights xy.safetensors
run 0 "$LDMC" run axpy_all.ldmc --out out5.safetensors
values_are out5.safetensors s 12,21

# errors: one line naming what is wrong, exit 1, no output file
$ST write xonly.safetensors x F32 2,3 1,2,3,4,5,6
run 1 "$LDMC" run "$G" --inputs xonly.safetensors --out bad1.safetensors
err_is_one_line_with "ldmc run:" "'y'" "f32[2,3]"
check "no output after a missing input" test ! -e bad1.safetensors
run 1 "$LDMC" run "$G" --inputs xonly.safetensors --save-graph bad_g.ldmc --save-inputs bad_i.safetensors --out bad1.safetensors
check "no --save-graph or --save-inputs file after a failed run" test ! -e bad_g.ldmc -a ! -e bad_i.safetensors
$ST write extra.safetensors x F32 2,3 1,2,3,4,5,6 y F32 2,3 1,2,3,4,5,6 w F32 1 1
run 1 "$LDMC" run "$G" --inputs extra.safetensors --out bad2.safetensors
err_is_one_line_with "extra.safetensors" "'w'"
check "no output after an extra input" test ! -e bad2.safetensors
$ST write shape.safetensors x F32 3,2 1,2,3,4,5,6 y F32 2,3 1,2,3,4,5,6
run 1 "$LDMC" run "$G" --inputs shape.safetensors --out bad3.safetensors
err_is_one_line_with "shape.safetensors" "'x'" "[2,3]" "[3,2]"
check "no output after a mis-shaped input" test ! -e bad3.safetensors
$ST write dtype.safetensors x F16 2,3 1,2,3,4,5,6 y F32 2,3 1,2,3,4,5,6
run 1 "$LDMC" run "$G" --inputs dtype.safetensors --out bad4.safetensors
err_is_one_line_with "dtype.safetensors" "'x'" "f16"
check "no output after a mis-typed input" test ! -e bad4.safetensors
$ST write y32.safetensors y F32 3,2 1,2,3,4,5,6
run 0 "$LDMC" convert "$G" bad_w.ldmc --weights y32.safetensors
run 1 "$LDMC" run bad_w.ldmc --inputs x.safetensors --out bad8.safetensors
err_is_one_line_with "bad_w.ldmc" "'y'" "[2,3]" "[3,2]"
rm -f bad_w.ldmc
# a failed run leaves an existing output file as it was
cp out.safetensors keep.safetensors
run 1 "$LDMC" run "$G" --inputs xonly.safetensors --out keep.safetensors
check "a failed run keeps the old output" cmp -s out.safetensors keep.safetensors
run 1 "$LDMC" run "$G" --inputs in.safetensors --out no/such/dir/out.safetensors
err_is_one_line_with "no/such/dir/out.safetensors"
run 1 "$LDMC" run "$G" --inputs missing.safetensors --out bad5.safetensors
err_is_one_line_with "missing.safetensors"
run 1 "$LDMC" run "$G" --inputs "$G" --out bad6.safetensors
err_is_one_line_with "axpy.txt" "safetensors"
run 1 "$LDMC" run y.safetensors --out bad7.safetensors
err_is_one_line_with "y.safetensors" "no graph"
check "no stray files after the failures" test -z "$(ls | grep -E '^bad|tmp')"

# --random-inputs: seeded, reproducible through --save-inputs
run 0 "$LDMC" run "$G" --random-inputs --seed 7 --save-inputs r_in.safetensors --out r1.safetensors
run 0 "$LDMC" run "$G" --inputs r_in.safetensors --out r2.safetensors
check "a saved random input replays to the same output" cmp -s r1.safetensors r2.safetensors
run 0 "$LDMC" run "$G" --random-inputs --seed 7 --out r3.safetensors
check "the same seed gives the same output" cmp -s r1.safetensors r3.safetensors
run 0 "$LDMC" run "$G" --random-inputs --seed 8 --out r4.safetensors
check "another seed gives another output" bash -c '! cmp -s r1.safetensors r4.safetensors'
# z = 2x + y recomputed from the saved random inputs
python3 - r_in.safetensors r1.safetensors <<'PY' && pass || fail "random run: z != 2x + y"
import struct, json, sys
def load(p):
    d = open(p, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); b = d[8 + n:]
    return {k: struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4), b[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items() if k != "__metadata__"}
i, o = load(sys.argv[1]), load(sys.argv[2])
sys.exit(0 if all(abs(2 * a + b - c) <= 1e-5 * (1 + abs(c)) for a, b, c in zip(i["x"], i["y"], o["z"])) and len(o["z"]) == 6 else 1)
PY

summary cli_run
