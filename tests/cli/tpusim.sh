#!/usr/bin/env bash
# ldmc on the simulated TPU-like core (tpusim), a tiny U-Net (a few seconds):
# `ldmc compile --target tpusim --emit asm` writes one header line per kernel
# and its instruction stream; `ldmc profile --target tpusim[:PRESET]` reports
# simulated time: the step equals the kernels' cycles over the clock, the
# peak is the preset file's units x R x C x 2 x clock, no kernel is above the
# peak FLOP/s or the off-chip bandwidth (the roofline), the per-kernel
# instruction counts match the disassembly, the FLOPs match `ldmc stats`; a
# --target-file holding a preset gives the preset's figures; usage errors.
source "$(dirname "$0")/lib.bash"
U=(--model unet --channels 32 --latent 8x8x4 --context 32x4)
PRESETS="$LDMC_SRC/backends/tpusim/presets"

# ---- asm ----
run 0 "$LDMC" compile --target tpusim:v5e "${U[@]}" --emit asm -o u.s
out_has "emitted u.s: tpusim asm for v5e"
check "asm written" test -s u.s
check "asm names the target" grep -q "^; tpusim asm of graph 'unet' for target v5e" u.s
check "a header per kernel" grep -qE '^; kernel 0: %[0-9]+ [a-z_]+ f32\[' u.s
check "instructions disassembled" grep -qE '^[0-9]+: (dma_load|matmul|load_w|acc_move|vec\.)' u.s
check "matrix work present" grep -qE '^[0-9]+: matmul mxu[0-3] acc\[' u.s
check "no bad opcode" bash -c '! grep -q "<bad" u.s'

# ---- profile ----
run 0 "$LDMC" stats "${U[@]}" --format json
stats_flops=$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["widths"][0]["gflops_per_step"]*1e9))' <"$T/out")
run 0 "$LDMC" profile --target tpusim:v5e "${U[@]}" --top 5 --json p.json --csv p.csv --trace t.json --roofline r.svg
out_has "on tpusim:v5e, simulated (timing only)" "simulated units on v5e" "MXU%" "MAC%" "VPU%" "DMA%" "DMA MB" \
  "%FLOP/s" "%BW" "%roof" "MAC utilization" "simulated s" "wrote p.json" "wrote t.json" "wrote r.svg"
python3 - "$stats_flops" "$PRESETS/v5e.json" <<'EOF'
import csv, json, re, sys
stats, preset = int(sys.argv[1]), json.load(open(sys.argv[2]))
ok = True
def need(c, what):
    global ok
    if not c:
        print("FAIL:", what, file=sys.stderr)
        ok = False
p = json.load(open("p.json"))
m, sim = p["machine"], p["simulated"]
mpc = preset["matrix"]["units"] * preset["matrix"]["rows"] * preset["matrix"]["cols"]
peak = mpc * 2 * preset["clock_hz"] / 1e9
bw = preset["offchip"]["bytes_per_s"] / 1e9
need(abs(m["peak_gflop_s"] - peak) < 1e-6 * peak, "peak %s vs the preset's %s" % (m["peak_gflop_s"], peak))
need(abs(m["bandwidth_gb_s"] - bw) < 1e-9 * bw, "bandwidth")
need(sim["target"] == "v5e" and sim["macs_per_cycle"] == mpc and sim["clock_hz"] == preset["clock_hz"], "target")
# the step (the span of the kernels' simulated events) is the kernels' summed cycles / clock
cyc = sum(k["sim"]["cycles"] * k["calls"] for k in p["kernels"]) / p["steps"]["count"]
need(cyc == sim["cycles"] and cyc > 0, "cycles per step %s vs %s" % (cyc, sim["cycles"]))
need(abs(p["steps"]["median_s"] - cyc / preset["clock_hz"]) <= 1e-9 * len(p["kernels"]) + 1e-12,
     "step %s s vs cycles / clock %s" % (p["steps"]["median_s"], cyc / preset["clock_hz"]))
