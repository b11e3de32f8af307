#!/usr/bin/env bash
# ldmc study:
#  - configuration errors name the key (unknown keys, bad values, malformed JSON);
#  - --dry-run prints the plan and writes nothing;
#  - a tiny study end to end (width 8, a few steps, 64 images): every cell's
#    file, the CSV, the plots and the report; a rerun runs nothing; a removed
#    cell is rerun alone;
#  - the analysis against hand-computed values: the best guidance rate per
#    setting and the crossover cost of two widths' curves (--report on
#    hand-written cells).
source "$(dirname "$0")/lib.bash" || exit 1
VAE="$LDMC_SRC/models/default/ldm.ldmc"
CLS="$LDMC_SRC/models/default/classifier.ldmc"

# --- usage and configuration errors ------------------------------------------------
run 0 "$LDMC" study --help
out_has "--config FILE" "--out DIR" "--dry-run" "--report" "--only KINDS"
run 2 "$LDMC" study --dry-run
err_is_one_line_with "--out DIR"
echo '{"widths": [16], "sampel": {}}' >bad1.json
run 2 "$LDMC" study --config bad1.json --out s --dry-run
err_is_one_line_with "bad1.json" "sampel" "unknown key"
echo '{"widths": [12], "unet": {"groups": 8}}' >bad2.json
run 2 "$LDMC" study --config bad2.json --out s --dry-run
err_is_one_line_with "width 12 is not divisible by unet.groups = 8"
printf '{"widths": [16,\n' >bad3.json
run 2 "$LDMC" study --config bad3.json --out s --dry-run
err_is_one_line_with "bad3.json:2:"
echo '{"sample": {"guidance": [3, 1.5]}}' >bad4.json
run 2 "$LDMC" study --config bad4.json --out s --dry-run
err_is_one_line_with "guidance" "ascending"
echo '{"sample": {"samplers": [{"sampler": "lcm", "steps": [4]}]}}' >bad5.json
run 2 "$LDMC" study --config bad5.json --out s --dry-run
err_is_one_line_with "expected ddim, ddpm or dpmpp2m"
echo '{"sample": {"samplers": [{"sampler": "dpmpp2m", "steps": [8, 25]}]}}' >bad6.json
run 2 "$LDMC" study --config bad6.json --out s --dry-run
err_is_one_line_with "dpmpp2m runs at most 20 steps"
# equal training compute: the steps per width follow the budget
echo '{"widths": [8, 16], "train": {"gflops": 2000}, "distill": false, "superres": false}' >eq.json
run 0 "$LDMC" study --config eq.json --out s --dry-run
check "equal compute: every width's training near the budget" python3 -c "
import re; rows = [l.split() for l in open('$T/out') if l.startswith('train-c')]
g = [float(r[1]) for r in rows]; assert len(g) == 2 and all(2000 <= x < 2000 * 1.05 for x in g), g"
run 2 "$LDMC" study --out s --only train,bogus
err_is_one_line_with "unknown kind 'bogus'"

# --- a tiny study ---------------------------------------------------------------------
cat >tiny.json <<EOF
{"vae": "$VAE", "classifier": "$CLS", "widths": [8], "limit": 64,
 "train": {"steps": 4, "batch": 4, "ckpt_every": 2, "warmup": 1},
 "sample": {"samplers": [{"sampler": "ddim", "steps": [2, 4]}, {"sampler": "dpmpp2m", "steps": [2]}],
            "guidance": [2, 4], "samples": 20, "batch": 10},
 "checkpoints": {"sampler": "ddim", "steps": 2, "guidance": 2},
 "distill": {"steps": 2, "batch": 2, "lcm_steps": [2]},
 "superres": {"steps": 2, "sample_steps": [2, 4]}}
EOF
run 0 "$LDMC" study --config tiny.json --out s --dry-run
out_has "train-c8" "sample-c8-ddim-s2-w*" "sample-c8-dpmpp2m-s2-w*" "ckpt-c8-k2" "ckpt-c8-k4" "distill-c8" \
  "lcm-c8-s2-w*" "srtrain-c8" "sr-c8-ddim-s2" "total"
check "a dry run writes nothing" test ! -e s
run 0 "$LDMC" study --config tiny.json --out s --no-progress
out_has "cells run" "report s/report.md"
for c in train-c8 sample-c8-ddim-s2-w2 sample-c8-ddim-s2-w4 sample-c8-ddim-s4-w2 sample-c8-ddim-s4-w4 \
  sample-c8-dpmpp2m-s2-w2 sample-c8-dpmpp2m-s2-w4 ckpt-c8-k2 ckpt-c8-k4 distill-c8 lcm-c8-s2-w2 lcm-c8-s2-w4 \
  srtrain-c8 sr-c8-ddim-s2 sr-c8-ddim-s4; do
  check "cell $c" test -s "s/cells/$c.json"
