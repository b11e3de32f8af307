#!/usr/bin/env bash
# ldmc sample on a tiny latent diffusion model trained here (autoencoder +
# prompt encoder + U-Net, a few steps on 64 images):
#  - the PNG grid has a row per prompt and a column per image (size computed
#    from the grid's cell layout), read back by python3's zlib/struct;
#  - --save-samples holds images f32[N,1,32,32] within [-1, 1] (bounded by
#    the decoder's output) and labels i64[N], the prompted classes;
#  - a seed gives the same images again, and the same for another batch
#    split (the noise is keyed per image) and thread count; another seed
#    differs; --cfg 1 runs without the unconditional pass;
#  - the summary reports seconds per step and the sampling cost, with the
#    doubled passes of guidance said;
#  - errors: an unknown word lists the vocabulary, bad steps/cfg/out, a
#    missing model file; none leaves a PNG behind.
source "$(dirname "$0")/lib.bash" || exit 1
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

run 0 "$LDMC" train --model autoencoder --batch 8 --limit 64 --vae-channels 8,16,32 --threads 2 --no-progress \
  --val-every 0 --steps 3 --out vae
run 0 "$LDMC" train --model unet --vae vae/model.ldmc --batch 8 --limit 64 --channels 32 --text-width 32 --tokens 4 \
  --threads 2 --no-progress --val-every 0 --val-batches 1 --steps 2 --out ldm
M=(--model ldm/model.ldmc --no-progress)

run 0 "$LDMC" sample "${M[@]}" --prompt sneaker --prompt "ankle boot" --prompt bag --n 3 --steps 4 --seed 7 \
  --threads 2 -o a.png --save-samples a.safetensors --save-latents a-lat.safetensors
out_has "wrote a.png: 3 prompts x 3 images, ddim 4 steps, cfg 3, seed 7" "s per step" \
  "sampling cost:" "x 2 passes (classifier-free guidance: conditional + unconditional) x 4 steps"
# grid: 3 rows x 3 cols of 32x32 images at scale 2 with 2-pixel padding
want_w=$((3 * 64 + 4 * 2)) want_h=$((3 * 64 + 4 * 2))
dims=$($PY -c "import struct,sys; d=open('a.png','rb').read(); assert d[:8]==b'\x89PNG\r\n\x1a\n'; w,h=struct.unpack('>II',d[16:24]); print(w,h)")
check "PNG is ${want_w}x${want_h} (got $dims)" test "$dims" = "$want_w $want_h"
hdr=$($ST header a.safetensors)
check "samples: images f32[9,1,32,32]" $PY -c "import json,sys; h=json.loads(sys.argv[1]); assert h['images']['dtype']=='F32' and h['images']['shape']==[9,1,32,32]" "$hdr"
check "samples: labels i64[9]" $PY -c "import json,sys; h=json.loads(sys.argv[1]); assert h['labels']['dtype']=='I64' and h['labels']['shape']==[9]" "$hdr"
check "labels are the prompted classes (sneaker 7, ankle boot 9, bag 8)" \
  test "$($ST read a.safetensors labels | tr '\n' ,)" = "7,7,7,9,9,9,8,8,8,"
check "latents f32[9,4,8,8]" $PY -c "import json,sys; h=json.loads(sys.argv[1]); assert h['latents']['shape']==[9,4,8,8]" "$($ST header a-lat.safetensors)"

# the same seed again, another batch split and thread count: the same latents (to f32 rounding of the tiling)
run 0 "$LDMC" sample "${M[@]}" --prompt sneaker --prompt "ankle boot" --prompt bag --n 3 --steps 4 --seed 7 \
  --batch 2 --threads 1 -o b.png --save-latents b-lat.safetensors
close() { # A B: the latents agree to 1e-4 relative
  $PY - "$1" "$2" <<'EOF'
import subprocess, sys
st = [sys.executable, __import__("os").environ["LDMC_SRC"] + "/tests/cli/st.py", "read"]
a = [float(x) for x in subprocess.run(st + [sys.argv[1], "latents"], capture_output=True, text=True).stdout.split()]
b = [float(x) for x in subprocess.run(st + [sys.argv[2], "latents"], capture_output=True, text=True).stdout.split()]
scale = max(abs(x) for x in a)
assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= 1e-4 * scale, "latents differ"
EOF
}
check "batch 2, 1 thread: the same latents as batch 9, 2 threads" close a-lat.safetensors b-lat.safetensors
run 0 "$LDMC" sample "${M[@]}" --prompt sneaker --n 2 --steps 4 --seed 8 --save-latents c-lat.safetensors -o c.png
check "another seed, other latents" bash -c "! cmp -s <($ST read c-lat.safetensors latents) <($ST read a-lat.safetensors latents 2>/dev/null | head -512)"
run 0 "$LDMC" sample "${M[@]}" --prompt coat --n 2 --steps 3 --cfg 1 --sampler dpmpp2m -o d.png
out_has "dpmpp2m 3 steps, cfg 1" "x 1 pass x 3 steps"
run 0 "$LDMC" sample "${M[@]}" --prompt dress --n 2 --steps 3 --sampler ddpm -o e.png
out_has "ddpm 3 steps"

