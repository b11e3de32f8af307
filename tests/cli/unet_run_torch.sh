#!/bin/bash
# `ldmc run --model unet` end to end: a tiny U-Net's weights (BF16 on disk) and
# inputs (i64 timestep) written by the independent PyTorch definition in
# tests/torch/unet_ref.py, run on the interpreter, compared with PyTorch's
# float64 output of the same files. Skipped when /usr/bin/python3 lacks torch.
set -u
if ! /usr/bin/python3 -c 'import torch, numpy' > /dev/null 2>&1; then
  echo "SKIP cli_unet_run_torch: /usr/bin/python3 cannot import torch and numpy"
  exit 0
fi
LDMC="$LDMC_BIN/ldmc"
REF="$LDMC_SRC/tests/torch/unet_ref.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cfg='{"channels":32,"groups":32,"context_dim":16}' # the CLI model's defaults at c=32
/usr/bin/python3 "$REF" --config "$cfg" --emit-weights "$tmp/w.safetensors" --weights-dtype BF16 \
  --emit-inputs "$tmp/in.safetensors" --shape 2x8x16x5 --seed 3 || { echo "FAIL: emitting files"; exit 1; }
"$LDMC" run --model unet --channels 32 --latent 8x16x4 --context 16x5 --batch 2 --backend interp \
  --weights "$tmp/w.safetensors" --inputs "$tmp/in.safetensors" --out "$tmp/out.safetensors" 2> "$tmp/err"
rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: ldmc run exit $rc: $(cat "$tmp/err")"; exit 1; fi
/usr/bin/python3 "$REF" --config "$cfg" --weights "$tmp/w.safetensors" \
  --inputs "$tmp/in.safetensors" --out "$tmp/ref.safetensors" || { echo "FAIL: torch reference"; exit 1; }
/usr/bin/python3 - "$REF" "$tmp/out.safetensors" "$tmp/ref.safetensors" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("ref", sys.argv[1]); ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
a, b = ref.st_read(sys.argv[2])["out_sample"], ref.st_read(sys.argv[3])["out_sample"]
assert a.shape == b.shape == (2, 4, 8, 16), (a.shape, b.shape)
rel = abs(a.astype("f8") - b).max() / abs(b).max()
print("ldmc run --model unet vs torch: max abs error / max |torch| = %.3g (max |torch| %.3g)" % (rel, abs(b).max()))
sys.exit(0 if rel < 2e-6 and abs(b).max() > 1e-3 else 1)
PY
rc=$?
[ $rc -eq 0 ] || echo "FAIL: outputs differ"
# wrong inputs are refused with the expected type
/usr/bin/python3 - "$REF" "$tmp" <<'PY'
import importlib.util, sys, numpy as np
spec = importlib.util.spec_from_file_location("ref", sys.argv[1]); ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
ins = ref.st_read(sys.argv[2] + "/in.safetensors")
ins["sample"] = ins["sample"][:, :, :4]
ref.st_write(sys.argv[2] + "/bad.safetensors", ins, "F32", {"timestep": "I64"})
PY
"$LDMC" run --model unet --channels 32 --latent 8x16x4 --context 16x5 --batch 2 --weights "$tmp/w.safetensors" \
  --inputs "$tmp/bad.safetensors" --out "$tmp/bad_out.safetensors" 2> "$tmp/err"
brc=$?
if [ $brc -eq 0 ] || ! grep -q "expected f32\[2,4,8,16\]" "$tmp/err" || [ -e "$tmp/bad_out.safetensors" ]; then
  echo "FAIL: bad inputs not refused (exit $brc): $(cat "$tmp/err")"
  rc=1
fi
[ $rc -eq 0 ] && echo "cli_unet_run_torch: passed"
exit $rc
