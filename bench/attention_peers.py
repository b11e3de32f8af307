#!/usr/bin/python3
"""The U-Net's attention shapes on ldmc's llvm-cpu backend against PyTorch CPU's
torch.nn.functional.scaled_dot_product_attention, both measured in this run,
for 1 and 2 threads. FLOPs: 4 N M D per head, 8 heads.

usage: bench/attention_peers.py [--bin BUILD/bin] [--threads 1,2] [--reps 5] [--only TEXT]

PyTorch gets [1, 8, N, D] contiguous f32 tensors (its best layout; ldmc reads
head-split strided views, as in the U-Net) and ATEN_CPU_CAPABILITY=avx512,
set in this process's environment only before torch loads.
"""
import argparse
import json
import os
import subprocess
import sys
import time

if os.environ.get("LDMC_BENCH_ENV") != "1":
    env = dict(os.environ)
    env["ATEN_CPU_CAPABILITY"] = "avx512"
    env["LDMC_BENCH_ENV"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sdpa(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v)
    # torch < 2.0: the private form (its CPU path materializes the N x M scores)
    return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, False)[0]


def torch_ms(n, m, d, reps):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 8, n, d, generator=g)
    k = torch.randn(1, 8, m, d, generator=g)
    v = torch.randn(1, 8, m, d, generator=g)
    with torch.no_grad():
        sdpa(q, k, v)
        best = 1e30
        for _ in range(reps):
            t0 = time.perf_counter()
            sdpa(q, k, v)
            best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-rel", "bin"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY')}")
    print(f"{'shape':<24}{'thr':>4}{'N':>6}{'M':>6}{'D':>5}{'ldmc ms':>10}{'GF/s':>8}{'torch ms':>10}{'GF/s':>8}"
          f"{'ldmc/torch':>11}")
    for th in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(th)
        cmd = [os.path.join(a.bin, "bench_llvm_cpu_attention"), "--json", "--threads", str(th), "--reps", str(a.reps)]
        if a.only:
            cmd += ["--only", a.only]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            tms = torch_ms(r["N"], r["M"], r["D"], a.reps)
            flops = 4.0 * r["heads"] * r["N"] * r["M"] * r["D"]
            tgf = flops / tms / 1e6
            print(f"{r['name']:<24}{th:4d}{r['N']:6d}{r['M']:6d}{r['D']:5d}{r['ms']:10.3f}{r['gflops']:8.1f}"
                  f"{tms:10.3f}{tgf:8.1f}{r['gflops'] / tgf:11.2f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
