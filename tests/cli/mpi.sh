#!/usr/bin/env bash
# Data parallelism under Open MPI (docs/distributed.md), 2 ranks on this machine:
#  - `ldmc version` says MPI is in;
#  - mpirun -np 2 ldmc train matches one process with the same global batch
#    and seed (losses and every parameter within 1e-5 relative);
#  - logs, progress and checkpoints come from rank 0 only;
#  - --resume across a change of rank count (2 -> 1 and 1 -> 2) matches an
#    uninterrupted run;
#  - distillation under 2 ranks matches one process;
#  - sharded sampling gives the same images as one process;
#  - a rank that is killed or stops answering ends the job with a message,
#    well within the stated timeout, and leaves the last checkpoint readable;
#  - a batch that does not split over the ranks is a usage error.
source "$(dirname "$0")/lib.bash" || exit 1
if ! "$LDMC" version | grep -q '^mpi Open MPI'; then
  echo "mpi: this ldmc was built without MPI (install libopenmpi-dev): nothing to test"
  "$LDMC" version | grep -q '^mpi no' && { summary mpi; exit $?; }
  fail "ldmc version has no mpi line"
  summary mpi
  exit 1
fi
command -v mpirun >/dev/null || { fail "ldmc has MPI but mpirun is missing (openmpi-bin)"; summary mpi; exit 1; }
MPI=(mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS=1)
[ -n "${LDMC_CACHE_DIR:-}" ] && MPI+=(-x LDMC_CACHE_DIR)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
# A sanitizer build still checks memory errors and UB under mpirun, but not
# leaks there: Open MPI's own allocations kept until exit come from libraries
# without frame pointers and from unloaded components, which LeakSanitizer
# cannot attribute or suppress (ldmc's own paths are leak-checked in the
# single-process runs here and in test_data_parallel).
"$LDMC" version | grep -q AddressSanitizer && MPI+=(-x "ASAN_OPTIONS=${ASAN_OPTIONS}:detect_leaks=0")
export OMP_NUM_THREADS=1
PY=/usr/bin/python3
CMP="$PY $LDMC_SRC/tests/cli/compare_tensors.py"
same_model() { # same_model A.ldmc B.ldmc RTOL [ATOL]
  "$LDMC" convert "$1" "$T/a.safetensors" >/dev/null 2>&1 && "$LDMC" convert "$2" "$T/b.safetensors" >/dev/null 2>&1 &&
    $CMP "$T/a.safetensors" "$T/b.safetensors" "$3" "${4:-0}" >"$T/cmp" 2>&1 || { cat "$T/cmp" >&2; false; }
}
same_losses() { # same_losses A/log.csv B/log.csv TOL: step, loss and grad_norm columns agree
  $PY - "$1" "$2" "$3" <<'PYEOF'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
tol = float(sys.argv[3])
ok = len(a) == len(b) and len(a) > 0
for x, y in zip(a, b):
    for k in ('loss', 'grad_norm'):
        if x['step'] != y['step'] or abs(float(x[k]) - float(y[k])) > tol * max(1.0, abs(float(x[k]))):
            print('step', x['step'], k, x[k], y[k]); ok = False
sys.exit(0 if ok else 1)
PYEOF
}

run 0 "$LDMC" version
out_has "mpi Open MPI"

CLS0=(--model classifier --limit 256 --widths 8,16 --features 16 --warmup 2 --threads 1 --no-progress
     --log-every 1 --val-every 5)
CLS=("${CLS0[@]}" --batch 16)

# --- 2 ranks = 1 process ------------------------------------------------------------
run 0 "$LDMC" train "${CLS[@]}" --steps 10 --ckpt-every 5 --out one
run 0 "${MPI[@]}" "$LDMC" train "${CLS[@]}" --steps 10 --ckpt-every 5 --out two
out_has "trained classifier: steps 1..10" "model: two/model.ldmc"
check "2 ranks: the same parameters as 1 process (1e-5)" same_model one/model.ldmc two/model.ldmc 1e-5
check "2 ranks: the same losses, gradient norms and validation" same_losses one/log.csv two/log.csv 1e-5
check "rank 0 alone reports (one 'compiling' line)" test "$(grep -c compiling "$T/err")" -eq 1
check "rank 0 alone reports (one result line)" test "$(grep -c 'trained classifier' "$T/out")" -eq 1
check "the all-reduce figures are reported" grep -q "all-reduce: 2 ranks" "$T/err"
check "checkpoints as one process writes them" test "$(ls two/ckpt-*.ldmc | wc -l)" -eq 2

# --- resume across a change of rank count ------------------------------------------------
run 0 "${MPI[@]}" "$LDMC" train "${CLS[@]}" --steps 10 --ckpt-every 5 --stop-after 5 --out r21
out_has "stopped after step 5 of 10"
run 0 "$LDMC" train "${CLS[@]}" --steps 10 --ckpt-every 5 --resume --out r21
out_has "trained classifier: steps 6..10"
check "2 ranks then 1: the uninterrupted run's parameters" same_model one/model.ldmc r21/model.ldmc 1e-5
run 0 "$LDMC" train "${CLS[@]}" --steps 10 --ckpt-every 5 --stop-after 5 --out r12
run 0 "${MPI[@]}" "$LDMC" train "${CLS[@]}" --steps 10 --ckpt-every 5 --resume --out r12
out_has "trained classifier: steps 6..10"
check "1 rank then 2: the uninterrupted run's parameters" same_model one/model.ldmc r12/model.ldmc 1e-5
check "1 rank then 2: the same losses" same_losses one/log.csv r12/log.csv 1e-5

