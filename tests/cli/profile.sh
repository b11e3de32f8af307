#!/usr/bin/env bash
# ldmc profile on a tiny U-Net and on axpy.txt (interpreter, a few seconds):
# GFLOPs per step equal `ldmc stats`' figure; the Chrome trace parses with
# python3's json and holds one kernel event per computed node per step (nodes
# counted in the text IR that `ldmc run --save-graph` writes); the roofline is
# well-formed XML whose <title>/<desc> name the roofs' figures and count the
# CSV's kernels with FLOPs; CSV/JSON agree with the totals; the family view; the
# calibration cache; usage errors; --no-calibrate's unknown % of peak;
# --bf16; a failed profile writes none of its files.
source "$(dirname "$0")/lib.bash"
export XDG_CACHE_HOME="$T/cache"
U=(--model unet --latent 8x8x4 --context 64x8)
FAST=(--backend interp --warmup 0 --peak-gflops 100 --bandwidth-gbs 10)

# the graph's computed nodes, from an independent path: the printed IR
run 0 "$LDMC" run "${U[@]}" --channels 32 --init random --random-inputs --out o.safetensors --save-graph g.txt
nodes=$(grep -c ' = ' g.txt)
params=$(grep -c ' parameter(' g.txt)
computed=$((nodes - params))
check "the U-Net has nodes ($nodes, $params parameters)" test "$computed" -gt 500
run 0 "$LDMC" stats "${U[@]}" --channels 32 --format json
stats_flops=$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["widths"][0]["gflops_per_step"]*1e9))' <"$T/out")

run 0 "$LDMC" profile "${U[@]}" --channels 32 "${FAST[@]}" --steps 2 --top 5 \
  --trace t.json --roofline r.svg --csv k.csv --json k.json
out_has "on interp" "GFLOPs per step" "% of peak (100.0 GFLOP/s" "wrote t.json" "wrote r.svg" "wrote k.csv" "wrote k.json"
cp "$T/out" table.txt
python3 - "$computed" "$stats_flops" <<'EOF'
import json, sys
computed, stats = int(sys.argv[1]), int(sys.argv[2])
t = json.load(open("t.json"))
ev = t["traceEvents"]
x = [e for e in ev if e.get("ph") == "X"]
kern = [e for e in x if e.get("cat") == "kernel"]
steps = [e for e in x if e.get("cat") == "step"]
ok = True
def need(c, what):
    global ok
    if not c:
        print("FAIL:", what, file=sys.stderr)
        ok = False
need(len(steps) == 2, "two step events, got %d" % len(steps))
need(len(kern) == 2 * computed, "one kernel event per computed node per step: %d vs 2 x %d" % (len(kern), computed))
need(all(isinstance(e["ts"], (int, float)) and e["dur"] >= 0 and "pid" in e and "tid" in e for e in x), "ts/dur/pid/tid")
need(sum(e["args"]["mac_flops"] for e in kern) == 2 * stats, "trace FLOPs = 2 steps x stats")
need(any(e["args"]["block"].startswith("down_blocks.1.attentions.0") for e in kern), "blocks in args")
for s in steps:  # kernels of a step lie inside it
    inside = [e for e in kern if e["ts"] >= s["ts"] - 1e-3 and e["ts"] + e["dur"] <= s["ts"] + s["dur"] + 1e-3]
    need(len(inside) == computed, "kernels nested in their step: %d" % len(inside))
k = json.load(open("k.json"))
need(k["per_step"]["graph_mac_flops"] == stats, "JSON GFLOPs = stats")
need(k["per_step"]["kernel_mac_flops"] == stats, "kernels' FLOPs = stats")
need(k["per_step"]["kernel_calls"] == computed, "calls per step")
need(k["backend"] == "interp" and k["steps"]["count"] == 2, "meta")
need(abs(k["machine"]["percent_of_peak"] - k["per_step"]["gflop_s"]) < 1e-6 * max(1, k["per_step"]["gflop_s"]), "% of 100 GFLOP/s")
import csv
rows = list(csv.DictReader(open("k.csv")))
need(len(rows) == computed, "a CSV row per kernel")
need(sum(int(r["mac_flops"]) * int(r["calls"]) for r in rows) == 2 * stats, "CSV FLOPs")
need(abs(sum(float(r["share"]) for r in rows) - k["steps"]["kernel_s"] / k["steps"]["mean_s"]) < 1e-3, "shares sum")
import re, xml.etree.ElementTree as E
svg = E.parse("r.svg").getroot()
need(svg.tag.endswith("svg"), "an svg root")
ns = "{http://www.w3.org/2000/svg}"
# cairo draws text as glyph outlines: the words are in <title>/<desc> (the legend)
title, desc = svg.find(ns + "title").text, svg.find(ns + "desc").text
need(re.match(r"roofline: .* on interp, \d+ threads?$", title), "roofline title: %r" % title)
need("roofs: memory 10.0 GB/s, FMA peak 100.0 GFLOP/s (ridge 10.00 FLOP/B)" in desc, "the roofs' figures: %r" % desc)
m = re.search(r"(\d+) points?, area = share of time(?:; (\d+) without FLOPs or time not drawn)?", desc)
drawn = sum(1 for r in rows if int(r["mac_flops"]) + int(r["other_flops"]) > 0 and int(r["bytes_read"]) + int(r["bytes_written"]) > 0)
need(m and int(m.group(1)) == drawn and int(m.group(1)) + int(m.group(2) or 0) == len(rows),
     "the legend counts the CSV's kernels with FLOPs and bytes (%d of %d): %r" % (drawn, len(rows), desc))
