#!/usr/bin/env bash
# ldmc distill on the shipped default model with a tiny batch and data subset,
# and ldmc sample/schedule --sampler lcm:
#  - exact resume: 4 steps in one run and 2 + 2 (--stop-after, --resume) give
#    byte-identical models and logged losses;
#  - SIGINT: a checkpoint of the step it reached, exit status 130;
#  - the distilled file is a model for `ldmc sample --sampler lcm` (and only
#    for it), with the guidance embedding and the teacher's prompt encoder and
#    autoencoder; the teacher's weights are not in it;
#  - the LCM schedule command prints diffusers' timesteps;
#  - usage errors: one clear line.
source "$(dirname "$0")/lib.bash" || exit 1
TEACHER="$LDMC_SRC/models/default/ldm.ldmc"
D0=(--teacher "$TEACHER" --batch 2 --limit 32 --val-batches 1 --warmup 1 --threads 2 --no-progress --log-every 1)
D=("${D0[@]}" --val-every 4)

# --- exact resume ------------------------------------------------------------------
run 0 "$LDMC" distill "${D[@]}" --steps 4 --ckpt-every 2 --out a
out_has "distilled: steps 1..4" "model: a/model.ldmc"
run 0 "$LDMC" distill "${D[@]}" --steps 4 --ckpt-every 2 --stop-after 2 --out b
out_has "stopped after step 2 of 4"
check "a stopped run leaves no model file" test ! -e b/model.ldmc
run 0 "$LDMC" distill "${D[@]}" --steps 4 --ckpt-every 2 --resume --out b
out_has "distilled: steps 3..4"
check "resumed model is byte-identical" cmp -s a/model.ldmc b/model.ldmc
check "logged losses agree" diff <(cut -d, -f1-4 a/log.csv) <(cut -d, -f1-4 b/log.csv)
run 0 "$LDMC" inspect a/model.ldmc
out_has "model = ldm" "unet.guidance_embed_dim = 128" "distill.method = lcm" "time_embedding.cond_proj.weight" \
  "text_model.embeddings.token_embedding.weight" "vae.decoder.conv_out.weight" "step: 4"
check "the teacher's weights are not in the distilled model" bash -c "! grep -q 'teacher\.' '$T/out'"

# --- sampling the distilled model ------------------------------------------------------
run 0 "$LDMC" sample --model a/model.ldmc --sampler lcm --steps 2 --cfg 4 --prompt bag --n 2 --no-progress -o s.png
out_has "lcm 2 steps" "x 1 pass x 2 steps"
check "the grid is written" test -s s.png
run 2 "$LDMC" sample --model a/model.ldmc --prompt bag --n 1 -o t.png
err_is_one_line_with "distilled" "--sampler lcm"
run 2 "$LDMC" sample --model "$TEACHER" --sampler lcm --prompt bag --n 1 -o t.png
err_is_one_line_with "needs a distilled model"
run 2 "$LDMC" sample --model a/model.ldmc --sampler lcm --steps 60 --prompt bag --n 1 -o t.png
err_is_one_line_with "more than the 50 solver steps"
run 0 "$LDMC" sample --sampler lcm --steps 2 --prompt sneaker --n 2 --no-progress -o d.png
out_has "lcm 2 steps"
check "without --model, --sampler lcm samples the shipped distilled model" test -s d.png
run 0 "$LDMC" schedule --sampler lcm --steps 4
check "lcm 4 steps: 999 759 499 259 (diffusers' LCMScheduler)" \
  test "$(tail -n +2 "$T/out" | cut -d, -f2 | tr '\n' ' ')" = "999 759 499 259 "

# --- SIGINT ---------------------------------------------------------------------------
"$LDMC" distill "${D0[@]}" --steps 100000 --ckpt-every 0 --val-every 0 --out i >/dev/null 2>"$T/sigint.err" &
pid=$!
for _ in $(seq 1 900); do
  grep -q "step 2/" "$T/sigint.err" 2>/dev/null && break
  sleep 0.1
done
kill -INT "$pid"
wait "$pid"
rc=$?
check "SIGINT exits with 130 (got $rc)" test "$rc" -eq 130
check "SIGINT wrote a checkpoint" bash -c 'ls i/ckpt-*.ldmc >/dev/null 2>&1'

# --- errors ------------------------------------------------------------------------------
run 2 "$LDMC" distill --steps 3
err_is_one_line_with "--out DIR is required"
run 2 "$LDMC" distill --out x
err_is_one_line_with "--steps N is required"
run 2 "$LDMC" distill --out x --steps 3 --loss l1
err_is_one_line_with "--loss" "l2, huber"
run 2 "$LDMC" distill --out x --steps 3 --cfg-min 6 --cfg-max 3
err_is_one_line_with "--cfg-max"
run 2 "$LDMC" distill --out x --steps 3 --solver-steps 33
err_is_one_line_with "33 solver steps must divide"
run 1 "$LDMC" distill --out x --steps 3 --teacher a/model.ldmc
err_is_one_line_with "distilled"
run 1 "$LDMC" distill --out x --steps 3 --teacher nothing.ldmc
err_is_one_line_with "nothing.ldmc"
check "no output folder after errors" test ! -e x
run 0 "$LDMC" distill --help
for f in teacher out steps batch lr warmup ema cfg-min cfg-max loss huber-c solver-steps guidance-dim seed threads \
         resume ckpt-every keep limit stop-after export-dtype; do
  check "distill --help lists --$f" grep -Eq "^  --$f( |$)" "$T/out"
done

summary cli_distill
