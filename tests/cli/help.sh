#!/usr/bin/env bash
# The driver's help and usage errors: every command has --help and `ldmc help
# CMD` (same text), every flag of a command's usage line is explained in its
# help, unknown flags/commands and missing values exit 2 with one line.
source "$(dirname "$0")/lib.bash" || exit 1

run 0 "$LDMC" --help
out_has "usage: ldmc COMMAND"
commands=$(sed -n '/^commands:/,/^$/p' "$T/out" | awk 'NR>1 && NF {print $1}')
for want in version inspect print convert run compile profile stats; do
  check "ldmc --help lists $want" grep -qx "$want" <<<"$commands"
done

for cmd in $commands; do
  run 0 "$LDMC" "$cmd" --help
  cp "$T/out" "$T/help1"
  check "$cmd --help starts with its usage" grep -q "^usage: ldmc $cmd" "$T/help1"
  check "$cmd --help prints nothing on stderr" test ! -s "$T/err"
  run 0 "$LDMC" help "$cmd"
  check "ldmc help $cmd equals ldmc $cmd --help" cmp -s "$T/out" "$T/help1"
  run 0 "$LDMC" "$cmd" -h
  check "$cmd -h equals --help" cmp -s "$T/out" "$T/help1"
  # every --flag named in the usage lines has its own line in the flag list
  for flag in $(sed -n '/^usage:/,/^$/p' "$T/help1" | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    check "$cmd --help explains $flag" grep -Eq "^  $flag( |$)" "$T/help1"
  done
  # and every listed flag has a description
  while read -r line; do
    check "$cmd: flag line has a description: $line" test "$(wc -w <<<"$line")" -ge 3
  done < <(grep -E '^  --[a-z]' "$T/help1")

  if true; then
    run 2 "$LDMC" "$cmd" --no-such-flag
    err_is_one_line_with "ldmc $cmd: unknown flag '--no-such-flag' (see ldmc $cmd --help)"
    run 2 "$LDMC" "$cmd" --no-such-flag=3
    err_is_one_line_with "unknown flag '--no-such-flag'"
  fi
done

# missing values, both spellings of values
run 2 "$LDMC" print --out
err_is_one_line_with "ldmc print:" "'--out'" "needs a value"
run 2 "$LDMC" print --out= x.ldmc
err_is_one_line_with "'--out'"
run 2 "$LDMC" run g.txt --out
err_is_one_line_with "'--out'"
run 2 "$LDMC" inspect --brief=1 x
err_is_one_line_with "'--brief' takes no value"
run 2 "$LDMC" run g.txt --out y.safetensors --seed abc
err_is_one_line_with "'--seed'" "abc"
run 2 "$LDMC" run g.txt --out y.safetensors --seed=-1
err_is_one_line_with "'--seed'"
run 2 "$LDMC" run --model unet --channels 32 --latent 8x8x4x2 --init random --random-inputs --out y.safetensors
err_is_one_line_with "latent"
run 2 "$LDMC" run g.txt --out y.safetensors --out z.safetensors
err_is_one_line_with "'--out' given twice"
run 2 "$LDMC" run g.txt --channels 32 --out y.safetensors
err_is_one_line_with "'--channels' needs --model"
run 2 "$LDMC" run --model vae --channels 32 --init random --out y.safetensors
err_is_one_line_with "'--model'" "vae"
run 2 "$LDMC" run --model unet --channels 32 --out y.safetensors
err_is_one_line_with "--weights" "--init random"
run 2 "$LDMC" run g.txt --out y.bin
err_is_one_line_with "y.bin"
run 2 "$LDMC" run g.txt --out y.safetensors --backend nosuch
err_is_one_line_with "nosuch"
run 2 "$LDMC" inspect
err_is_one_line_with "ldmc inspect: missing argument"
run 2 "$LDMC" inspect a b
err_is_one_line_with "unexpected argument 'b'"
run 2 "$LDMC" convert a.txt b.unknown
err_is_one_line_with "b.unknown"
run 2 "$LDMC" convert a.txt b.ldmc --to yaml
err_is_one_line_with "'--to'" "yaml"

# the driver itself
run 2 "$LDMC" frobnicate
err_is_one_line_with "ldmc: unknown command 'frobnicate' (see ldmc --help)"
run 2 "$LDMC" help frobnicate
err_is_one_line_with "unknown command 'frobnicate'"
run 2 "$LDMC" --frob
err_is_one_line_with "unknown flag '--frob'"
run 2 "$LDMC"
check "bare ldmc prints the usage on stderr" grep -q "usage: ldmc" "$T/err"
run 0 "$LDMC" version
out_has "ldmc 0." "llvm 19." "build " "backends interp"
run 0 "$LDMC" --version
out_has "llvm 19."

# `--` ends the flags: a file named like a flag
printf 'graph g {\n  %%0 = f32[2] parameter() name="x"\n  return %%0 "y"\n}\n' >./--brief
run 0 "$LDMC" inspect -- --brief
out_has "graph 'g': 1 node, 1 parameter (2 elements), 1 output"

summary cli_help