need(len(list(svg.iter(ns + "use"))) > 50, "text drawn (glyphs)")
sys.exit(0 if ok else 1)
EOF
check "trace, JSON, CSV and SVG agree with stats and the graph" test $? -eq 0
if command -v xmllint >/dev/null; then check "xmllint accepts the SVG" xmllint --noout r.svg; fi

# grouped by op: convolution leads the FLOPs; by block: the block names of `ldmc stats --breakdown`
run 0 "$LDMC" profile "${U[@]}" --channels 32 "${FAST[@]}" --steps 1 --group block --top 0 --csv b.csv
out_has "down_blocks.0" "mid_block" "up_blocks.3"
python3 -c '
import csv, sys
rows = list(csv.DictReader(open("b.csv")))
sys.exit(0 if sum(int(r["mac_flops"]) for r in rows) == int(sys.argv[1]) else 1)' "$stats_flops"
check "grouped rows keep the FLOPs per step" test $? -eq 0

# a text IR graph with inputs from a file; the default backend is named on stderr
$ST write in.safetensors x F32 2,3 1,2,3,4,5,6 y F32 2,3 0.5,-1,2,3,0,-2
run 0 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --inputs in.safetensors --peak-gflops 10 --bandwidth-gbs 1 --steps 3
grep -q "backend .* (the fastest registered" "$T/err" && pass || fail "the chosen backend is named"
out_has "graph 'axpy'" "dot_general" "median of 3"
# z = 2x + y, s, g: 2*2*3*3 = 36 multiply-add FLOPs in the dot
run 0 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --random-inputs --backend interp --json a.json --no-calibrate
python3 -c 'import json,sys; sys.exit(0 if json.load(open("a.json"))["per_step"]["graph_mac_flops"] == 36 else 1)'
check "axpy: 36 FLOPs in its dot" test $? -eq 0
run 1 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --backend interp --no-calibrate
err_is_one_line_with "ldmc profile:" "'x'" "--random-inputs"

# the family view: per width, the counted and the measured cost
run 0 "$LDMC" profile "${U[@]}" --channels 32,64 "${FAST[@]}" --steps 1 --csv fam.csv --roofline fam.svg
out_has "channels" "GFLOPs/step" "s/step" "% peak" "norm cost"
run 0 "$LDMC" stats "${U[@]}" --channels 32,64 --format csv
python3 - "$T/out" <<'EOF'
import csv, sys
fam = {r["channels"]: r for r in csv.DictReader(open("fam.csv"))}
st = {r["channels"]: r for r in csv.DictReader(open(sys.argv[1]))}
ok = set(fam) == {"32", "64"} and all(fam[c]["params"] == st[c]["params"] and
     abs(float(fam[c]["gflops_per_step"]) - float(st[c]["gflops_per_step"])) < 1e-6 and float(fam[c]["s_per_step"]) > 0
     for c in fam)
sys.exit(0 if ok else 1)
EOF
check "family rows: params and GFLOPs as ldmc stats, seconds measured" test $? -eq 0
check "family roofline is XML" python3 -c 'import xml.etree.ElementTree as E; E.parse("fam.svg")'

# calibration: measured once on first use (telling the user), then cached
run 0 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --random-inputs --backend interp --steps 1
grep -q "no calibration of this machine" "$T/err" && pass || fail "first use says it calibrates"
out_has "% of peak"
check "the cache file exists" test -s "$XDG_CACHE_HOME/ldmc/machine.json"
python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["machines"]
e = next(iter(m.values()))
sys.exit(0 if e["threads"][0] == 1 and all(g > 0 for g in e["fma_gflops"]) and all(b > 0 for b in e["triad_gbs"]) else 1)
' "$XDG_CACHE_HOME/ldmc/machine.json"
check "the cache holds positive figures per thread count" test $? -eq 0
run 0 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --random-inputs --backend interp --steps 1
check "second use reads the cache, silently" test ! -s "$T/err"
echo '{"machines": 5}' > "$XDG_CACHE_HOME/ldmc/machine.json"
run 1 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --random-inputs --backend interp
err_is_one_line_with "machine.json" "calibration cache"