done
check "the trained width" test -s s/train/c8/model.ldmc
check "the super-resolution width" test -s s/superres/c8/model.ldmc
check "a super-resolution cell: one pass, a PSNR" python3 -c "
import json; c = json.load(open('s/cells/sr-c8-ddim-s4.json'))
assert c['passes'] == 1 and c['steps'] == 4 and c['psnr'] > 0 and c['fd'] > 0, c"
check "the distilled width" test -s s/distill/c8/model.ldmc
check "a cell's images" test -s s/cells/sample-c8-ddim-s2-w2.safetensors
check "study.csv: a row per sampling cell" test "$(wc -l <s/study.csv)" -eq $((1 + 6 + 2 + 2 + 2))
check "a sample cell's FD is a positive number" python3 -c "
import json; c = json.load(open('s/cells/sample-c8-ddim-s4-w2.json'))
assert c['fd'] > 0 and c['samples'] == 20 and c['steps'] == 4 and c['passes'] == 2, c
assert abs(c['cost'] - c['norm_per_pass'] * 2 * 4) < 1e-12, c"
check "an lcm cell counts one pass" python3 -c "
import json; c = json.load(open('s/cells/lcm-c8-s2-w4.json')); assert c['passes'] == 1 and c['steps'] == 2, c"
for p in quality_vs_training cost_ddim cost_dpmpp2m guidance_ddim distilled superres seconds_ddim; do
  check "plot $p" test -s "s/plots/$p.png" -a -s "s/plots/$p.svg"
done
check "the equal-cost grid" test -s s/plots/grid_equal_cost.png
check "the report's sections" grep -q "## (v) Distilled models" s/report.md
check "the report's time split" grep -q "## Where the time went" s/report.md
# a rerun runs nothing; a removed cell runs again, alone
cp s/cells/sample-c8-ddim-s2-w2.json keep.json
run 0 "$LDMC" study --config tiny.json --out s --no-progress
out_has "study s: 0 cells run"
check "a finished cell is kept" cmp -s keep.json s/cells/sample-c8-ddim-s2-w2.json
rm s/cells/ckpt-c8-k2.json
run 0 "$LDMC" study --config tiny.json --out s --no-progress
out_has "study s: 1 cells run"
check "the removed cell is back" test -s s/cells/ckpt-c8-k2.json
echo '{"kind": "sample", "width": 8, "fd": ' >s/cells/sample-c8-zz.json # a truncated cell file is skipped
run 0 "$LDMC" study --config tiny.json --out s --report
out_has "wrote s/report.md"

# --- the analysis against hand-computed values -----------------------------------------
# width 8: cost 1, 2, 4 -> FD 10, 8, 7; width 16: cost 2, 4, 8 -> FD 9, 6, 5 (the best rates);
# every setting also has a worse rate. Log-linear between points, the curves cross where
# 8 - t = 9 - 3t on [2, 4] (t = 0.5): cost 2^1.5 = 2.83.
mkdir -p h/cells
cell() { # width steps rate fd cost
  printf '{"kind": "sample", "width": %d, "sampler": "ddim", "steps": %d, "guidance": %s, "fd": %s, "cost": %s, "samples": 20, "seconds_per_image": 0.01}\n' \
    "$1" "$2" "$3" "$4" "$5" >"h/cells/sample-c$1-ddim-s$2-w$3.json"
}
cell 8 2 3 10 1; cell 8 2 5 12 1; cell 8 4 3 9 2; cell 8 4 5 8 2; cell 8 8 3 7 4; cell 8 8 5 7.5 4
cell 16 2 3 9 2; cell 16 2 5 9.5 2; cell 16 4 3 6 4; cell 16 4 5 6.5 4; cell 16 8 3 5.5 8; cell 16 8 5 5 8
cat >h.json <<EOF
{"vae": "$VAE", "classifier": "$CLS", "widths": [8, 16], "sample": {"samplers": [{"sampler": "ddim", "steps": [2, 4, 8]}],
 "guidance": [3, 5]}, "distill": false, "superres": false}
EOF
run 0 "$LDMC" study --config h.json --out h --report
check "best.csv: the best rate per setting" diff <(cut -d, -f1-5 h/best.csv) - <<EOF
width,sampler,steps,best_guidance,fd
8,ddim,2,3,10
8,ddim,4,5,8
8,ddim,8,3,7
16,ddim,2,3,9
16,ddim,4,3,6
16,ddim,8,5,5
EOF
check "the crossover at cost 2.83" grep -q -- "- cost 1 to 2.83: c=8" h/report.md
check "the wide model above it" grep -q -- "- cost 2.83 to 8: c=16" h/report.md
# equal cost: c=8 at cost 2 (FD 8) beats c=16 there (9); at cost 4 (7 against 6) it loses
check "the equal-cost verdict" grep -q "Verdict: the equal-cost comparisons split evenly (the narrower model has the lower FD in 1 of 2" h/report.md
summary cli_study
