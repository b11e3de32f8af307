#!/usr/bin/env bash
# ldmc plot over CSV logs made here in the trainer's layout (validation cells
# empty between validations): SVG parsed back by python3's XML parser (one
# stroked path per series in its cycle color plus the legend swatch, the
# legend names in <desc>), PNG header bytes (signature, IHDR size, RGB);
# several files named by folder or --labels, --smooth, log axes; every error
# one line naming the file, line and column or listing the columns, exit 1
# (2 for usage), and never an output file (an existing one unchanged) or a
# temp file left behind.
source "$(dirname "$0")/lib.bash" || exit 1

mkdir -p runs/w32 runs/w64
for w in 32 64; do
  python3 - "$w" >"runs/w$w/log.csv" <<'EOF'
import sys
w = int(sys.argv[1])
print("step,lr,loss,grad_norm,images_per_s,val_loss,val_accuracy")
for s in range(10, 1001, 10):
    loss = (0.3 + 2.0 / (1 + s / 100)) * (32 / w) ** 0.5 * (1.1 if s % 20 else 0.9)
    val = "%.6f" % (loss * 1.05) if s % 200 == 0 else ""
    acc = "%.4f" % (1 - loss / 3) if val else ""
    print("%d,0.001,%.9g,1.5,1234.500,%s,%s" % (s, loss, val, acc))
EOF
done

# colors (tab10: 0 blue, 1 orange) of the stroked and filled <path>s, the <desc>, after checking the XML parses
svg_info() {
  python3 - "$1" <<'EOF'
import re, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
cycle = {0: (0x1f, 0x77, 0xb4), 1: (0xff, 0x7f, 0x0e), 2: (0x2c, 0xa0, 0x2c), 3: (0xd6, 0x27, 0x28)}
def color(style, key):
    m = re.search(key + r":rgb\(([\d.]+)%,([\d.]+)%,([\d.]+)%\)", style or "")
    if not m: return None
    rgb = [float(v) * 2.55 for v in m.groups()]
    for k, c in cycle.items():
        if all(abs(a - b) < 1.6 for a, b in zip(rgb, c)): return k
    return None
stroke, fill = {}, {}
for p in root.iter(ns + "path"):
    s = p.get("style")
    k = color(s, "stroke")
    if k is not None: stroke[k] = stroke.get(k, 0) + 1
    k = color(s, "fill")
    if k is not None: fill[k] = fill.get(k, 0) + 1
print("stroke", " ".join("%d:%d" % kv for kv in sorted(stroke.items())))
print("fill", " ".join("%d:%d" % kv for kv in sorted(fill.items())))
print("title", root.find(ns + "title").text)
print("desc", root.find(ns + "desc").text)
print("size", root.get("width"), root.get("height"))
EOF
}

# one run, default columns: loss (100 points, a line) and val_loss (5 points, line + markers)
run 0 "$LDMC" plot runs/w32/log.csv --out loss.svg
out_has "wrote loss.svg: " "plot of 2 series (105 points) from 1 CSV file"
check "nothing on stderr" test ! -s "$T/err"
svg_info loss.svg >info
check "the SVG parses as XML" grep -q "^desc " info
check "loss: its line and swatch; val_loss: line + swatch" grep -qx "stroke 0:2 1:2" info
check "val_loss's markers: one path on the plot, one in the legend" grep -qx "fill 1:2" info
check "legend names in <desc>" grep -qx "desc legend: loss; val_loss" info
check "default title is the CSV" grep -qx "title runs/w32/log.csv" info
check "default size 800 x 500" grep -qx "size 800pt 500pt" info

# PNG: signature, IHDR width and height, 8-bit RGB
run 0 "$LDMC" plot runs/w32/log.csv --out loss.png --size 640x400 --title "width 32"
out_has "wrote loss.png: "
check "PNG header: 640 x 400, 8-bit RGB" test "$(python3 -c '
import struct, sys
b = open("loss.png", "rb").read(33)
assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", b[:16]
w, h, depth, kind = struct.unpack(">IIBB", b[16:26])
print(w, h, depth, kind)')" = "640 400 8 2"

# two runs: series named after their folders, one color per run, log axes, explicit columns
run 0 "$LDMC" plot runs/w32/log.csv runs/w64/log.csv --y loss,val_loss --log-y --log-x --out widths.svg
out_has "plot of 4 series (210 points) from 2 CSV files"
svg_info widths.svg >info
check "two runs: legend by folder" grep -qx "desc legend: w32: loss; w32: val_loss; w64: loss; w64: val_loss" info
check "two runs: colors by run" grep -qx "stroke 0:4 1:4" info
check "no title for several files" grep -qx "title plot" info
run 0 "$LDMC" plot runs/w32/log.csv runs/w64/log.csv --labels "c=32,c=64" --y val_accuracy --out acc.svg
svg_info acc.svg >info
check "--labels names the series" grep -qx "desc legend: c=32: val_accuracy; c=64: val_accuracy" info
# two folders of one name: the paths tell them apart
mkdir -p a/run b/run && cp runs/w32/log.csv a/run/ && cp runs/w64/log.csv b/run/
run 0 "$LDMC" plot a/run/log.csv b/run/log.csv --out same.svg
svg_info same.svg >info
check "same folder names: the paths" grep -qx "desc legend: a/run/log.csv: loss; a/run/log.csv: val_loss; b/run/log.csv: loss; b/run/log.csv: val_loss" info

