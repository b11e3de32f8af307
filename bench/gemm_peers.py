#!/usr/bin/python3
"""The U-Net's GEMM and convolution shapes on ldmc's llvm-cpu backend against
OpenBLAS sgemm (through numpy) and against the machine's FMA peak, all
measured in this one run (bench_llvm_cpu_gemm measures the peak with an
AVX-512 FMA loop on the same threads).

usage: bench/gemm_peers.py [--bin BUILD/bin] [--threads 2] [--c 320] [--reps 5]

A convolution is compared with sgemm of its im2col product (M = Cout,
K = Cin*9, N = Ho*Wo) with the im2col itself not timed: the peer's best case.
OpenBLAS gets its best: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed
(they force AVX2 kernels on these machines) in this process's environment
only, before numpy loads; OPENBLAS_NUM_THREADS is the thread count.
"""
import argparse
import json
import os
import subprocess
import sys
import time

if os.environ.get("LDMC_BENCH_ENV") != "1":
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["LDMC_BENCH_ENV"] = "1"
    threads = "2"
    for i, x in enumerate(sys.argv):
        if x == "--threads" and i + 1 < len(sys.argv):
            threads = sys.argv[i + 1]
    env["OPENBLAS_NUM_THREADS"] = threads
    env["OMP_NUM_THREADS"] = threads
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sgemm_ms(m, k, n, reps):
    a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-llvmcpu-rel", "bin"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--c", type=int, default=320)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    cmd = [os.path.join(a.bin, "bench_llvm_cpu_gemm"), "--json", "--threads", str(a.threads), "--c", str(a.c),
           "--reps", str(a.reps)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    peak, rows = None, []
    for line in out.splitlines():
        r = json.loads(line)
        if r["kind"] == "peak":
            peak = r["gflops"]
            continue
        if r["conv"]:
            k = 3 if r["conv"] == 1 else 1
            ho = (r["c"] + 2 * (k // 2) - k) // r["stride"] + 1
            wo = (r["d"] + 2 * (k // 2) - k) // r["stride"] + 1
            m, kk, n = r["b"], r["a"] * k * k, ho * wo
        else:
            m, kk, n = r["a"], r["b"], r["c"]
        flops = 2.0 * m * kk * n
        bl = sgemm_ms(m, kk, n, a.reps)
        rows.append((r["name"], m, kk, n, r["gflops"], flops / bl / 1e6))
    print(f"numpy {np.__version__}; FMA peak measured in this run ({a.threads} threads): {peak:.1f} GFLOP/s")
    print(f"{'shape (c=%d)' % a.c:<34}{'M':>6}{'K':>7}{'N':>6}{'ldmc GF/s':>11}{'sgemm GF/s':>12}"
          f"{'vs sgemm':>10}{'of peak':>9}")
    for name, m, k, n, ours, blas in rows:
        print(f"{name:<34}{m:6d}{k:7d}{n:6d}{ours:11.1f}{blas:12.1f}{ours / blas:10.2f}{ours / peak:9.0%}")
    gm = lambda xs: float(np.exp(np.mean(np.log(xs))))  # noqa: E731
    print(f"{'geometric mean':<53}{gm([r[4] for r in rows]):11.1f}{gm([r[5] for r in rows]):12.1f}"
          f"{gm([r[4] / r[5] for r in rows]):10.2f}{gm([r[4] for r in rows]) / peak:9.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
