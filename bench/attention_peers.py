#!/usr/bin/python3
"""The U-Net's attention shapes on ldmc's llvm-cpu backend against PyTorch CPU's
scaled dot-product attention, both measured in this run, for 1 and 2 threads.
FLOPs: 4 N M D per head for the forward, 8 N M D for the backward (its four
products; recomputed scores not counted, for either side), 8 heads.

usage: bench/attention_peers.py [--bin BUILD/bin] [--threads 1,2] [--reps 5] [--only TEXT] [--backward]

PyTorch gets [1, 8, N, D] contiguous f32 tensors (its best layout; ldmc reads
head-split strided views, as in the U-Net) in the peers' environment
(bench/peers.py: ATEN_CPU_CAPABILITY=avx512, set in this process only, before
torch loads). --backward also times the backward: ldmc's attention_lse,
delta and attention_grad_q / _kv (bench_llvm_cpu_attention --backward, from
q, k, v, y and ct) against torch.autograd.grad of the same attention given
the output's cotangent, and lists ldmc's kernels: the forward's attn and the
backward's attn_lse, attn_dq, attn_dkv, each in ms and GFLOP/s by the ops'
FLOP rules.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

peers.ensure()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sdpa(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v)
    # torch < 2.0: the private form (its CPU path materializes the N x M scores)
    return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, False)[0]


def best_of(fn, reps):
    fn()
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def torch_ms(n, m, d, reps, backward):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 8, n, d, generator=g, requires_grad=backward)
    k = torch.randn(1, 8, m, d, generator=g, requires_grad=backward)
    v = torch.randn(1, 8, m, d, generator=g, requires_grad=backward)
    if not backward:
        with torch.no_grad():
            return best_of(lambda: sdpa(q, k, v), reps)
    out = sdpa(q, k, v)
    ct = torch.randn(out.shape, generator=g)
    return best_of(lambda: torch.autograd.grad(out, (q, k, v), ct, retain_graph=True), reps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-rel", "bin"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=None)
    ap.add_argument("--backward", action="store_true")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY')}")
    head = f"{'shape':<24}{'thr':>4}{'N':>6}{'M':>6}{'D':>5}{'ldmc ms':>10}{'GF/s':>8}{'torch ms':>10}{'GF/s':>8}{'ldmc/torch':>11}"
    if a.backward:
        head += f"{'bwd ms':>9}{'GF/s':>7}{'torch':>9}{'GF/s':>7}{'ratio':>7}  ldmc kernels ms@GFLOP/s"
    print(head)
    for th in [int(x) for x in a.threads.split(",")]:
        torch.set_num_threads(th)
        cmd = [os.path.join(a.bin, "bench_llvm_cpu_attention"), "--json", "--threads", str(th), "--reps", str(a.reps)]
        if a.only:
            cmd += ["--only", a.only]
        if a.backward:
            cmd += ["--backward"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            flops = 4.0 * r["heads"] * r["N"] * r["M"] * r["D"]
            tms = torch_ms(r["N"], r["M"], r["D"], a.reps, False)
            tgf = flops / tms / 1e6
            row = (f"{r['name']:<24}{th:4d}{r['N']:6d}{r['M']:6d}{r['D']:5d}{r['ms']:10.3f}{r['gflops']:8.1f}"
                   f"{tms:10.3f}{tgf:8.1f}{r['gflops'] / tgf:11.2f}")
            if a.backward:
                bms = torch_ms(r["N"], r["M"], r["D"], a.reps, True)
                bgf = 2 * flops / bms / 1e6
                row += f"{r['bwd_ms']:9.3f}{r['bwd_gflops']:7.1f}{bms:9.3f}{bgf:7.1f}{r['bwd_gflops'] / bgf:7.2f} "
                for k in ("attn", "attn_lse", "attn_dq", "attn_dkv"):
                    if k + "_ms" in r:
                        row += f" {k}={r[k + '_ms']:.3f}@{r[k + '_gflops']:.0f}"
            print(row)
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
