#!/usr/bin/python3
"""Seconds per denoising step of the default model (models/default/ldm.ldmc:
U-Net c=32 on 8x8x4 latents, context 64x4) as `ldmc sample` runs it on
llvm-cpu (one compiled step graph: the U-Net on the conditional and, with
guidance, unconditional rows, the guidance combination and the DDIM update),
at batch 1 and 16, with and without classifier-free guidance; against the
same U-Net (tests/torch/unet_ref.py, the same configuration, seeded weights)
stepping in PyTorch eager in the same run: torch.no_grad() forward on the
2B (guidance) or B rows, eps = eps_u + w (eps_c - eps_u), and the DDIM
update, in a process of its own with the peers' best environment
(bench/peers.py). The FMA peak is measured in this run too.

usage: bench/sample_vs_torch.py [--bin BUILD/bin] [--threads 2] [--steps 20] [--batches 1,16]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import peers  # noqa: E402

peers.ensure()

import torch  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "torch"))
import unet_ref  # noqa: E402

C, LAT, CTX_DIM, TOKENS = 32, 8, 64, 4


def ldmc_step_s(a, batch, cfg):
    cmd = [os.path.join(a.bin, "ldmc"), "sample", "--prompt", "sneaker", "--n", str(batch), "--batch", str(batch),
           "--steps", str(a.steps), "--cfg", str(cfg), "--threads", str(a.threads), "--no-progress",
           "-o", os.path.join(a.tmp, "bench.png")]
    best = float("inf")
    for _ in range(a.repeats):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"ldmc sample failed: {r.stderr.strip()}")
        m = re.search(r"time: ([0-9.]+) s per step", r.stdout)
        best = min(best, float(m.group(1)))
    return best


def torch_child(a):
    torch.set_num_threads(a.threads)
    batch, cfg = a.torch_child
    guidance = cfg != 1
    conf = dict(unet_ref.DEFAULTS)
    conf.update({"channels": C, "context_dim": CTX_DIM})
    torch.manual_seed(0)
    model = unet_ref.UNet(conf).float().eval()
    rows = 2 * batch if guidance else batch
    x = torch.randn(batch, 4, LAT, LAT)
    ctx = torch.randn(rows, TOKENS, CTX_DIM)
    a_t, a_prev = 0.5, 0.6
    ts = []
    with torch.no_grad():
        for i in range(a.steps + 1):
            t0 = time.perf_counter()
            xin = torch.cat([x, x]) if guidance else x
            t = torch.full((rows,), 500.0)
            e = model(xin, t, ctx)
            if guidance:
                eu, ec = e[batch:], e[:batch]
                e = eu + cfg * (ec - eu)
            x0 = (x - (1 - a_t) ** 0.5 * e) / a_t ** 0.5
            x = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * e
            if i:
                ts.append(time.perf_counter() - t0)
    print(json.dumps({"s": min(ts)}))
    return 0


def torch_step_s(a, batch, cfg):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--threads", str(a.threads), "--steps",
                        str(a.steps), "--torch-child", str(batch), str(cfg)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"torch child failed: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])["s"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--torch-child", nargs=2, type=float)
    a = p.parse_args()
    if a.torch_child:
        a.torch_child = (int(a.torch_child[0]), a.torch_child[1])
        return torch_child(a)
    a.tmp = os.environ.get("TMPDIR", "/tmp")
    peak = peers.fma_peak(a.bin, a.threads)
    load0 = os.getloadavg()[0]
    print(f"default model sampling step on llvm-cpu vs PyTorch {torch.__version__} eager (no_grad), {a.threads} threads, "
          f"{a.steps} DDIM steps; U-Net c={C}, {LAT}x{LAT}x4 latents, context {CTX_DIM}x{TOKENS}; "
          f"FMA peak measured in this run: {peak:.1f} GFLOP/s; load average {load0:.2f}")
    print(f"{'batch':>5} {'guidance':>9} {'U-Net rows':>10} {'ldmc s/step':>12} {'torch s/step':>13} {'speedup':>8}")
    for b in [int(x) for x in a.batches.split(",")]:
        for cfg in (1.0, a.cfg):
            ours, theirs = ldmc_step_s(a, b, cfg), torch_step_s(a, b, cfg)
            rows = 2 * b if cfg != 1 else b
            print(f"{b:>5} {('w=%g' % cfg) if cfg != 1 else 'off':>9} {rows:>10} {ours:>12.4f} {theirs:>13.4f} "
                  f"{theirs / ours:>7.2f}x")
    print("ldmc s/step: the best of the runs' mean step time as `ldmc sample` reports it; torch: the best step.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
