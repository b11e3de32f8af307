# Shared helpers of the driver tests (tests/cli/*.sh); sourced, not a test itself.
# Each test runs ldmc from $LDMC_BIN in a temporary folder, counts checks and
# ends with "NAME: N passed, M failed" like the C tests.
set -uo pipefail
: "${LDMC_BIN:?set LDMC_BIN to the bin folder of a build}"
: "${LDMC_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
LDMC="$LDMC_BIN/ldmc"
[ -x "$LDMC" ] || { echo "${0##*/}: $LDMC is not built" >&2; exit 1; }
T=$(mktemp -d /tmp/ldmc-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
ST="python3 $LDMC_SRC/tests/cli/st.py"

# Sanitizer builds (-DLDMC_SANITIZE=ON; harmless otherwise): a sanitizer report
# exits 86 (ASan, LSan) or 87 (UBSan), never 1 or 2, so a test expecting an
# error exit cannot mistake a report for the error it wanted. run() also fails
# on 86/87 and on a report in stderr, whatever exit status it expected.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}exitcode=86"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:exitcode=87:print_stacktrace=1"
LDMC_SANITIZER_EXIT_ASAN=86
LDMC_SANITIZER_EXIT_UBSAN=87
n_pass=0
n_fail=0

pass() { n_pass=$((n_pass + 1)); }
fail() {
  n_fail=$((n_fail + 1))
  local n=${#BASH_SOURCE[@]} # report the line of the test script, not of these helpers
  echo "FAIL ${BASH_SOURCE[n - 1]##*/}:${BASH_LINENO[n - 2]}: $*" >&2
}
check() { # check DESCRIPTION COMMAND... : passes when COMMAND succeeds
  local what=$1
  shift
  if "$@"; then pass; else fail "$what"; fi
}

# run WANT_RC CMD...: runs CMD with stdout in $T/out, stderr in $T/err and checks its exit status.
run() {
  local want=$1
  shift
  "$@" >"$T/out" 2>"$T/err"
  rc=$?
  if [ "$rc" -eq "$LDMC_SANITIZER_EXIT_ASAN" ] || [ "$rc" -eq "$LDMC_SANITIZER_EXIT_UBSAN" ] || sanitizer_report "$T/err"; then
    fail "sanitizer report (exit $rc, expected $want): $*"
    grep -m 5 -E 'Sanitizer|runtime error' "$T/err" | sed 's/^/    stderr: /' >&2
  elif [ "$rc" -eq "$want" ]; then
    pass
  else
    fail "exit $rc, expected $want: $*"
    sed 's/^/    stderr: /' "$T/err" | head -n 5 >&2
  fi
}

# sanitizer_report FILE: whether FILE holds an ASan/LSan/UBSan/TSan report.
sanitizer_report() {
  grep -qE '^(==[0-9]+==ERROR: (Address|Leak|Thread|Memory)Sanitizer|SUMMARY: (Address|Leak|Undefined|Thread)Sanitizer)|: runtime error: ' "$1" 2>/dev/null
}

# One line on stderr containing each of the given strings.
err_is_one_line_with() {
  local lines
  lines=$(wc -l <"$T/err")
  if [ "$lines" -ne 1 ]; then
    fail "expected one stderr line, got $lines: $(head -c 300 "$T/err")"
    return
  fi
  for s in "$@"; do
    if grep -qF -- "$s" "$T/err"; then pass; else fail "stderr lacks '$s': $(cat "$T/err")"; fi
  done
}

out_has() {
  for s in "$@"; do
    if grep -qF -- "$s" "$T/out"; then pass; else fail "stdout lacks '$s'"; fi
  done
}

summary() {
  echo "$1: $n_pass passed, $n_fail failed"
  [ "$n_fail" -eq 0 ]
  exit $?
}
