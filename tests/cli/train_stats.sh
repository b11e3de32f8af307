#!/bin/bash
# ldmc stats / compile --model unet --train: the training step's FLOP split
# against the inference figures (forward = `ldmc stats` of the forward pass
# plus the loss, exactly; backward a sane multiple of it), parameters and state
# bytes against the weight count, the kernel count printed against the plan's
# kernel listing, and the flags' usage errors.
source "$(dirname "$0")/lib.bash"

M=(--model unet --latent 8x8x4 --context 64x8 --batch 2)
N=$((2 * 4 * 8 * 8)) # elements of the loss: batch x latent

run 0 "$LDMC" stats "${M[@]}" --channels 32,64 --format json
cp "$T/out" inf.json
run 0 "$LDMC" stats "${M[@]}" --channels 32,64 --train --format json
cp "$T/out" train.json
run 0 "$LDMC" stats "${M[@]}" --channels 32 --train --ema 0.999 --clip 1 --format json
cp "$T/out" ema.json

# forward of the step = the inference graph's FLOPs + the loss: sub, square and
# sum over the N elements (N each) and the 1/N scale (1); the backward between
# 1.8x and 2.3x the forward (~2x for a conv net: dX and dW per product; less
# for products with data operands, more where attention recomputes);
# state = weights + 2 Adam moments (+ EMA), f32.
check "FLOP split and state vs inference" /usr/bin/python3 - "$N" inf.json train.json ema.json <<'PY'
import json, sys
n = int(sys.argv[1])
inf = {w["channels"]: w for w in json.load(open(sys.argv[2]))["widths"]}
tr = json.load(open(sys.argv[3]))
ema = json.load(open(sys.argv[4]))
assert tr["train"] is True and tr["ema_decay"] == 0 and tr["clip_norm"] == 0, tr
ok = True
for w in tr["widths"]:
    c, ph = w["channels"], w["phases"]
    i = inf[c]
    mac, other = round(i["gflops_per_step"] * 1e9), round(i["other_gflops"] * 1e9)
    f, b, o = ph["forward"], ph["backward"], ph["optimizer"]
    want_other = other + 3 * n + 1
    if f["mac_flops"] != mac or f["other_flops"] != want_other:
        print(f"c={c}: forward {f['mac_flops']} + {f['other_flops']}, want {mac} + {want_other}"); ok = False
    ratio = (b["mac_flops"] + b["other_flops"]) / (f["mac_flops"] + f["other_flops"])
    if not (1.8 <= ratio <= 2.3) or abs(ratio - w["backward_forward_ratio"]) > 1e-6:
        print(f"c={c}: backward / forward {ratio} ({w['backward_forward_ratio']} printed)"); ok = False
    if o["mac_flops"] != 0 or not (5 * i["params"] <= o["other_flops"] <= 40 * i["params"]):
        print(f"c={c}: optimizer {o} for {i['params']} weights"); ok = False
    if w["params"] != i["params"] or w["param_tensors"] != i["param_tensors"]:
        print(f"c={c}: trained {w['params']} in {w['param_tensors']}, weights {i['params']} in {i['param_tensors']}"); ok = False
    if w["state_bytes"] != 12 * i["params"] or w["moment_bytes"] != 8 * i["params"] or w["ema_bytes"] != 0:
        print(f"c={c}: state {w['state_bytes']} for {i['params']} weights"); ok = False
    if not 0 < w["planned_peak_bytes"] < w["state_bytes"]:  # planned with the state donated: not in the arena
        print(f"c={c}: planned peak {w['planned_peak_bytes']}, state {w['state_bytes']}"); ok = False
    print(f"c={c}: forward {f['mac_flops']} + {f['other_flops']} FLOPs (= inference + loss), backward {ratio:.3f}x, "
          f"optimizer {o['other_flops']}")
e = ema["widths"][0]
if ema["ema_decay"] != 0.999 or ema["clip_norm"] != 1 or e["state_bytes"] != 16 * inf[32]["params"]:
    print(f"--ema: state {e['state_bytes']}, ema {ema['ema_decay']}, clip {ema['clip_norm']}"); ok = False
# clipping and EMA are optimizer work only: forward and backward unchanged
t32 = tr["widths"][0]["phases"]
for p in ("forward", "backward"):
    if e["phases"][p] != t32[p]:
        print(f"--ema --clip changed the {p} phase"); ok = False
if not e["phases"]["optimizer"]["other_flops"] > t32["optimizer"]["other_flops"]:
    print("--ema --clip added no optimizer FLOPs"); ok = False
sys.exit(0 if ok else 1)
PY

# the kernel count: stats, compile's summary and compile's kernel list agree
kst=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["widths"][0]["kernels"])' train.json)
run 0 "$LDMC" compile "${M[@]}" --channels 32 --train --threads 2 --kernels
kc=$(sed -n 's/^kernels after fusion: //p' "$T/out")
kl=$(grep -cE '^k[0-9]+ ' "$T/out")
kp=$(sed -n 's/^plan: \([0-9]*\) kernels.*/\1/p' "$T/out")
check "kernels: stats $kst, compile $kc, plan $kp, listed $kl" test -n "$kc" -a "$kc" = "$kst" -a "$kc" = "$kl" -a "$kc" = "$kp"
p32=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["widths"][0]["params"])' inf.json)
out_has "training step: AdamW" "trained parameters: $p32 in 686 tensors" "state between steps: $((12 * p32)) bytes"
out_has "graph unet.train_step on target llvm-cpu"
check "compile --train prints the three phases" grep -qE '^  backward .* GFLOP .*x forward' "$T/out"

run 0 "$LDMC" stats "${M[@]}" --channels 32 --train --ema 0.9999 --format csv
check "csv header" grep -q '^channels,params,forward_gflops,backward_gflops,optimizer_gflops,backward_forward_ratio,' "$T/out"
check "csv row" grep -qE "^32,$p32," "$T/out"
run 0 "$LDMC" stats "${M[@]}" --channels 32 --train --breakdown
out_has "bwd GFLOP" "by block:" "grad" "optim"

# help explains every flag
for cmd in compile stats; do
  run 0 "$LDMC" "$cmd" --help
  out_has "--train" "--ema DECAY" "--clip NORM"
done

# usage errors: one line, exit 2
run 2 "$LDMC" stats "${M[@]}" --channels 32 --ema 0.9
err_is_one_line_with "flag '--ema' needs --train"
run 2 "$LDMC" compile "${M[@]}" --channels 32 --clip 1
err_is_one_line_with "flag '--clip' needs --train"
run 2 "$LDMC" stats "${M[@]}" --channels 32 --train --ema 1.5
err_is_one_line_with "flag '--ema' expects a number in (0, 1)" "1.5"
run 2 "$LDMC" compile "${M[@]}" --channels 32 --train --clip -1
err_is_one_line_with "flag '--clip' expects a number > 0" "-1"
run 2 "$LDMC" compile "${M[@]}" --channels 32 --train --clip abc
err_is_one_line_with "flag '--clip' expects a number"
run 2 "$LDMC" stats "${M[@]}" --channels 32 --train --reference 64
err_is_one_line_with "--reference" "does not apply with --train"
run 2 "$LDMC" compile "${M[@]}" --channels 32 --train --activation-params 4
err_is_one_line_with "--activation-params does not apply with --train"
printf 'graph g {\n}\n' >g.txt
run 2 "$LDMC" compile g.txt --train
err_is_one_line_with "flag '--train' needs --model"

summary train_stats
