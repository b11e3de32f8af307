#!/usr/bin/env bash
# llvm-cpu's on-disk kernel cache through the driver: `ldmc run` twice with
# LDMC_CACHE_DIR loads every kernel from disk the second time (--verbose says
# so) with the same outputs; --no-cache and LDMC_CACHE_DIR=off write nothing;
# a damaged entry is compiled again and replaced; an unusable folder is only a
# warning. Also: the ldmc executable links no LLVM (the backend is a module
# loaded on first use), and a missing module is a clear error.
source "$(dirname "$0")/lib.bash" || exit 1
G="$LDMC_SRC/tests/cli/axpy.txt"
$ST write in.safetensors x F32 2,3 1,2,3,4,5,6 y F32 2,3 0.5,-1,2,3,0,-2
K="$T/kcache"
entries() { find "$1" -name '*.kc' 2>/dev/null | wc -l; }

# first run: compiled, entries written
LDMC_CACHE_DIR="$K" run 0 "$LDMC" run "$G" --inputs in.safetensors --out a.safetensors --backend llvm-cpu --verbose
check "first run compiles (stderr: $(grep 'kernels:' "$T/err"))" grep -qE ' 0 from the disk cache, [1-9][0-9]* compiled' "$T/err"
n=$(entries "$K")
check "entries written into LDMC_CACHE_DIR ($n)" test "$n" -gt 0
check "the verbose line names the cache folder" grep -qF "disk cache $K:" "$T/err"
# second run: everything from disk, same outputs
LDMC_CACHE_DIR="$K" run 0 "$LDMC" run "$G" --inputs in.safetensors --out b.safetensors --backend llvm-cpu --verbose
check "second run loads every kernel from disk (stderr: $(grep 'kernels:' "$T/err"))" \
  grep -qE " $n from the disk cache, 0 compiled" "$T/err"
check "same outputs from cached kernels" cmp -s a.safetensors b.safetensors
check "no new entries" test "$(entries "$K")" -eq "$n"

# --no-cache and LDMC_CACHE_DIR=off: compile, write nothing
LDMC_CACHE_DIR="$T/k2" run 0 "$LDMC" run "$G" --inputs in.safetensors --out c.safetensors --backend llvm-cpu --verbose --no-cache
check "--no-cache compiles" grep -qE ' 0 from the disk cache, [1-9][0-9]* compiled \(no disk cache\)' "$T/err"
check "--no-cache writes nothing" test ! -e "$T/k2"
check "--no-cache: same outputs" cmp -s a.safetensors c.safetensors
LDMC_CACHE_DIR="$K" run 0 "$LDMC" run "$G" --inputs in.safetensors --out c.safetensors --backend llvm-cpu --verbose --no-cache
check "--no-cache does not read the cache either" grep -qE ' 0 from the disk cache' "$T/err"
LDMC_CACHE_DIR=off XDG_CACHE_HOME="$T/xdg" HOME="$T/home" run 0 "$LDMC" run "$G" --inputs in.safetensors --out c.safetensors --backend llvm-cpu
check "LDMC_CACHE_DIR=off writes nothing" test ! -e "$T/xdg" -a ! -e "$T/home"
# without LDMC_CACHE_DIR: $XDG_CACHE_HOME/ldmc/kernels, else $HOME/.cache/ldmc/kernels
env -u LDMC_CACHE_DIR XDG_CACHE_HOME="$T/xdg" HOME="$T/home" "$LDMC" run "$G" --inputs in.safetensors --out c.safetensors --backend llvm-cpu >/dev/null 2>&1
check "default folder under XDG_CACHE_HOME" test "$(entries "$T/xdg/ldmc/kernels")" -eq "$n"
env -u LDMC_CACHE_DIR -u XDG_CACHE_HOME HOME="$T/home" "$LDMC" run "$G" --inputs in.safetensors --out c.safetensors --backend llvm-cpu >/dev/null 2>&1
check "default folder under HOME" test "$(entries "$T/home/.cache/ldmc/kernels")" -eq "$n"

# a damaged entry: detected, compiled again, replaced; outputs unchanged
e=$(find "$K" -name '*.kc' | sort | head -n 1)
cp "$e" orig.kc
head -c 100 orig.kc >"$e"
LDMC_CACHE_DIR="$K" run 0 "$LDMC" run "$G" --inputs in.safetensors --out d.safetensors --backend llvm-cpu --verbose
check "a truncated entry is reported" grep -qF "$e: " "$T/err"
check "a truncated entry is compiled again" grep -qE " $((n - 1)) from the disk cache, 1 compiled" "$T/err"
check "the truncated entry is replaced by a whole one" test "$(stat -c %s "$e")" -eq "$(stat -c %s orig.kc)"
check "outputs after the repair" cmp -s a.safetensors d.safetensors

# an unusable folder: a warning with --verbose, no failure; silent without
: >afile
LDMC_CACHE_DIR="$T/afile/sub" run 0 "$LDMC" run "$G" --inputs in.safetensors --out e.safetensors --backend llvm-cpu --verbose
check "unusable cache folder: one warning" test "$(grep -c 'warning: no on-disk kernel cache' "$T/err")" -eq 1
LDMC_CACHE_DIR="$T/afile/sub" run 0 "$LDMC" run "$G" --inputs in.safetensors --out e.safetensors --backend llvm-cpu
check "unusable cache folder: nothing on stderr without --verbose" test ! -s "$T/err"

# --help explains the flag
run 0 "$LDMC" run --help
out_has "--no-cache" "LDMC_CACHE_DIR"
run 0 "$LDMC" profile --help
out_has "--no-cache"

# the executable links no LLVM; the backend is a module loaded on first use
if command -v ldd >/dev/null; then
  check "ldmc links no libLLVM" bash -c "! ldd '$LDMC' | grep -qi libLLVM"
fi
LD_DEBUG=libs "$LDMC" stats --help >/dev/null 2>ld.log
check "ldmc stats --help loads no libLLVM" bash -c "! grep -q 'libLLVM' ld.log"
LD_DEBUG=libs LDMC_CACHE_DIR="$K" "$LDMC" run "$G" --inputs in.safetensors --out g.safetensors --backend llvm-cpu >/dev/null 2>ld.log
check "ldmc run --backend llvm-cpu loads the module and libLLVM" bash -c "grep -q 'libldmc_llvm_cpu.so' ld.log && grep -q 'libLLVM' ld.log"
mkdir -m 0777 shared
LDMC_CACHE_DIR="$T/shared" run 0 "$LDMC" run "$G" --inputs in.safetensors --out h.safetensors --backend llvm-cpu --verbose
check "a world-writable cache folder is refused" grep -qF "writable by every user" "$T/err"
check "... and nothing written there" test "$(entries "$T/shared")" -eq 0
LDMC_LLVM_CPU_PLUGIN="$T/nonexistent.so" run 1 "$LDMC" run "$G" --inputs in.safetensors --out f.safetensors --backend llvm-cpu
err_is_one_line_with "nonexistent.so" "cannot load the llvm-cpu backend"
check "no output after a failed load" test ! -e f.safetensors
LDMC_LLVM_CPU_PLUGIN="$T/nonexistent.so" run 0 "$LDMC" version
out_has "backends interp llvm-cpu"
LDMC_LLVM_CPU_PLUGIN="$T/nonexistent.so" run 0 "$LDMC" run "$G" --inputs in.safetensors --out f.safetensors
check "interp runs without the module" test -s f.safetensors

summary cli_cache
