#!/usr/bin/env bash
# ldmc schedule: CSV with one row per step and the sampler's columns, checked
# by python against published values (DDIM 50 leading + 1: 981, 961, ..., 1;
# abar_999 = 0.0046601) and the update's identities (DDIM: c_eps^2 + c_noise^2
# = 1 - abar_prev; DPM-Solver++: orders 1, 2, ..., 2, 1 and x0 at the end);
# the table format; usage errors exit 2 with one line.
source "$(dirname "$0")/lib.bash" || exit 1

run 0 "$LDMC" schedule --sampler ddim --steps 50 --steps-offset 1
check "ddim csv header" test "$(head -1 "$T/out")" = "step,timestep,prev_timestep,alpha_cumprod,alpha_cumprod_prev,c_x0,c_eps,c_noise"
check "ddim 50 rows" test "$(wc -l <"$T/out")" -eq 51
check "ddim timesteps 981..1, prev t - 20, identities" python3 - "$T/out" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["timestep"]) for r in rows] == list(range(981, 0, -20)), "timesteps"
assert all(int(r["prev_timestep"]) == int(r["timestep"]) - 20 for r in rows), "prev"
for r in rows:
    e, n, ap = float(r["c_eps"]), float(r["c_noise"]), float(r["alpha_cumprod_prev"])
    assert abs(e * e + n * n - (1 - ap)) < 1e-8 and n == 0, r
assert abs(float(rows[-1]["alpha_cumprod_prev"]) - 1) < 1e-12   # set_alpha_to_one
EOF

run 0 "$LDMC" schedule --sampler ddim --steps 10 --spacing trailing --steps-offset 3 --eta 1 --no-alpha-to-one
check "ddim trailing ignores the offset, eta 1 noise, abar_0 at the end" python3 - "$T/out" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["timestep"]) for r in rows] == list(range(999, 0, -100)), [r["timestep"] for r in rows]
assert all(float(r["c_noise"]) > 0 for r in rows[:-1])
assert abs(float(rows[-1]["alpha_cumprod_prev"]) - (1 - 0.00085)) < 1e-12
EOF

run 0 "$LDMC" schedule --sampler dpmpp2m --steps 20
check "dpmpp2m orders and final x0" python3 - "$T/out" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [int(r["order"]) for r in rows] == [1] + [2] * 18 + [1]
assert int(rows[0]["timestep"]) == 999 and int(rows[-1]["prev_timestep"]) == -1
assert float(rows[-1]["c_x"]) == 0 and float(rows[-1]["c_x0"]) == 1
assert abs(float(rows[0]["alpha_cumprod"]) - 0.0046601) < 5e-8   # SD-1.5's abar_999
EOF

run 0 "$LDMC" schedule --sampler ddpm --steps 4 --spacing linspace --variance fixed_large --schedule cosine --format table
out_has "# ddpm, 4 steps, linspace spacing" "fixed_large" "squaredcos_cap_v2" "c_noise"
check "table: a title, a header and 4 rows" test "$(wc -l <"$T/out")" -eq 6
check "ddpm linspace ends at t = 0 without noise" grep -Eq '^ +4 +0 +-1 .* 0\.00000000$' "$T/out"

run 0 "$LDMC" schedule --sampler dpmpp2m --steps 10 --schedule cosine --lambda-min-clipped -5.1 --spacing leading --steps-offset 1
check "lambda clipping: leading from last_timestep 996 (ratio 90)" test "$(sed -n 2p "$T/out" | cut -d, -f2)" = 901

# usage errors: one line, exit 2
run 2 "$LDMC" schedule --sampler euler
err_is_one_line_with "ldmc schedule:" "euler" "dpmpp2m"
run 2 "$LDMC" schedule --steps 0
err_is_one_line_with "'--steps'"
run 2 "$LDMC" schedule --steps 1001
err_is_one_line_with "'--steps'"
run 2 "$LDMC" schedule --steps 1000 --steps-offset 1
err_is_one_line_with "timestep 1000"
run 2 "$LDMC" schedule --sampler dpmpp2m --steps 1000 --spacing leading
err_is_one_line_with "repeats"
run 2 "$LDMC" schedule --sampler ddpm --eta 0.5
err_is_one_line_with "--eta is DDIM's"
run 2 "$LDMC" schedule --eta -1
err_is_one_line_with "--eta"
run 2 "$LDMC" schedule --spacing even
err_is_one_line_with "even"
run 2 "$LDMC" schedule --format json
err_is_one_line_with "json"
run 2 "$LDMC" schedule --schedule sigmoid
err_is_one_line_with "sigmoid"
run 2 "$LDMC" schedule --sampler ddim --final-sigmas zero
err_is_one_line_with "DPM-Solver++"
run 2 "$LDMC" schedule extra
err_is_one_line_with "extra"

summary cli_schedule