# usage errors: exit 2, one line
run 2 "$LDMC" profile
err_is_one_line_with "ldmc profile:" "GRAPH"
run 2 "$LDMC" profile "${U[@]}" --channels 32,64 --trace t2.json
err_is_one_line_with "--trace needs a single width"
run 2 "$LDMC" profile "${U[@]}" --channels 32 --group color
err_is_one_line_with "--group"
run 2 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --channels 32
err_is_one_line_with "'--channels' needs --model"
run 2 "$LDMC" profile "${U[@]}" --channels 32 --backend nosuch
err_is_one_line_with "nosuch"
run 2 "$LDMC" profile "${U[@]}" --channels 32 --peak-gflops -3
err_is_one_line_with "--peak-gflops"
run 2 "$LDMC" profile "${U[@]}" --channels 33
check "no trace left by failures" test ! -e t2.json

# --no-calibrate: the peak is unknown, and so is the % of peak: the text says
# "unknown", JSON has null, the family CSV an empty field (never 0%)
run 0 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --random-inputs --backend interp --steps 1 --no-calibrate \
  --json nc.json --csv nc.csv
out_has "unknown % of peak"
check "no 0.00% of peak without a peak" test "$(grep -c '0\.00% of peak' "$T/out")" -eq 0
python3 -c '
import json, sys
m = json.load(open("nc.json"))["machine"]
sys.exit(0 if m["percent_of_peak"] is None and m["peak_gflop_s"] is None and m["bandwidth_gb_s"] is None else 1)'
check "JSON: the unknown peak, bandwidth and percentage are null" test $? -eq 0
run 0 "$LDMC" profile "${U[@]}" --channels 32,64 --backend interp --warmup 0 --steps 1 --no-calibrate \
  --csv fnc.csv --json fnc.json
out_has "% peak is unknown"
check "family table: unknown, not 0.00%" test "$(grep -c '0\.00%' "$T/out")" -eq 0
python3 -c '
import csv, json, sys
rows = list(csv.DictReader(open("fnc.csv")))
j = json.load(open("fnc.json"))
ok = len(rows) == 2 and all(r["percent_of_peak"] == "" for r in rows)
ok = ok and j["peak_gflop_s"] is None and j["bandwidth_gb_s"] is None
ok = ok and all(w["percent_of_peak"] is None for w in j["widths"])
sys.exit(0 if ok else 1)'
check "family CSV: empty % of peak; JSON: null" test $? -eq 0

# --bf16 as on ldmc run: GEMM operands packed as bf16 (half the packed bytes) where the CPU has avx512_bf16
run 0 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --random-inputs --backend llvm-cpu --steps 1 --no-calibrate --json p32.json
run 0 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --random-inputs --backend llvm-cpu --steps 1 --no-calibrate --json p16.json --bf16
out_has "on llvm-cpu (--bf16)"
python3 - "$(grep -cw avx512_bf16 /proc/cpuinfo)" <<'EOF2'
import json, sys
a, b = json.load(open("p32.json")), json.load(open("p16.json"))
packed = lambda d: sum(k["bytes_written"] for k in d["kernels"] if k["name"] == "pack")
ok = a["bf16"] is False and b["bf16"] is True
ok = ok and a["per_step"]["kernel_mac_flops"] == b["per_step"]["kernel_mac_flops"] == 36
if int(sys.argv[1]) > 0:  # bf16 panels: 2 bytes an element instead of 4
    ok = ok and packed(a) > 0 and packed(b) * 2 == packed(a)
sys.exit(0 if ok else 1)
EOF2
check "--bf16 reaches the backend (JSON bf16, packed bytes halved on avx512_bf16)" test $? -eq 0
run 0 "$LDMC" profile --help
out_has "--bf16"

# a failed profile leaves none of its files: here the roofline (a path under
# a regular file) fails after the CSV, JSON and trace were written; a file
# already at a requested path stays as it was
echo keep >old.csv
echo "not a folder" >plain
run 1 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --random-inputs --backend interp --steps 1 --no-calibrate \
  --csv old.csv --json f.json --trace f.trace.json --roofline plain/r.svg
err_is_one_line_with "plain/r.svg"
check "the CSV already there is untouched" grep -qx keep old.csv
check "no JSON, no trace written" test ! -e f.json -a ! -e f.trace.json
check "no temporary files left" test -z "$(ls -a | grep -e ldmc-partial -e '\.tmp\.')"
# a bad input (a tensor of the wrong shape) after outputs were requested
$ST write bad.safetensors x F32 3,2 1,2,3,4,5,6 y F32 2,3 0.5,-1,2,3,0,-2
run 1 "$LDMC" profile "$LDMC_SRC/tests/cli/axpy.txt" --inputs bad.safetensors --backend interp --no-calibrate \
  --csv g.csv --json g.json --trace g.trace.json --roofline g.svg
err_is_one_line_with "'x'"
check "a bad input writes no file" test ! -e g.csv -a ! -e g.json -a ! -e g.trace.json -a ! -e g.svg
# the family view: its roofline fails after both widths ran and the CSV and JSON were written
run 1 "$LDMC" profile "${U[@]}" --channels 32,64 --backend interp --warmup 0 --steps 1 --no-calibrate \
  --csv h.csv --json h.json --roofline plain/h.svg
check "family: no CSV, no JSON" test ! -e h.csv -a ! -e h.json
check "family: no temporary files left" test -z "$(ls -a | grep -e ldmc-partial -e '\.tmp\.')"

summary profile
