#!/usr/bin/env bash
# ldmc run --model unet on a tiny U-Net (c=32, 8x8 latent, 64x8 context):
# seeded init is reproducible, the graph saved with --save-graph and run from
# the file gives the same bytes, weights exported to safetensors load back to
# the same result, and bad weights or inputs are refused with one line.
source "$(dirname "$0")/lib.bash" || exit 1
TINY=(--model unet --channels 32 --latent 8x8x4 --context 64x8)

run 0 "$LDMC" run "${TINY[@]}" --init random --seed 3 --random-inputs --save-inputs in.safetensors \
  --save-graph unet.ldmc --out a.safetensors
out_has "ran graph 'unet'" "on interp" "out_sample f32[1,4,8,8]"
check "no non-finite outputs" bash -c "! grep -q non-finite '$T/out'"
run 0 "$LDMC" run "${TINY[@]}" --init random --seed 3 --inputs in.safetensors --out b.safetensors
check "the same seed and inputs give identical outputs" cmp -s a.safetensors b.safetensors
run 0 "$LDMC" run "${TINY[@]}" --init random --seed 4 --inputs in.safetensors --out c.safetensors
check "another init seed gives other outputs" bash -c '! cmp -s a.safetensors c.safetensors'

# the saved module: graph + weights, run as a file
run 0 "$LDMC" inspect --brief unet.ldmc
out_has "unet.ldmc: ldmc module" "graph 'unet':" "group_norm" "attention" "convolution"
n_tensors=$(sed -n 's/^tensors: \([0-9]*\) .*/\1/p' "$T/out")
n_params=$(sed -n "s/^graph 'unet': [0-9]* nodes, \([0-9]*\) parameters.*/\1/p" "$T/out")
check "the module holds a weight for every parameter but the 3 inputs ($n_tensors, $n_params)" \
  test "$((n_tensors + 3))" -eq "$n_params"
run 0 "$LDMC" run unet.ldmc --inputs in.safetensors --out d.safetensors
check "model mode and the saved module give identical outputs" cmp -s a.safetensors d.safetensors

# weights through safetensors, as diffusers would ship them
run 0 "$LDMC" convert unet.ldmc weights.safetensors
check "diffusers-style keys" grep -q "down_blocks.0.resnets.0.conv1.weight" <<<"$($ST header weights.safetensors)"
run 0 "$LDMC" run "${TINY[@]}" --weights weights.safetensors --inputs in.safetensors --out e.safetensors
check "weights loaded from safetensors give identical outputs" cmp -s a.safetensors e.safetensors

# an integer timestep is accepted (converted to f32) when all inputs are given
$ST set in.safetensors in_i64.safetensors timestep I64 500
$ST set in.safetensors in_f32.safetensors timestep F32 500
run 0 "$LDMC" run "${TINY[@]}" --init random --seed 3 --inputs in_i64.safetensors --out f.safetensors
run 0 "$LDMC" run "${TINY[@]}" --init random --seed 3 --inputs in_f32.safetensors --out g.safetensors
check "timestep 500 as i64 equals timestep 500.0 as f32" cmp -s f.safetensors g.safetensors

# refusals
$ST drop weights.safetensors missing_w.safetensors conv_in.weight
run 1 "$LDMC" run "${TINY[@]}" --weights missing_w.safetensors --inputs in.safetensors --out h.safetensors
err_is_one_line_with "missing_w.safetensors" "conv_in.weight"
check "no output after missing weights" test ! -e h.safetensors
run 1 "$LDMC" run --model unet --channels 64 --latent 8x8x4 --context 64x8 --weights weights.safetensors \
  --inputs in.safetensors --out h.safetensors
err_is_one_line_with "weights.safetensors"
check "no output after mis-shaped weights" test ! -e h.safetensors
$ST write small.safetensors sample F32 1,4,4,4 $(python3 -c "print(','.join(['0']*64))")
run 1 "$LDMC" run "${TINY[@]}" --init random --inputs small.safetensors --out h.safetensors
err_is_one_line_with "small.safetensors" "sample"
check "no output after bad inputs" test ! -e h.safetensors
run 2 "$LDMC" run --model unet --channels 33 --latent 8x8x4 --init random --out h.safetensors
err_is_one_line_with "33"
run 2 "$LDMC" run --model unet --channels 32 --latent 6x6x4 --init random --out h.safetensors
err_is_one_line_with "latent"
run 2 "$LDMC" run unet.ldmc --model unet --channels 32 --init random --out h.safetensors
err_is_one_line_with "either GRAPH or --model"

summary cli_model
