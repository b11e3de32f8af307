#!/usr/bin/env bash
# ldmc inspect on a training checkpoint (runtime/checkpoint.h), written by
# `test_checkpoint --write`: step, RNG and data state, config in order, and
# each tensor's role, dtype, shape, bytes and CRC-32, the CRC checked against
# python3's zlib.crc32 of the values the test program stores; --brief; a
# damaged checkpoint is one error line naming the file, exit 1.
source "$(dirname "$0")/lib.bash" || exit 1
WRITER="$LDMC_BIN/test_checkpoint"
[ -x "$WRITER" ] || { echo "inspect_checkpoint: $WRITER is not built" >&2; exit 1; }

run 0 "$WRITER" --write ck.ldmc
run 0 "$LDMC" inspect ck.ldmc
out_has "ck.ldmc: ldmc checkpoint" "step: 1234" "rng: seed 42, counter 1099511627776" "data state: 7 3 1536" \
  "config: 4 entries" "  model = unet" "  lr schedule = cosine, warmup=100" \
  "tensors: 8 (242 B): param 2 (58 B), optimizer 2 (96 B), ema 1 (48 B), other 3 (40 B)"
check "config keeps its order" test "$(grep -E '^  [a-z ]+ = ' "$T/out" | cut -d= -f1 | tr -d ' ' | tr '\n' ,)" = "model,channels,lrschedule,note,"
check "w: param f32 [3,4], 48 bytes" grep -qE '^  w +param +f32 +\[3,4\] +48 B  crc32 ' "$T/out"
check "b: param bf16 [5], 10 bytes" grep -qE '^  b +param +bf16 +\[5\] +10 B ' "$T/out"
check "idx: other i64 [2,2], 32 bytes" grep -qE '^  idx +other +i64 +\[2,2\] +32 B ' "$T/out"
check "scalar: rank 0" grep -qE '^  scalar +other +f64 +\[\] +8 B ' "$T/out"
check "ema.w: ema" grep -qE '^  ema\.w +ema +f32 ' "$T/out"
check "adam_m.w: optimizer" grep -qE '^  adam_m\.w +optimizer +f32 ' "$T/out"

# the CRC-32s inspect prints are zlib's of the stored bytes (values from tests/test_checkpoint.c)
want=$(python3 - <<'EOF'
import struct, zlib
w = [0x7fc00001, 0xffbadbad, 0x7f800001, 0x80000000, 1, 0x7f800000, 0xff800000, 0x3f800000,
     0xbf000000, 0x007fffff, 0x7fffffff, 0x12345678]
b = [0x7fc1, 0xff81, 0x8000, 0x0001, 0x3f80]
idx = [-2**63, 2**63 - 1, -1, 1234567890123]
print("w %08x" % zlib.crc32(struct.pack("<12I", *w)))
print("b %08x" % zlib.crc32(struct.pack("<5H", *b)))
print("idx %08x" % zlib.crc32(struct.pack("<4q", *idx)))
print("scalar %08x" % zlib.crc32(struct.pack("<d", -0.0)))
EOF
)
while read -r name crc; do
  check "$name: CRC-32 $crc" grep -qE "^  $name .* crc32 $crc\$" "$T/out"
done <<<"$want"

run 0 "$LDMC" inspect --brief ck.ldmc
out_has "step: 1234" "config: 4 entries" "tensors: 8 (242 B)"
check "--brief: no tensor or config lines" test "$(grep -c '^  ' "$T/out")" -eq 0

# damaged: one error line naming the file, exit 1
size=$(stat -c %s ck.ldmc)
head -c $((size - 1)) ck.ldmc >cut.ldmc
run 1 "$LDMC" inspect cut.ldmc
err_is_one_line_with "ldmc inspect: " "cut.ldmc" "truncated"
cp ck.ldmc flip.ldmc
printf '\x55' | dd of=flip.ldmc bs=1 seek=30 conv=notrunc status=none
run 1 "$LDMC" inspect flip.ldmc
err_is_one_line_with "ldmc inspect: " "flip.ldmc: " "tensor 'w'"

# a checkpoint is still an .ldmc module: its tensors convert to safetensors
run 0 "$LDMC" convert ck.ldmc ck.safetensors
run 0 "$LDMC" inspect ck.safetensors
out_has "tensors: 8" "adam_v.w"
summary inspect_checkpoint
