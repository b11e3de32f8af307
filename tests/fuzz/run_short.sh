#!/usr/bin/env bash
# A short, bounded libFuzzer run of every tests/fuzz/fuzz_*.c target, in its own
# clang-19 build with AddressSanitizer and UBSan. Starts from the saved corpus
# (tests/fuzz/corpus/<name>/, left untouched: new inputs go to a temporary
# folder), uses tests/fuzz/<name>.dict when there is one, and prints the
# executions per target. Any crash, leak or timeout fails the script and keeps
# the reproducer under the temporary folder.
#   LDMC_FUZZ_SECONDS  seconds per target (default 20)
#   LDMC_FUZZ_BUILD    build folder (default build-fuzz)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECONDS_PER_TARGET=${LDMC_FUZZ_SECONDS:-20}
BUILD=${LDMC_FUZZ_BUILD:-$SRC/build-fuzz}
JOBS=${LDMC_FUZZ_JOBS:-2}

shopt -s nullglob
targets=()
for f in "$SRC"/tests/fuzz/fuzz_*.c; do
  n=$(basename "$f" .c)
  targets+=("${n#fuzz_}")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets under tests/fuzz"
  exit 0
fi

CC=${CC_FUZZ:-clang-19}
if ! command -v "$CC" >/dev/null; then
  echo "fuzz: $CC not found (run tools/setup.sh)" >&2
  exit 1
fi

mkdir -p "$BUILD"
echo "fuzz: building ${targets[*]} with $CC (ASan+UBSan+libFuzzer) in $BUILD"
CC=$CC cmake -S "$SRC" -B "$BUILD" -G Ninja -DLDMC_FUZZ=ON -DLDMC_WERROR=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" -j"$JOBS" --target fuzz_all >"$BUILD/build.log" 2>&1 ||
  { tail -n 60 "$BUILD/build.log" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ldmc-fuzz.XXXXXX)
status=0
total=0
n_failed=0
for t in "${targets[@]}"; do
  mkdir -p "$WORK/$t/new"
  extra=()
  [ -f "$SRC/tests/fuzz/$t.dict" ] && extra+=("-dict=$SRC/tests/fuzz/$t.dict")
  corpus=()
  [ -d "$SRC/tests/fuzz/corpus/$t" ] && corpus=("$SRC/tests/fuzz/corpus/$t")
  log="$WORK/$t/log"
  rc=0
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    "$BUILD/bin/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$WORK/$t/" "${extra[@]}" "$WORK/$t/new" "${corpus[@]}" >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | grep -o '[0-9]*' || true)
  new=$(find "$WORK/$t/new" -type f | wc -l)
  if [ $rc -ne 0 ]; then
    echo "fuzz_$t: FAILED (exit $rc) after ${execs:-?} executions; log and reproducer in $WORK/$t" >&2
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -n 20 >&2 || true
    status=1
    n_failed=$((n_failed + 1))
  else
    echo "fuzz_$t: ${execs:-0} executions in ${SECONDS_PER_TARGET}s, coverage ${cov:-?}, $new new inputs, no findings"
    total=$((total + ${execs:-0}))
  fi
done
if [ $status -eq 0 ]; then
  echo "fuzz: ${#targets[@]} targets, $total executions, no findings"
  rm -rf "$WORK"
fi
echo "fuzz: $((${#targets[@]} - n_failed)) passed, $n_failed failed"
exit $status