# --smooth: the dense column gets a moving average, the raw values faint and out of the legend;
# val_loss (empty on most rows) is drawn as it is
run 0 "$LDMC" plot runs/w32/log.csv --smooth 5 --out smooth.svg
out_has "plot of 3 series"
svg_info smooth.svg >info
check "--smooth: raw + average + swatch in blue" grep -qx "stroke 0:3 1:2" info
check "--smooth: legend" grep -qx "desc legend: loss (mean of 5); val_loss" info
check "the faint raw line" grep -q "stroke-opacity:0.25" smooth.svg

# x with zeros on a log axis: those points are left out; all of them non-positive is an error
printf 'step,loss,neg\n0,1,-1\n1,0.5,-2\n2,0.25,0\n' >zero.csv
run 0 "$LDMC" plot zero.csv --log-x --out zero.png
run 1 "$LDMC" plot zero.csv --y neg --log-y --out neg.svg
err_is_one_line_with "ldmc plot: " "neg.svg" "series 'neg': no point with a positive y for the log y axis"
check "no output after an error" test ! -e neg.svg

# errors: one line each, nothing written, an existing output kept
echo "keep me" >old.svg
no_output() { # no FILE, no temp files, old.svg as it was
  check "$1: no $2" test ! -e "$2"
  check "$1: no temp file" test -z "$(find . -name '*.tmp.*')"
  check "$1: old.svg untouched" test "$(cat old.svg)" = "keep me"
}
run 1 "$LDMC" plot missing.csv --out x.svg
err_is_one_line_with "ldmc plot: " "missing.csv" "No such file"
no_output missing x.svg
printf 'step,loss\n1,0.5\n2,abc\n3,0.3\n' >bad.csv
run 1 "$LDMC" plot bad.csv --out old.svg
err_is_one_line_with "bad.csv:3: column 2 'loss': 'abc' is not a number"
no_output malformed old.svg.tmp
printf 'step,loss\n1,0.5\n2,0.4,7\n' >cells.csv
run 1 "$LDMC" plot cells.csv --out x.svg
err_is_one_line_with "cells.csv:3: 3 cells, the header names 2 columns"
no_output cells x.svg
printf '1,0.5\n2,0.4\n' >nohead.csv
run 1 "$LDMC" plot nohead.csv --out x.svg
err_is_one_line_with "nohead.csv:1: " "the first line must name the columns"
: >empty.csv
run 1 "$LDMC" plot empty.csv --out x.svg
err_is_one_line_with "empty.csv: empty"
run 1 "$LDMC" plot runs/w32/log.csv --y loss,nope --out x.svg
err_is_one_line_with "runs/w32/log.csv has no column 'nope' (columns: step, lr, loss, grad_norm, images_per_s, val_loss, val_accuracy)"
no_output column x.svg
run 1 "$LDMC" plot runs/w32/log.csv --x time --out x.svg
err_is_one_line_with "no x column 'time' (columns: step, lr,"
printf 'step,acc\n1,0.5\n' >noloss.csv
run 1 "$LDMC" plot noloss.csv --out x.svg
err_is_one_line_with "noloss.csv has no column 'loss'" "--y" "columns: step, acc"
run 2 "$LDMC" plot runs/w32/log.csv --out x.pdf
err_is_one_line_with "x.pdf" "only .svg or .png"
no_output extension x.pdf
run 2 "$LDMC" plot runs/w32/log.csv
err_is_one_line_with "missing --out"
run 2 "$LDMC" plot runs/w32/log.csv runs/w64/log.csv --labels one --out x.svg
err_is_one_line_with "--labels one: 1 name for 2 CSV files"
run 2 "$LDMC" plot runs/w32/log.csv --smooth 0 --out x.svg
err_is_one_line_with "'--smooth'"
run 2 "$LDMC" plot runs/w32/log.csv --size 50x500 --out x.svg
err_is_one_line_with "--size 50x500"
run 1 "$LDMC" plot runs/w32/log.csv --out no/such/dir/x.svg
err_is_one_line_with "no/such/dir/x.svg"
check "no folder made" test ! -e no

# a last line still being written is skipped with a warning
printf 'step,loss\n1,0.5\n2,0.4\n3' >partial.csv
run 0 "$LDMC" plot partial.csv --out partial.svg
err_is_one_line_with "warning: partial.csv:4: 1 cell" "skipped"
out_has "plot of 1 series (2 points)"
summary cli_plot
