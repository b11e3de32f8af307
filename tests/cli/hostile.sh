#!/usr/bin/env bash
# Bad and hostile files through every command: missing files, directories,
# truncations at many lengths, seeded bit flips and random bytes. Each must end
# with exit 1 and one stderr line naming the file (a flip may also leave a
# valid file: exit 0), never a crash, and never an output file.
source "$(dirname "$0")/lib.bash" || exit 1
G="$LDMC_SRC/tests/cli/axpy.txt"

# all_commands_fail FILE [ALLOW_OK [COMMANDS]]: the commands (default: inspect,
# print, convert and run) refuse FILE cleanly. They share one loader, so the
# many corrupted variants go through two of them only.
all_commands_fail() {
  local f=$1 allow_ok=${2:-no} which=${3:-inspect,print,convert,run} cmds=()
  [[ $which == *inspect* ]] && cmds+=("inspect $f")
  [[ $which == *print* ]] && cmds+=("print $f")
  [[ $which == *convert* ]] && cmds+=("convert $f h_out.ldmc")
  [[ $which == *run* ]] && cmds+=("run $f --out h_out.safetensors")
  for cmd in "${cmds[@]}"; do
    # shellcheck disable=SC2086
    "$LDMC" $cmd >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" -eq 1 ]; then
      pass
      err_is_one_line_with "ldmc ${cmd%% *}: " "$f"
    elif [ "$rc" -eq 0 ] && [ "$allow_ok" = yes ]; then
      pass
    else
      fail "ldmc $cmd: exit $rc ($(head -c 200 "$T/err"))"
    fi
    if [ "$rc" -ne 0 ] && ls h_out.* >/dev/null 2>&1; then fail "ldmc $cmd left an output file"; fi
    rm -f h_out.*
    if ls ./*.tmp.* >/dev/null 2>&1; then fail "ldmc $cmd left a temporary file"; fi
  done
}

# missing files and folders
all_commands_fail missing.ldmc
mkdir adir
all_commands_fail adir
: >empty.ldmc
all_commands_fail empty.ldmc

# text IR with errors: the message carries file:line:col
printf 'graph g {\n  %%0 = f32[2] parameter() name="x"\n  %%1 = f32[2] frob(%%0)\n  return %%1 "y"\n}\n' >bad_op.txt
all_commands_fail bad_op.txt
run 1 "$LDMC" print bad_op.txt
err_is_one_line_with "bad_op.txt:3:"
printf 'graph g {\n  %%0 = f32[2] parameter() name="x"\n  %%1 = f32[3] neg(%%0)\n  return %%1 "y"\n}\n' >bad_shape.txt
all_commands_fail bad_shape.txt
printf 'graph g {\n  %%0 = f32[2] parameter() name="x"\n  return %%0 "y"\n' >unterminated.txt
all_commands_fail unterminated.txt

# .ldmc modules: every truncation is refused; seeded bit flips never crash
$ST write w.safetensors a F32 2,2 1,2,3,4 b I64 3 5,6,7
"$LDMC" convert "$G" gw.ldmc --weights w.safetensors 2>/dev/null || fail "cannot make gw.ldmc"
size=$(stat -c %s gw.ldmc)
check "gw.ldmc is a few hundred bytes" test "$size" -gt 100
for len in $(python3 -c "import sys; n=int(sys.argv[1]); print(*sorted(set([0, 3, 4, 8, 16, 23, 24, 25, 32] + list(range(40, n, max(1, n // 10))) + [n - 1])))" "$size"); do
  head -c "$len" gw.ldmc >trunc.ldmc
  all_commands_fail trunc.ldmc no inspect,convert
done
python3 -c "
import random
d0 = open('gw.ldmc', 'rb').read()
for seed in range(1, 9):
    r = random.Random(seed); d = bytearray(d0)
    for _ in range(r.randint(1, 4)): d[r.randrange(len(d))] ^= 1 << r.randrange(8)
    open('flip%d.ldmc' % seed, 'wb').write(d)"
for seed in 1 2 3 4 5 6 7 8; do
  all_commands_fail "flip$seed.ldmc" yes inspect,convert
done

# safetensors: truncations, lying headers, random bytes
wsize=$(stat -c %s w.safetensors)
for len in 0 4 7 8 9 16 $((wsize / 2)) $((wsize - 1)); do
  head -c "$len" w.safetensors >trunc.safetensors
  all_commands_fail trunc.safetensors no inspect,convert
done
python3 - <<'PY'
import json, struct
def st(path, header, body=b"", hl=None):
    h = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(h) if hl is None else hl) + h + body)
st("huge_len.safetensors", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, hl=1 << 62)
st("past_end.safetensors", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4)
st("overlap.safetensors", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                           "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
st("bad_dtype.safetensors", {"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
st("overflow.safetensors", {"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 4]}}, b"\0" * 4)
st("not_json.safetensors", {}, b"")
d = open("not_json.safetensors", "rb").read(); open("not_json.safetensors", "wb").write(d[:8] + b"{" * (len(d) - 8))
import random
r = random.Random(42)
open("random.bin", "wb").write(bytes(r.randrange(256) for _ in range(4096)))
open("random_ldmc.ldmc", "wb").write(b"LDMC" + bytes(r.randrange(256) for _ in range(4096)))
PY
for f in huge_len past_end overlap bad_dtype overflow not_json; do
  all_commands_fail "$f.safetensors"
done
all_commands_fail random.bin
all_commands_fail random_ldmc.ldmc

# inputs that are hostile
run 1 "$LDMC" run "$G" --inputs past_end.safetensors --out h_out.safetensors
err_is_one_line_with "past_end.safetensors"
check "no output after bad inputs" test ! -e h_out.safetensors

summary cli_hostile