# a guidance sweep: a row per rate, the same noise in each row (rate 1 and rate 1 agree)
run 0 "$LDMC" sample "${M[@]}" --prompt bag --n 2 --steps 3 --cfg 1,4,1 --seed 3 -o f.png --save-samples f.safetensors
out_has "cfg 1,4,1" "rows: prompt x rate, 3 rates per prompt"
dims=$($PY -c "import struct; d=open('f.png','rb').read(); print(*struct.unpack('>II',d[16:24]))")
check "sweep grid is 2 columns x 3 rows (got $dims)" test "$dims" = "$((2 * 64 + 3 * 2)) $((3 * 64 + 4 * 2))"
check "rows of the same rate are the same images" $PY - <<'EOF2'
import subprocess, sys, os
v = [float(x) for x in subprocess.run([sys.executable, os.environ["LDMC_SRC"] + "/tests/cli/st.py", "read", "f.safetensors", "images"], capture_output=True, text=True).stdout.split()]
n = 2 * 32 * 32
r0, r1, r2 = v[:n], v[n:2 * n], v[2 * n:]
assert max(abs(a - b) for a, b in zip(r0, r2)) < 1e-5, "rate 1 rows differ"
assert max(abs(a - b) for a, b in zip(r0, r1)) > 1e-3, "rate 4 row equals rate 1 row"
EOF2
run 2 "$LDMC" sample "${M[@]}" --prompt bag --cfg 2,x -o x.png
err_is_one_line_with "--cfg 2,x"

# --eval: the samples scored in the same run (the repository's classifier)
run 0 "$LDMC" sample "${M[@]}" --prompt bag --prompt coat --n 3 --steps 2 --eval \
  --classifier "$LDMC_SRC/models/default/classifier.ldmc" -o g.png
out_has "FD:" "KID:" "class accuracy:" "(6 samples vs 10000 reference"
check "--eval leaves no temporary samples file" bash -c '! grep -o "/tmp/ldmc-samples-[A-Za-z0-9]*.safetensors" "$0" | xargs -r ls 2>/dev/null | grep -q .' "$T/out"

# --labels: a label column left of the cells (wider grid, same height)
run 0 "$LDMC" sample "${M[@]}" --prompt bag --n 2 --steps 2 --labels -o h.png
dims=$($PY -c "import struct; d=open('h.png','rb').read(); print(*struct.unpack('>II',d[16:24]))")
check "labelled grid is wider than 2 cells and 1 row high (got $dims)" \
  bash -c "set -- $dims; test \$1 -gt $((2 * 64 + 3 * 2)) && test \$2 -eq $((64 + 2 * 2))"

# errors, and no PNG left behind
run 2 "$LDMC" sample "${M[@]}" --prompt "red sneaker" -o x.png
err_is_one_line_with "red" "vocabulary" "t-shirt"
run 2 "$LDMC" sample "${M[@]}" --prompt bag --steps 0 -o x.png
err_is_one_line_with "--steps"
run 2 "$LDMC" sample "${M[@]}" --prompt bag --cfg abc -o x.png
err_is_one_line_with "--cfg abc"
run 2 "$LDMC" sample "${M[@]}" --prompt bag -o x.jpg
err_is_one_line_with ".png"
run 2 "$LDMC" sample "${M[@]}" -o x.png
err_is_one_line_with "--prompt"
run 1 "$LDMC" sample --model nothing.ldmc --prompt bag -o x.png --no-progress
check "a missing model names the file" grep -q "nothing.ldmc" "$T/err"
run 1 "$LDMC" sample --model vae/model.ldmc --prompt bag -o x.png --no-progress
check "an autoencoder is not a diffusion model" grep -q "not a latent diffusion model" "$T/err"
check "no PNG written by a failed run" test ! -e x.png
run 0 "$LDMC" sample --help
for f in model prompt sampler steps cfg eta seed n out save-latents save-samples spacing steps-offset batch threads \
         eval classifier labels; do
  check "sample --help lists --$f" grep -Eq "^  --$f( |$|,)" "$T/out"
done

summary cli_sample
