#!/usr/bin/env bash
# `ldmc run --backend llvm-cpu --bf16`: dot_general and convolution operands in
# bf16 with f32 accumulation (vdpbf16ps where the CPU has avx512_bf16). Oracle:
# the interpreter's f32 run of the same tiny U-Net; bf16 operands carry 8
# significant bits, so the bf16 run must be close (2^-8-scale relative error
# through the network) but, on avx512_bf16 hosts, not bit-equal to f32.
source "$(dirname "$0")/lib.bash" || exit 1
M=(--model unet --channels 32 --latent 8x8x4 --context 32x4 --init random --random-inputs --seed 3)
run 0 "$LDMC" run "${M[@]}" --out interp.safetensors
run 0 "$LDMC" run "${M[@]}" --backend llvm-cpu --threads 2 --out f32.safetensors
run 0 "$LDMC" run "${M[@]}" --backend llvm-cpu --threads 2 --bf16 --out bf16.safetensors
$ST read interp.safetensors out_sample >ref.txt
$ST read f32.safetensors out_sample >f32.txt
$ST read bf16.safetensors out_sample >bf16.txt
relerr() { # A B: max |a - b| / max |b|
  python3 -c '
import sys
a = [float(x) for x in open(sys.argv[1])]; b = [float(x) for x in open(sys.argv[2])]
assert len(a) == len(b) and a, "lengths"
print(max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b))' "$1" "$2"
}
e32=$(relerr f32.txt ref.txt)
e16=$(relerr bf16.txt ref.txt)
check "f32 llvm-cpu matches the interpreter ($e32)" python3 -c "import sys; sys.exit(0 if $e32 < 1e-5 else 1)"
check "bf16 llvm-cpu is close to the interpreter ($e16)" python3 -c "import sys; sys.exit(0 if $e16 < 3e-2 else 1)"
if grep -qw avx512_bf16 /proc/cpuinfo; then
  check "bf16 operands change the result on an avx512_bf16 host ($e16)" python3 -c "import sys; sys.exit(0 if $e16 > 1e-6 else 1)"
fi
run 0 "$LDMC" run --help
out_has "--bf16"
summary cli_run_bf16
