#!/usr/bin/env bash
# Rough edges a new user hit: output extensions every command refuses before
# writing anything, the same path given to two outputs, the .ldmc writer
# refusing what its reader refuses, integer timesteps with --random-inputs,
# FIFOs and other non-regular inputs (no hang), --weights as .ldmc, temp files
# removed on SIGINT/SIGTERM, one message for the --channels rule, one --batch
# limit, the memory estimate, -o everywhere, `ldmc help help`, escaped names,
# "wrote" lines, a missing dump folder, the sanitizer exit codes of lib.bash,
# and the U-Net defaults shared by every command.
source "$(dirname "$0")/lib.bash" || exit 1
G="$LDMC_SRC/tests/cli/axpy.txt"
TINY=(--model unet --channels 32 --latent 8x8x4 --context 64x8)
$ST write in.safetensors x F32 2,3 1,2,3,4,5,6 y F32 2,3 0.5,-1,2,3,0,-2

# unchanged FILE: FILE still holds "old"
unchanged() { if [ "$(cat "$1" 2>/dev/null)" = old ]; then pass; else fail "$1 was overwritten or removed"; fi; }
no_temps() { if ls ./*.tmp.* >/dev/null 2>&1; then fail "temp files left: $(ls ./*.tmp.*)"; else pass; fi; }

# ---- 1. output extensions: refused (exit 2) before anything is written ----
for f in a.safetensors a.xyz a; do
  echo old >"$f"
  run 2 "$LDMC" compile "$G" --out "$f"
  err_is_one_line_with "ldmc compile:" "--out $f" ".txt, .ldmcir, or .ldmc" "nothing was written"
  unchanged "$f"
done
echo old >p.ldmc
run 2 "$LDMC" print "$G" --out p.ldmc
err_is_one_line_with "ldmc print:" "--out p.ldmc" "'.ldmc'" ".txt or .ldmcir"
unchanged p.ldmc
echo old >r.png
run 2 "$LDMC" profile "$G" --random-inputs --backend interp --no-calibrate --roofline r.png
err_is_one_line_with "ldmc profile:" "--roofline r.png" ".svg"
unchanged r.png
for flag in --csv --json --trace; do
  run 2 "$LDMC" profile "$G" --random-inputs --backend interp --no-calibrate "$flag" p.txt
  err_is_one_line_with "ldmc profile:" "$flag p.txt"
done
echo old >y.bin
run 2 "$LDMC" run "$G" --inputs in.safetensors --out y.bin
err_is_one_line_with "ldmc run:" "--out y.bin" ".safetensors"
unchanged y.bin
run 2 "$LDMC" run "$G" --inputs in.safetensors --out y.safetensors --save-graph g.safetensors
err_is_one_line_with "--save-graph g.safetensors" ".ldmc, .txt, or .ldmcir"
check "nothing written by refused runs" test ! -e y.safetensors
run 0 "$LDMC" print "$G" --out p.txt
run 0 "$LDMC" compile "$G" --target interp --out c.ldmcir

# ---- 8. the same file given to two outputs ----
echo old >same.safetensors
run 2 "$LDMC" run "$G" --inputs in.safetensors --out same.safetensors --save-inputs ./same.safetensors
err_is_one_line_with "--out same.safetensors" "--save-inputs ./same.safetensors" "same file"
unchanged same.safetensors
ln -s same.safetensors link.safetensors
run 2 "$LDMC" run "$G" --inputs in.safetensors --out same.safetensors --save-inputs link.safetensors
err_is_one_line_with "same file"
mkdir -p sub
run 2 "$LDMC" profile "$G" --random-inputs --backend interp --no-calibrate --json p.json --trace sub/../p.json
err_is_one_line_with "ldmc profile:" "--json p.json" "--trace sub/../p.json" "same file"
check "profile wrote nothing" test ! -e p.json

# ---- 8. --save-graph and compile --out say what they wrote ----
run 0 "$LDMC" run "$G" --inputs in.safetensors -o o.safetensors --save-graph sg.ldmc
bytes=$(stat -c %s sg.ldmc)
out_has "wrote sg.ldmc: $bytes bytes, ldmc module: graph 'axpy' (8 nodes), no tensors" "wrote o.safetensors"
run 0 "$LDMC" compile "$G" --target interp --out co.txt
out_has "wrote co.txt: $(stat -c %s co.txt) bytes, text IR: graph 'axpy'"

# ---- 8. -o wherever --out is; ldmc help help ----
run 0 "$LDMC" run "$G" --inputs in.safetensors -o o2.safetensors
check "run -o writes the outputs" cmp -s o.safetensors o2.safetensors
run 0 "$LDMC" print "$G" -o p2.txt
check "print -o writes the text" cmp -s p.txt p2.txt
run 2 "$LDMC" run "$G" --inputs in.safetensors -o o3.safetensors --out o4.safetensors
err_is_one_line_with "given twice"
run 0 "$LDMC" run --help
out_has "--out FILE, -o FILE"
run 0 "$LDMC" help help
out_has "usage: ldmc help [COMMAND]"
run 0 "$LDMC" help run
out_has "usage: ldmc run"
run 2 "$LDMC" help nosuch
err_is_one_line_with "unknown command 'nosuch'"

# ---- 2. the .ldmc writer refuses what the reader refuses ----
$ST write empty.safetensors "" F32 2 1,2
echo old >empty.ldmc
run 1 "$LDMC" convert empty.safetensors empty.ldmc
err_is_one_line_with "ldmc convert:" "empty.ldmc" "tensor 0" "empty name"
unchanged empty.ldmc
no_temps

# ---- 8. names from files are printed escaped ----
# two tensors renamed in the (uncompressed) protobuf header to the same
# non-UTF-8 bytes: the reader's duplicate-name message must not print them raw
$ST write two.safetensors AAAA F32 1 1 BBBB F32 1 2
run 0 "$LDMC" convert two.safetensors two.ldmc
python3 - <<'EOF'
d = open("two.ldmc", "rb").read()
assert d.count(b"AAAA") == 1 and d.count(b"BBBB") == 1
open("dup.ldmc", "wb").write(d.replace(b"AAAA", b"\xff\x01\\A").replace(b"BBBB", b"\xff\x01\\A"))
EOF
run 1 "$LDMC" inspect dup.ldmc
err_is_one_line_with "duplicate tensor name" '\xff\x01\\A'
check "no raw non-UTF-8 or control bytes in the message" python3 -c "
import sys; b = open('$T/err', 'rb').read(); b.decode('utf-8'); sys.exit(any(c < 32 and c != 10 for c in b))"

# ---- 3. integer timesteps with --random-inputs; the dtype message ----
$ST write ts64.safetensors timestep I64 1 500
$ST write ts32.safetensors timestep I32 1 500
$ST write tsf32.safetensors timestep F32 1 500
$ST write ts16.safetensors timestep F16 1 500
run 0 "$LDMC" run "${TINY[@]}" --init random --inputs tsf32.safetensors --random-inputs --out t32f.safetensors
run 0 "$LDMC" run "${TINY[@]}" --init random --inputs ts64.safetensors --random-inputs --out t64.safetensors
check "an i64 timestep with --random-inputs runs as the f32 one" cmp -s t32f.safetensors t64.safetensors
run 0 "$LDMC" run "${TINY[@]}" --init random --inputs ts32.safetensors --random-inputs --out t32.safetensors
check "an i32 timestep with --random-inputs runs as the f32 one" cmp -s t32f.safetensors t32.safetensors
run 1 "$LDMC" run "${TINY[@]}" --init random --inputs ts16.safetensors --out t16.safetensors
err_is_one_line_with "'timestep' is f16[1], expected f32[1] (or i32/i64)"

# ---- 4. FIFOs, folders, devices and sockets are refused without blocking ----
mkfifo fifo.safetensors
mkdir dir.safetensors
python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('sock.safetensors')"
for f in fifo.safetensors dir.safetensors /dev/zero sock.safetensors; do
  run 1 timeout 20 "$LDMC" inspect "$f"
  err_is_one_line_with "ldmc inspect:" "'$f' is" "not a regular file"
  run 1 timeout 20 "$LDMC" run "$G" --inputs "$f" --out f.safetensors
  err_is_one_line_with "ldmc run:" "not a regular file"
  run 1 timeout 20 "$LDMC" print "$f"
done
err_is_one_line_with "'sock.safetensors' is a socket"
run 1 timeout 20 "$LDMC" run "${TINY[@]}" --weights fifo.safetensors --random-inputs --out f.safetensors
err_is_one_line_with "'fifo.safetensors' is a named pipe, not a regular file"

# ---- 5. --weights takes a .ldmc as --inputs does ----
run 0 "$LDMC" run "${TINY[@]}" --init random --seed 5 --random-inputs --save-inputs rin.safetensors \
  --save-graph w.ldmc --out w_a.safetensors
out_has "wrote w.ldmc: $(stat -c %s w.ldmc) bytes, ldmc module: graph 'unet'" "wrote rin.safetensors"
run 0 "$LDMC" run "${TINY[@]}" --weights w.ldmc --inputs rin.safetensors --out w_b.safetensors
check "--weights W.ldmc gives the outputs of the weights it holds" cmp -s w_a.safetensors w_b.safetensors
run 1 "$LDMC" run --model unet --channels 64 --latent 8x8x4 --context 64x8 --weights w.ldmc --random-inputs \
  --out w_c.safetensors
err_is_one_line_with "w.ldmc:"

# ---- 6. SIGINT / SIGTERM during an atomic write leave no temp file ----
python3 - <<'EOF'
import json, os, struct
n = 48 * 1024 * 1024  # a 192 MiB tensor of noise: zstd cannot shrink it, so the write takes a while
h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
h += b" " * (-len(h) % 8)
with open("big.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for _ in range(48):
        f.write(os.urandom(4 << 20))
EOF
for sig in INT TERM; do
  echo old >big.ldmc
  set -m # job control: a background job does not start with SIGINT ignored
  "$LDMC" convert big.safetensors big.ldmc 2>/dev/null &
  pid=$!
  set +m
  seen=0
  for _ in $(seq 4000); do
    if ls big.ldmc.tmp.* >/dev/null 2>&1; then seen=1; break; fi
    sleep 0.002
  done
  kill -"$sig" "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
  if [ "$seen" -eq 1 ]; then
    check "SIG$sig: the command dies by the signal (exit $rc)" test "$rc" -gt 128
    check "SIG$sig: no temp file is left" bash -c '! ls big.ldmc.tmp.* >/dev/null 2>&1'
    unchanged big.ldmc
  else
    echo "note: the write ended before its temp file was seen; SIG$sig not tested" >&2
  fi
done
rm -f big.safetensors big.ldmc big.ldmc.tmp.*

# ---- 7. one message for the --channels rule, with its limits ----
for c in 0 7 34 2000000; do
  for cmd in "compile --model unet --target interp" "stats --target interp" "profile --model unet --no-calibrate" "run ${TINY[*]:0:2} --init random --random-inputs --out x.safetensors"; do
    # shellcheck disable=SC2086
    run 2 "$LDMC" $cmd --channels "$c"
    err_is_one_line_with "channels $c: the base width c must be a multiple of 32 from 32 to 1048576"
  done
done
run 2 "$LDMC" stats --target interp --channels 64,7
err_is_one_line_with "channels 7: the base width c must be a multiple of 32 from 32 to 1048576"
run 2 "$LDMC" run "${TINY[@]}" --weights w.ldmc --init random --random-inputs --out x.safetensors
err_is_one_line_with "--weights and --init random" "not both"
run 2 "$LDMC" run "${TINY[@]}" --random-inputs --out x.safetensors
err_is_one_line_with "--weights FILE" "--init random"

# ---- 7. one --batch limit; a run too large for memory is refused early ----
# Should a check regress, these runs would try to allocate hundreds of GiB on a
# shared machine: cap their address space (not under ASan, which reserves more).
capped() {
  if grep -q Sanitizer <("$LDMC" version); then "$@"; else (ulimit -v 8000000 && "$@"); fi
}
for cmd in "compile --model unet --target interp" "stats --target interp" "profile --model unet --no-calibrate" "run ${TINY[*]} --init random --random-inputs --out x.safetensors"; do
  # shellcheck disable=SC2086
  run 2 capped "$LDMC" $cmd --batch 16777216
  err_is_one_line_with "'--batch' expects an integer in [1, 1048576]"
done
run 1 capped "$LDMC" run "${TINY[@]}" --batch 1048576 --init random --random-inputs --out x.safetensors
err_is_one_line_with "graph 'unet' needs at least" "GiB" "of memory available" "--batch"
check "the refused run wrote nothing" test ! -e x.safetensors

# ---- 9. a missing dump folder is created ----
if grep -q llvm-cpu <("$LDMC" version); then
  LDMC_DUMP_DIR="$T/no/such/dir" LDMC_DUMP_PASSES=input run 0 "$LDMC" run "$G" --inputs in.safetensors \
    --out d.safetensors --backend llvm-cpu
  check "the dump folder was created and holds the dump" test -s "$T/no/such/dir/000-input.txt"
  touch notadir
  LDMC_DUMP_DIR="$T/notadir/x" LDMC_DUMP_PASSES=input run 1 "$LDMC" run "$G" --inputs in.safetensors \
    --out d2.safetensors --backend llvm-cpu
  err_is_one_line_with "dump folder" "notadir"
fi

# ---- 10. lib.bash tells a sanitizer report from an expected error exit ----
sub_test() { # sub_test WANT_RC COMMAND...: a child test expecting exit WANT_RC from COMMAND; prints its status
  LDMC_BIN="$LDMC_BIN" bash -c 'source "$0"; run "$1" "${@:2}"; summary sub' "$LDMC_SRC/tests/cli/lib.bash" "$@" \
    >/dev/null 2>&1
  echo $?
}
check "lib.bash exports ASAN_OPTIONS exitcode=86" grep -q "exitcode=86" <<<"$ASAN_OPTIONS"
check "lib.bash exports UBSAN_OPTIONS exitcode=87" grep -q "halt_on_error=1:exitcode=87" <<<"$UBSAN_OPTIONS"
check "an expected exit 1 passes" test "$(sub_test 1 sh -c 'exit 1')" -eq 0
check "exit 86 (ASan) fails a test expecting 1" test "$(sub_test 1 sh -c 'exit 86')" -ne 0
check "exit 87 (UBSan) fails a test expecting 1" test "$(sub_test 1 sh -c 'exit 87')" -ne 0
check "exit 86 fails a test expecting 86 too" test "$(sub_test 86 sh -c 'exit 86')" -ne 0
check "an ASan report with exit 1 fails" \
  test "$(sub_test 1 sh -c 'echo "==12==ERROR: AddressSanitizer: heap-use-after-free" >&2; exit 1')" -ne 0
check "a UBSan report with exit 2 fails" \
  test "$(sub_test 2 sh -c 'echo "x.c:3:5: runtime error: signed integer overflow" >&2; exit 2')" -ne 0

# ---- 11. the U-Net defaults: one table, the same in every command ----
for cmd in run compile profile stats; do
  run 0 "$LDMC" "$cmd" --help
  out_has "default 320;" "default 64x64x4;" "default 1024x77)" "default 1, at most 1048576)"
done
run 0 "$LDMC" compile --model unet --target interp --out def.txt
run 0 "$LDMC" compile --model unet --target interp --channels 320 --latent 64x64x4 --context 1024x77 --batch 1 \
  --out exp.txt
check "compile: the defaults build the graph of 320, 64x64x4, 1024x77, batch 1" cmp -s def.txt exp.txt
run 0 "$LDMC" stats --format csv --target interp
cp "$T/out" s_def.csv
run 0 "$LDMC" stats --format csv --target interp --channels 320 --latent 64x64x4 --context 1024x77 --batch 1
check "stats: the defaults are 320, 64x64x4, 1024x77, batch 1" cmp -s s_def.csv "$T/out"
# run: the data inputs the default latent and context ask for
$ST write bad_in.safetensors timestep F32 1 1
run 1 "$LDMC" run --model unet --channels 32 --init random --inputs bad_in.safetensors --out x.safetensors
err_is_one_line_with "'sample' (expected f32[1,4,64,64])" "'encoder_hidden_states' (expected f32[1,77,1024])"

no_temps
summary cli_rough_edges
