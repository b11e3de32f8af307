#!/bin/bash
# `ldmc run --model unet --grad out_sample` against PyTorch autograd: a tiny
# U-Net's weights and inputs written by the independent PyTorch definition in
# tests/torch/unet_ref.py; ldmc differentiates sum(out_sample) on the
# interpreter and on llvm-cpu; torch computes the same gradients in float64.
# Every parameter's and input's gradient is compared (the timestep's, whose
# sinusoidal embedding amplifies f32 rounding of t*freq, only reported).
# Skipped when /usr/bin/python3 lacks torch.
set -u
if ! /usr/bin/python3 -c 'import torch, numpy' > /dev/null 2>&1; then
  echo "SKIP cli_unet_grad_torch: /usr/bin/python3 cannot import torch and numpy"
  exit 0
fi
LDMC="$LDMC_BIN/ldmc"
REF="$LDMC_SRC/tests/torch/unet_ref.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cfg='{"channels":32,"groups":32,"context_dim":16}'
/usr/bin/python3 "$REF" --config "$cfg" --emit-weights "$tmp/w.safetensors" \
  --emit-inputs "$tmp/in.safetensors" --shape 1x8x8x5 --seed 5 || { echo "FAIL: emitting files"; exit 1; }
/usr/bin/python3 "$REF" --config "$cfg" --weights "$tmp/w.safetensors" --inputs "$tmp/in.safetensors" \
  --out "$tmp/ref.safetensors" --grad || { echo "FAIL: torch reference"; exit 1; }
rc=0
for be in interp llvm-cpu; do
  "$LDMC" run --model unet --channels 32 --latent 8x8x4 --context 16x5 --backend $be --threads 2 \
    --weights "$tmp/w.safetensors" --inputs "$tmp/in.safetensors" --grad out_sample \
    --out "$tmp/g_$be.safetensors" > "$tmp/log" 2> "$tmp/err"
  r=$?
  if [ $r -ne 0 ]; then echo "FAIL: ldmc run --grad on $be: exit $r: $(cat "$tmp/err")"; rc=1; continue; fi
  /usr/bin/python3 - "$REF" "$tmp/g_$be.safetensors" "$tmp/ref.safetensors" "$be" <<'PY' || rc=1
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("ref", sys.argv[1]); ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
got, want, be = ref.st_read(sys.argv[2]), ref.st_read(sys.argv[3]), sys.argv[4]
gnames = sorted(k for k in got if k.startswith("grad."))
wnames = sorted(k for k in want if k.startswith("grad."))
if gnames != wnames:
    print("FAIL %s: gradient names differ: only ldmc %s, only torch %s" % (be, sorted(set(gnames) - set(wnames))[:5],
          sorted(set(wnames) - set(gnames))[:5]))
    sys.exit(1)
worst, worst_name, bad = 0.0, "", 0
scale_all = max(abs(want[k]).max() for k in wnames)
for k in wnames:
    a, b = got[k].astype("f8"), want[k]
    if a.shape != b.shape:
        print("FAIL %s: %s shape %s, torch %s" % (be, k, a.shape, b.shape)); bad += 1; continue
    err = abs(a - b).max() / max(abs(b).max(), 1e-4 * scale_all)
    if k == "grad.timestep":
        print("%s: grad.timestep relative error %.3g (not checked)" % (be, err)); continue
    if err > worst: worst, worst_name = err, k
    if err > 2e-3:
        bad += 1
        if bad <= 5: print("FAIL %s: %s relative error %.3g" % (be, k, err))
print("%s: %d gradients vs torch autograd, worst relative error %.3g (%s)" % (be, len(wnames), worst, worst_name))
sys.exit(1 if bad else 0)
PY
done
[ $rc -eq 0 ] && echo "cli_unet_grad_torch: passed"
exit $rc