need(p["per_step"]["graph_mac_flops"] == stats and p["per_step"]["kernel_mac_flops"] == stats, "FLOPs = stats")
need(p["backend"] == "tpusim", "backend")
# the roofline: nothing above the peak or the bandwidth, no unit busier than the run
for k in p["kernels"]:
    s = k["sim"]
    secs = s["cycles"] / preset["clock_hz"]
    flops = k["mac_flops"] + k["other_flops"]
    need(s["cycles"] > 0, "cycles of %s" % k["nodes"])
    need(flops / secs <= peak * 1e9 * (1 + 1e-12), "%s above the peak FLOP/s" % k["nodes"])
    need(s["dma_bytes"] / secs <= bw * 1e9 * (1 + 1e-12), "%s above the bandwidth" % k["nodes"])
    need(s["macs"] <= s["cycles"] * mpc and s["macs"] * 2 >= k["mac_flops"] - 0, "%s MACs" % k["nodes"])
    need(max(s["mxu_busy_percent"], s["vector_percent"], s["dma_percent"]) <= 100 + 1e-9, "%s busy > 100%%" % k["nodes"])
    need(s["percent_peak_flop_s"] <= 100 + 1e-9 and s["percent_peak_bandwidth"] <= 100 + 1e-9, "%s %% of peak" % k["nodes"])
# the instruction counts of the simulator match the disassembly, kernel by kernel
asm, cur = {}, None
for line in open("u.s"):
    h = re.match(r"^; kernel \d+: (%\d+) .*; (\d+) instructions;", line)
    if h:
        cur = h.group(1)
        asm[cur] = [int(h.group(2)), 0]
    elif cur and re.match(r"^\d+: ", line):
        asm[cur][1] += 1
need(all(a == b for a, b in asm.values()), "header counts = lines")
# a fused kernel's nodes are "%a,%b,...,%root"; the asm header names its root
prof = {k["nodes"].split(",")[-1]: k["sim"]["insns"] for k in p["kernels"]}
need(set(prof) <= set(asm), "every profiled kernel is in the asm")
need(all(asm[n][1] == i for n, i in prof.items()), "instructions per kernel: profile vs asm")
need(sum(i for i, _ in asm.values()) == sim["insns"], "instructions per step")
# a fused kernel's header lists every node it computes, as the profile does
fused = {}
for line in open("u.s"):
    h = re.match(r"^; kernel \d+: (%\d+) .*; fuses ([%\d,]+);", line)
    if h:
        fused[h.group(1)] = h.group(2)
multi = [k["nodes"] for k in p["kernels"] if "," in k["nodes"]]
need(len(multi) > 0, "the U-Net has fused kernels")
need(all(fused.get(m.split(",")[-1]) == m for m in multi), "fused kernels' nodes: asm header vs profile")
rows = list(csv.DictReader(open("p.csv")))
need(len(rows) == len(p["kernels"]) and "mac_percent" in rows[0] and "dma_bytes" in rows[0], "CSV columns")
t = json.load(open("t.json"))
x = [e for e in t["traceEvents"] if e.get("ph") == "X"]
steps = [e for e in x if e["cat"] == "step"]
kern = [e for e in x if e["cat"] == "kernel"]
need(len(steps) == 1 and abs(steps[0]["dur"] * 1e-6 - p["steps"]["median_s"]) < 1e-6, "trace step = simulated step")
need(all(e["ts"] >= steps[0]["ts"] - 1e-3 and e["ts"] + e["dur"] <= steps[0]["ts"] + steps[0]["dur"] + 1e-3 for e in kern),
     "kernels inside their step")
sys.exit(0 if ok else 1)
EOF
check "profile JSON, CSV, trace and asm agree" test $? -eq 0
check "roofline is SVG" grep -q "<svg" r.svg

