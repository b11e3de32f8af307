#!/usr/bin/env bash
# ldmc eval end to end on a tiny classifier trained here (40 steps, ~40% accurate):
#  - FD, KID and class accuracy of noisy, partly relabelled Fashion-MNIST
#    images against a reference file agree with an independent computation:
#    the classifier's features in PyTorch (tests/torch/classifier_ref.py,
#    float64) and the figures in numpy/scipy (tests/python/metrics_ref.py);
#    skipped, with a message, without torch or scipy;
#  - the Fashion-MNIST reference with --limit, interp against llvm-cpu, a
#    set against itself (FD 0), the too-small warnings and refusals;
#  - the default classifier missing, bad files and bad flags: one line each.
source "$(dirname "$0")/lib.bash" || exit 1
PY=/usr/bin/python3
REF="$PY $LDMC_SRC/tests/python/metrics_ref.py"
json_get() { $PY -c 'import json, sys; v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$@"; }

if ! $PY -c 'import numpy' 2>/dev/null; then
  echo "SKIP eval.sh: /usr/bin/python3 cannot import numpy (apt install python3-numpy)"
  summary eval
fi

run 0 "$LDMC" train --model classifier --steps 40 --limit 640 --lr 3e-3 --widths 8,16 --features 16 --batch 32 --warmup 1 \
  --threads 2 --no-progress --val-every 0 --out cls
check "the tiny classifier exists" test -s cls/model.ldmc
$REF --make-samples s.safetensors --split train --count 300 --noise 0.2 --relabel 0.2 --seed 1
$REF --make-samples r.safetensors --split t10k --count 400
check "sample files written" test -s s.safetensors -a -s r.safetensors

# --- against numpy/scipy (and torch for the features) ---------------------------
EV0=(--classifier cls/model.ldmc --threads 2 --kid-subsets 10 --seed 3)
EV=("${EV0[@]}" --kid-subset-size 200)
run 0 "$LDMC" eval s.safetensors "${EV[@]}" --reference r.safetensors --json m.json
out_has "samples:    s.safetensors, 300 images" "reference:  r.safetensors, 400 images" \
  "(widths 8,16, 16 features, 10 classes), on llvm-cpu" "FD:  " "(300 samples vs 400 reference, 16 features)" \
  "KID: " "(10 subsets of 200; 300 samples vs 400 reference)" "class accuracy: " "of 300 samples)" \
  "ankle boot" "reference accuracy: " "of 400 reference images)"
check "--json written" test -s m.json
check "json: 300 samples for FD" test "$(json_get m.json fd.n_samples)" = 300
check "json: per class counts sum to 300" test "$($PY -c 'import json; print(sum(c["count"] for c in json.load(open("m.json"))["class_accuracy"]["per_class"]))')" = 300
if $PY -c 'import torch, scipy.linalg' 2>/dev/null; then
  run 0 "$LDMC" convert cls/model.ldmc cls.safetensors
  CFG='{"widths": [8, 16], "features": 16}'
  run 0 $PY "$LDMC_SRC/tests/torch/classifier_ref.py" --config "$CFG" --weights cls.safetensors --inputs s.safetensors --out fs.safetensors
  run 0 $PY "$LDMC_SRC/tests/torch/classifier_ref.py" --config "$CFG" --weights cls.safetensors --inputs r.safetensors --out fr.safetensors
  run 0 $REF --check-json m.json --samples fs.safetensors --reference fr.safetensors --labels s.safetensors \
    --reference-labels r.safetensors --kid-subsets 10 --kid-subset-size 200 --seed 3
  cat "$T/out"
  out_has "metrics_ref: all figures agree"
else
  echo "SKIP the numpy/scipy comparison: /usr/bin/python3 cannot import torch and scipy"
fi

# --- Fashion-MNIST reference, interp, a set against itself ---------------------------
run 0 "$LDMC" eval s.safetensors "${EV0[@]}" --limit 200 --kid-subset-size 100 --json t.json
out_has "reference:  Fashion-MNIST test, 200 images" "(200 samples vs 200 reference, 16 features)" "(10 subsets of 100;"
run 0 "$LDMC" eval s.safetensors "${EV0[@]}" --reference train --limit 50 --kid-subset-size 50
out_has "reference:  Fashion-MNIST train, 50 images"
run 0 "$LDMC" eval s.safetensors "${EV0[@]}" --limit 200 --kid-subset-size 100 --target interp --batch 64 --json i.json
out_has "on interp"
check "interp and llvm-cpu give the same FD" $PY -c 'import json, sys; a, b = (json.load(open(f))["fd"]["value"] for f in ("t.json", "i.json")); sys.exit(abs(a - b) > 1e-4 * max(1, abs(a)))'
check "interp and llvm-cpu give the same KID" $PY -c 'import json, sys; a, b = (json.load(open(f))["kid"]["mean"] for f in ("t.json", "i.json")); sys.exit(abs(a - b) > 1e-3 * max(1e-3, abs(a)))'
check "interp and llvm-cpu give the same accuracy" test "$(json_get t.json class_accuracy.correct)" = "$(json_get i.json class_accuracy.correct)"
run 0 "$LDMC" eval s.safetensors "${EV[@]}" --reference s.safetensors --json self.json
check "FD of a set with itself is ~0" $PY -c 'import json, sys; sys.exit(not abs(json.load(open("self.json"))["fd"]["value"]) < 1e-6)'

# --- small sets: warnings, clipping, refusals --------------------------------------
run 0 "$LDMC" eval s.safetensors "${EV[@]}" --limit 10
check "warns that 10 samples <= 16 features" grep -q "warning: FD from 10 samples .* rank-deficient" "$T/err"
check "notes the clipped KID subset" grep -q "KID subset size 200 clipped to 10" "$T/err"
out_has "(10 subsets of 10;"
run 1 "$LDMC" eval s.safetensors "${EV[@]}" --limit 1
err_is_one_line_with "ldmc eval: FD and KID need at least 2 images per set: s.safetensors has 1"

# --- no classifier, bad files ---------------------------------------------------------
LDMC_DEFAULT_CLASSIFIER=/nonexistent/classifier.ldmc run 1 "$LDMC" eval s.safetensors
err_is_one_line_with "no classifier: pass --classifier or train one with ldmc train --model classifier" \
  "/nonexistent/classifier.ldmc"
if [ ! -e "$LDMC_SRC/models/default/classifier.ldmc" ]; then
  run 1 "$LDMC" eval s.safetensors
  err_is_one_line_with "no classifier: pass --classifier" "models/default/classifier.ldmc"
fi
run 1 "$LDMC" eval missing.safetensors --classifier cls/model.ldmc
err_is_one_line_with "missing.safetensors"
echo "not a tensor file" >text.safetensors
run 1 "$LDMC" eval text.safetensors --classifier cls/model.ldmc
err_is_one_line_with "text.safetensors"
$ST write noimg.safetensors labels I64 2 1,2
run 1 "$LDMC" eval noimg.safetensors --classifier cls/model.ldmc
err_is_one_line_with "noimg.safetensors" "no tensor 'images'"
$ST write small.safetensors images F32 1,1,2,2 0,0,0,0
run 1 "$LDMC" eval small.safetensors --classifier cls/model.ldmc
err_is_one_line_with "small.safetensors" "[1,1,2,2]" "[N,1,32,32]"
run 1 "$LDMC" eval s.safetensors --classifier s.safetensors
err_is_one_line_with "s.safetensors"
head -c 300 cls/model.ldmc >trunc.ldmc
run 1 "$LDMC" eval s.safetensors --classifier trunc.ldmc
err_is_one_line_with "trunc.ldmc"
run 1 "$LDMC" eval s.safetensors --classifier cls/model.ldmc --reference nope.safetensors
err_is_one_line_with "nope.safetensors"
run 1 "$LDMC" eval s.safetensors --classifier cls/model.ldmc --data /nonexistent/fmnist --limit 20
err_is_one_line_with "/nonexistent/fmnist"
run 1 "$LDMC" eval s.safetensors "${EV[@]}" --limit 20 --json /nonexistent/dir/m.json
err_is_one_line_with "/nonexistent/dir/m.json" "folder /nonexistent/dir does not exist"

# --- bad flags -------------------------------------------------------------------------
run 2 "$LDMC" eval
err_is_one_line_with "ldmc eval: missing argument"
run 2 "$LDMC" eval a.safetensors b.safetensors
err_is_one_line_with "unexpected argument 'b.safetensors'"
for bad in "--kid-subsets 0" "--kid-subset-size 1" "--limit 0" "--limit abc" "--seed -1" "--threads 0" "--batch 0"; do
  run 2 "$LDMC" eval s.safetensors --classifier cls/model.ldmc $bad
  err_is_one_line_with "ldmc eval:" "'${bad%% *}'"
done
run 2 "$LDMC" eval s.safetensors --classifier cls/model.ldmc --json m.txt
err_is_one_line_with "m.txt" ".json"
run 2 "$LDMC" eval s.safetensors --classifier cls/model.ldmc --target nosuch
err_is_one_line_with "nosuch"
run 1 "$LDMC" eval s.safetensors --classifier cls/model.ldmc --target tpusim
err_is_one_line_with "tpusim" "convolution" "no lowering"
run 2 "$LDMC" eval s.safetensors --reference=
err_is_one_line_with "--reference"
run 0 "$LDMC" eval --help
for f in classifier reference limit kid-subsets kid-subset-size seed threads target json batch data; do
  check "--help explains --$f" grep -q -- "^  --$f " "$T/out"
done

summary eval
