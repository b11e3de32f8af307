#!/usr/bin/env bash
# Issue 5 driver features: `ldmc compile --emit obj|asm|llvm -o FILE` (object,
# header declaring the entry point, no file after an error) and `ldmc run
# --backend llvm-cpu --threads N --repeat N` (timing line; outputs equal to the
# interpreter's run and to hand-computed values).
source "$(dirname "$0")/lib.bash" || exit 1
G="$LDMC_SRC/tests/cli/axpy.txt"

# --emit obj: the object plus, by default, FILE.h declaring the entry point
run 0 "$LDMC" compile "$G" --emit obj -o axpy.o
out_has "emitted axpy.o and header axpy.h"
check "axpy.o is a non-empty file" test -s axpy.o
check "axpy.h is a non-empty file" test -s axpy.h
check "axpy.o is an ELF object" bash -c 'head -c 4 axpy.o | grep -q ELF'
check "axpy.h declares the entry point" grep -qE 'void axpy\(const void \*const \*inputs, void \*const \*outputs, void \*workspace\);' axpy.h
check "axpy.h gives the workspace size" grep -q 'axpy_WORKSPACE_BYTES' axpy.h
if command -v nm >/dev/null; then
  check "axpy.o defines the symbol axpy" bash -c 'nm axpy.o | grep -qE " T axpy$"'
fi
# --header and --entry, assembly
run 0 "$LDMC" compile "$G" --emit asm -o k.s --header decl.h --entry my_step
check "k.s is non-empty" test -s k.s
check "decl.h declares my_step" grep -q 'void my_step(' decl.h
check "the assembly defines my_step" grep -q '^my_step:' k.s
# a tiny U-Net (c=32, 8x8x4 latent, context 32x4) as LLVM IR: no header unless asked
run 0 "$LDMC" compile --model unet --channels 32 --latent 8x8x4 --context 32x4 --emit llvm -o unet.ll
check "unet.ll is non-empty" test -s unet.ll
check "unet.ll defines the entry point unet" grep -q '^define .*@unet(' unet.ll
check "no header for --emit llvm without --header" test ! -e unet.h

# usage errors: one line, exit 2, no file
run 2 "$LDMC" compile "$G" --emit bogus -o bogus.o
err_is_one_line_with "ldmc compile:" "bogus" "obj"
run 2 "$LDMC" compile "$G" --emit obj
err_is_one_line_with "ldmc compile:" "-o FILE"
run 2 "$LDMC" compile "$G" --header h.h -o x.o
err_is_one_line_with "ldmc compile:" "--emit"
# a failure (folder missing): exit 1, one line
run 1 "$LDMC" compile "$G" --emit obj -o no/such/dir/a.o
err_is_one_line_with "ldmc compile:" "no/such/dir/a.o"
check "no stray files after the errors" test -z "$(ls | grep -vE '^(axpy\.o|axpy\.h|k\.s|decl\.h|unet\.ll|out|err)$')"

# run --repeat on llvm-cpu; x = [[1,2,3],[4,5,6]], y = [[0.5,-1,2],[3,0,-2]]
$ST write in.safetensors x F32 2,3 1,2,3,4,5,6 y F32 2,3 0.5,-1,2,3,0,-2
run 0 "$LDMC" run "$G" --inputs in.safetensors --out interp.safetensors
run 0 "$LDMC" run "$G" --inputs in.safetensors --out llvm.safetensors --backend llvm-cpu --threads 2 --repeat 3
check "exactly one run_ms line" test "$(grep -c '^run_ms ' out)" -eq 1
check "a compile_ms line" grep -qE '^compile_ms=[0-9]+(\.[0-9]+)?$' out
line=$(grep '^run_ms ' out)
if [[ $line =~ ^run_ms\ median=([0-9]+(\.[0-9]+)?)\ min=([0-9]+(\.[0-9]+)?)$ ]]; then
  check "min <= median ($line)" python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) <= float(sys.argv[1]) else 1)" \
    "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}"
else
  fail "run_ms line malformed: '$line'"
fi
# llvm-cpu outputs equal the interpreter's and the hand-computed values
same_as() { # FILE_A FILE_B NAME [EXPECTED]
  local a b
  a=$($ST read "$1" "$3" | paste -sd, -)
  b=$($ST read "$2" "$3" | paste -sd, -)
  python3 -c "
import sys
a, b = [[float(v) for v in s.split(',')] for s in sys.argv[1:3]]
e = [float(v) for v in sys.argv[3].split(',')] if sys.argv[3] else b
ok = len(a) == len(b) == len(e) and all(abs(x - y) <= 1e-5 * max(1, abs(y)) and abs(x - z) <= 1e-5 * max(1, abs(z)) for x, y, z in zip(a, b, e))
sys.exit(0 if ok else 1)" "$a" "$b" "${4:-}" && pass || fail "$3: llvm-cpu [$a] vs interp [$b] ${4:+expected [$4]}"
}
same_as llvm.safetensors interp.safetensors z 2.5,3,8,11,10,10
same_as llvm.safetensors interp.safetensors s 13.5,31
same_as llvm.safetensors interp.safetensors g 12.5,-1,-6,16,-2,-6,19.5,-3,-6
# --repeat 1 and one thread give the same outputs
run 0 "$LDMC" run "$G" --inputs in.safetensors --out llvm1.safetensors --backend llvm-cpu --threads 1 --repeat 1
out_has "run_ms median=" "compile_ms="
same_as llvm1.safetensors interp.safetensors z 2.5,3,8,11,10,10
# without --repeat there is no timing line
run 0 "$LDMC" run "$G" --inputs in.safetensors --out plain.safetensors --backend llvm-cpu
check "no run_ms line without --repeat" bash -c '! grep -q "^run_ms" "$0"' "$T/out"
run 2 "$LDMC" run "$G" --inputs in.safetensors --out r0.safetensors --repeat 0
err_is_one_line_with "ldmc run:" "--repeat"
check "no output after a bad --repeat" test ! -e r0.safetensors

summary cli_emit_repeat