# another preset, by name and as a file: the same figures
run 0 "$LDMC" profile --target tpusim:v4 "${U[@]}" --json v4.json
cp "$PRESETS/v4.json" mine.json
run 0 "$LDMC" profile --target tpusim --target-file mine.json "${U[@]}" --json file.json
check "a target file holding v4 simulates as v4" python3 -c '
import json; a, b = json.load(open("v4.json")), json.load(open("file.json"))
assert a["simulated"]["cycles"] == b["simulated"]["cycles"] and a["simulated"]["target"] == "v4"
assert a["simulated"]["cycles"] != json.load(open("p.json"))["simulated"]["cycles"]'
run 0 "$LDMC" profile --target tpusim:v1 "${U[@]}" --group op --top 3
out_has "simulated units on v1" "group"

# the functional simulation of a small graph gives the same cycles as timing-only
cat >mm.txt <<'EOF'
graph mm {
  %0 = f32[64,96] parameter() name="x"
  %1 = f32[96,48] parameter() name="w"
  %2 = f32[64,48] dot_general(%0, %1) lhs_batch={} rhs_batch={} lhs_contract={1} rhs_contract={0}
  %3 = f32[64,48] exp(%2)
  return %3 "y"
}
EOF
run 0 "$LDMC" profile mm.txt --random-inputs --target tpusim --sim functional --json f.json
run 0 "$LDMC" profile mm.txt --random-inputs --target tpusim --sim timing --json tm.json
check "functional and timing-only cycles agree" python3 -c '
import json; a, b = json.load(open("f.json")), json.load(open("tm.json"))
assert a["simulated"]["cycles"] == b["simulated"]["cycles"] > 0'

# the family: simulated seconds and MAC utilization per width
run 0 "$LDMC" profile --target tpusim:v5e --model unet --channels 32,64 --latent 8x8x4 --context 32x4 --json fam.json
out_has "sim s/step" "MAC util" "on tpusim:v5e (simulated, timing only)"
check "family rows" python3 -c '
import json; w = json.load(open("fam.json"))["widths"]
assert [r["channels"] for r in w] == [32, 64] and all(0 < r["sim"]["mac_percent"] <= 100 for r in w)
assert w[1]["gflops_per_step"] > w[0]["gflops_per_step"]'

# ---- usage errors: one line, exit 2 ----
run 2 "$LDMC" profile --target tpusim:v9 "${U[@]}"
err_is_one_line_with "unknown" "v9"
echo '{"name": "x"}' >bad.json
run 2 "$LDMC" profile --target tpusim --target-file bad.json "${U[@]}"
err_is_one_line_with "bad.json" "missing field"
run 2 "$LDMC" profile --target tpusim --target-file nonexistent.json "${U[@]}"
err_is_one_line_with "nonexistent.json"
run 2 "$LDMC" profile --target-file mine.json "${U[@]}"
err_is_one_line_with "--target tpusim"
run 2 "$LDMC" profile --target tpusim:v4 --target-file mine.json "${U[@]}"
err_is_one_line_with "not both"
run 2 "$LDMC" profile --sim timing "${U[@]}"
err_is_one_line_with "--sim" "tpusim"
run 2 "$LDMC" profile --target tpusim --sim fast "${U[@]}"
err_is_one_line_with "timing or functional"
run 2 "$LDMC" profile --target tpusim --overhead "${U[@]}"
err_is_one_line_with "--overhead" "simulated"
run 2 "$LDMC" compile --target tpusim:v9 "${U[@]}" --emit asm -o x.s
err_is_one_line_with "v9"
run 2 "$LDMC" compile --target tpusim "${U[@]}" --emit obj -o x.o
err_is_one_line_with "asm only"
run 2 "$LDMC" compile --target tpusim --target-file bad.json "${U[@]}" --emit asm -o x.s
err_is_one_line_with "bad.json"
check "failed emits write nothing" bash -c '! ls x.s x.o 2>/dev/null'

summary tpusim
