#!/usr/bin/env bash
# `ldmc run FILE.ldmc --activation-params N`: the file's parameters from N on
# are weights, declared to the backend as `ldmc run --model` declares the
# U-Net's (ldmc_compile_opts.params_are_weights / n_activation_params), so
# llvm-cpu prepacks what derives only from them. The module: a tiny U-Net
# saved with its weights as parameters (--save-graph); its first 3 parameters
# (sample, timestep, encoder_hidden_states) are the activations. Oracles: the
# interpreter's outputs of the same module and inputs; the prepack count in
# the backend's --verbose summary, against the --model run's and against a
# run without the flag (no weights declared: nothing prepacked).
source "$(dirname "$0")/lib.bash" || exit 1
M=(--model unet --channels 32 --latent 8x8x4 --context 32x4 --init random --random-inputs --seed 3)
run 0 "$LDMC" run "${M[@]}" --out ref.safetensors --save-graph u.ldmc --save-inputs in.safetensors
run 0 "$LDMC" run "${M[@]}" --backend llvm-cpu --threads 2 --verbose --out model.safetensors
prepack() { sed -n 's/.*steps (\([0-9]*\) prepack.*/\1/p' "$T/err" | head -n 1; }
n_model=$(prepack)
check "the --model run prepacks ($n_model steps)" test "${n_model:-0}" -gt 0
run 0 "$LDMC" run u.ldmc --inputs in.safetensors --backend llvm-cpu --threads 2 --activation-params 3 --verbose \
  --out act.safetensors
n_act=$(prepack)
check "--activation-params 3 prepacks as --model does ($n_act vs $n_model steps)" test "${n_act:-0}" -eq "${n_model:-x}"
run 0 "$LDMC" run u.ldmc --inputs in.safetensors --backend llvm-cpu --threads 2 --verbose --out none.safetensors
n_none=$(prepack)
check "without it nothing is prepacked ($n_none steps)" test "${n_none:-x}" -eq 0
$ST read ref.safetensors out_sample >ref.txt
for f in act model none; do
  $ST read $f.safetensors out_sample >$f.txt
  python3 -c '
import sys
a = [float(x) for x in open(sys.argv[1])]; b = [float(x) for x in open(sys.argv[2])]
assert len(a) == len(b) and a
sys.exit(0 if max(abs(x - y) for x, y in zip(a, b)) <= 1e-5 * max(abs(y) for y in b) else 1)' $f.txt ref.txt
  check "$f: llvm-cpu outputs equal the interpreter's" test $? -eq 0
done
# --activation-params 0: every parameter a weight; the outputs do not change
run 0 "$LDMC" run u.ldmc --inputs in.safetensors --backend llvm-cpu --threads 2 --activation-params 0 --out zero.safetensors
$ST read zero.safetensors out_sample >zero.txt
check "--activation-params 0: same outputs" cmp -s zero.txt act.txt
# usage errors: exit 2, one line
run 2 "$LDMC" run u.ldmc --inputs in.safetensors --activation-params 100000 --out x.safetensors
err_is_one_line_with "--activation-params" "parameters"
run 2 "$LDMC" run u.ldmc --activation-params -1 --out x.safetensors
err_is_one_line_with "--activation-params"
run 2 "$LDMC" run "${M[@]}" --activation-params 3 --out x.safetensors
err_is_one_line_with "--activation-params" "--model"
check "no output written by a usage error" test ! -e x.safetensors
run 0 "$LDMC" run --help
out_has "--activation-params"
summary cli_run_activation_params