# --- distillation ------------------------------------------------------------------------
TEACHER="$LDMC_SRC/models/default/ldm.ldmc"
DIS=(--teacher "$TEACHER" --lr 1e-4 --batch 4 --limit 32 --val-batches 1 --warmup 1 --threads 1 --no-progress --log-every 1
     --steps 2 --val-every 2)
run 0 "$LDMC" distill "${DIS[@]}" --out d1
run 0 "${MPI[@]}" "$LDMC" distill "${DIS[@]}" --out d2
out_has "distilled: steps 1..2"
# Adam divides each gradient element by its own RMS: a rounding difference in a
# near-zero gradient may move a parameter by up to lr per step, so beside the
# relative 1e-5 an absolute 5% of lr x steps (1e-4 x 2) is allowed
check "distillation, 2 ranks: the same parameters as 1 process (1e-5, 1e-5 absolute)" same_model d1/model.ldmc d2/model.ldmc 1e-5 1e-5
check "distillation, 2 ranks: the same losses and validation" same_losses d1/log.csv d2/log.csv 1e-5

# --- sharded sampling and evaluation ------------------------------------------------------
SMP=(--prompt sneaker --prompt bag --n 3 --batch 2 --steps 4 --threads 1 --no-progress)
run 0 "$LDMC" sample "${SMP[@]}" --save-samples s1.safetensors --out s1.png --eval
cp "$T/out" s1.out
run 0 "${MPI[@]}" "$LDMC" sample "${SMP[@]}" --save-samples s2.safetensors --out s2.png --eval
check "sharded sampling: the same grid, byte for byte" cmp -s s1.png s2.png
check "sharded sampling: the same images, byte for byte" cmp -s s1.safetensors s2.safetensors
check "sharded --eval: the same FD, KID and accuracy" diff <(grep -E "^(FD|KID|class)" s1.out) <(grep -E "^(FD|KID|class)" "$T/out")
check "rank 0 alone writes the report" test "$(grep -c '^FD:' "$T/out")" -eq 1
run 0 "${MPI[@]}" "$LDMC" eval s1.safetensors --threads 1
check "ldmc eval under 2 ranks: the same figures" diff <(grep -E "^(FD|KID|class)" s1.out) <(grep -E "^(FD|KID|class)" "$T/out")

# --- usage errors ------------------------------------------------------------------------
run 2 "${MPI[@]}" "$LDMC" train "${CLS0[@]}" --batch 15 --steps 2 --out odd
check "an uneven batch is named once (by rank 0)" test "$(grep -c -- "ldmc train: --batch 15 does not split evenly over 2 ranks" "$T/err")" -eq 1

# --- a rank that dies or hangs -----------------------------------------------------------
long() { "${MPI[@]}" -x LDMC_DIST_TIMEOUT "$LDMC" train "${CLS[@]}" --steps 100000 --ckpt-every 20 --out "$1"; }
rank1_pid() { pgrep -f "ldmc train .*--out $1" | while read -r p; do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && echo "$p"; done | head -1; }
wait_ckpt() { for _ in $(seq 1 600); do [ -e "$1/ckpt-0000000020.ldmc" ] && return 0; sleep 0.1; done; return 1; }

LDMC_DIST_TIMEOUT=600 long killed >"$T/k.out" 2>"$T/k.err" &
job=$!
wait_ckpt killed
p1=$(rank1_pid killed)
t0=$(date +%s)
[ -n "$p1" ] && kill -9 "$p1"
wait "$job"
rc=$?
t1=$(date +%s)
check "a killed rank fails the job (exit $rc)" test "$rc" -ne 0
check "a killed rank ends the job within 60 s ($((t1 - t0)) s)" test $((t1 - t0)) -le 60
check "the killed rank is named" grep -qiE "rank 1|process rank 1|exited on signal" "$T/k.err"
run 0 "$LDMC" inspect killed/ckpt-0000000020.ldmc
out_has "step: 20"

LDMC_DIST_TIMEOUT=3 long hung >"$T/h.out" 2>"$T/h.err" &
job=$!
wait_ckpt hung
p1=$(rank1_pid hung)
t0=$(date +%s)
[ -n "$p1" ] && kill -STOP "$p1"
wait "$job"
rc=$?
t1=$(date +%s)
[ -n "$p1" ] && kill -9 "$p1" 2>/dev/null
check "a rank that stops answering fails the job (exit $rc)" test "$rc" -ne 0
check "... after the 3 s timeout, not a hang ($((t1 - t0)) s)" test $((t1 - t0)) -le 60
check "... with a message naming the timeout" grep -q "did not complete within 3 s" "$T/h.err"

summary mpi
