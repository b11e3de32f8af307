#!/usr/bin/python3
"""U-Net forward (batch 1, context 1024x77) on ldmc's llvm-cpu backend against
PyTorch eager CPU with the same weights and the same thread count, plus the
max relative difference of the two outputs. Everything is measured in this
one run, so the ratios hold even on a busy machine.

usage: bench/unet_vs_torch.py [--bin BUILD/bin] [--configs 64x32,64x64,320x64]
                              [--threads 2] [--repeat 3] [--torch-repeat 2] [--bf16]

Also in the same run: OpenBLAS sgemm (numpy) on the config's main matrix
shapes and the machine's FMA peak (bench_llvm_cpu_gemm), so the whole-step
GFLOP/s is printed as a fraction of both. --bf16 adds a run with bf16 GEMM
operands (LDMC_LLVM_CPU_BF16=1: vdpbf16ps, f32 accumulation) and its error.
"first ms" is the first run after compiling: weights are prepacked there.

The peer gets its best: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed and
ATEN_CPU_CAPABILITY=avx512 is set, in this process's environment only (the
script re-executes itself with that environment before importing torch).
Weights and inputs come from tests/torch/unet_ref.py's PyTorch model (its
random init), written to safetensors and read by bench_llvm_cpu_unet.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


sys.path.insert(0, HERE)
import peers  # noqa: E402

peers.ensure()  # re-exec with the peers' environment before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "torch"))
import unet_ref  # noqa: E402


def sgemm_gflops(m, k, n, reps=3):
    a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * n / best / 1e9


def unet_sgemm(c, hw):
    """geometric mean of sgemm GFLOP/s over the config's dominant shapes:
    the top-level 3x3 convolution as im2col GEMM, the attention projections
    and the feed-forward input (tokens x c x 8c)."""
    tokens = hw * hw
    shapes = [(c, 9 * c, tokens), (tokens, c, c), (tokens, c, 8 * c), (2 * c, 18 * c, tokens // 4)]
    xs = [sgemm_gflops(m, k, n) for m, k, n in shapes]
    return float(np.exp(np.mean(np.log(xs))))


def run_ldmc(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        return None
    kv = {}
    for line in r.stdout.split("\n"):
        for tok in line.replace("run_ms ", "").split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                kv[k] = float(v)
    return kv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--bf16", action="store_true", help="also run with bf16 GEMM operands")
    ap.add_argument("--configs", default="64x32,64x64,320x64", help="c x latent side, comma separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--torch-repeat", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    exe = os.path.join(a.bin, "bench_llvm_cpu_unet")
    rows = []
    for spec in a.configs.split(","):
        c, hw = (int(x) for x in spec.split("x"))
        cfg = dict(unet_ref.DEFAULTS)
        cfg.update({"channels": c, "context_dim": 1024})
        torch.manual_seed(0)
        model = unet_ref.UNet(cfg).eval().float()
        with torch.no_grad():  # unet_ref initializes like diffusers; give norms some spread too
            for name, p in model.named_parameters():
                if name.endswith("weight") and p.dim() == 1:
                    p.uniform_(0.5, 1.5)
                elif name.endswith("bias"):
                    p.uniform_(-0.1, 0.1)
        g = torch.Generator().manual_seed(1)
        sample = torch.randn(1, 4, hw, hw, generator=g)
        timestep = torch.tensor([500.0])
        ctx = torch.randn(1, 77, 1024, generator=g)
        with tempfile.TemporaryDirectory() as tmp:
            wpath, ipath, opath = (os.path.join(tmp, n) for n in ("w.safetensors", "in.safetensors", "out.safetensors"))
            unet_ref.st_write(wpath, {k: v.detach().numpy() for k, v in model.state_dict().items()}, "F32")
            unet_ref.st_write(ipath, {"sample": sample.numpy(), "timestep": timestep.numpy(),
                                      "encoder_hidden_states": ctx.numpy()}, "F32")
            cmd = [exe, "--channels", str(c), "--latent", f"{hw}x{hw}", "--context", "1024x77", "--threads",
                   str(a.threads), "--repeat", str(a.repeat), "--weights", wpath, "--inputs", ipath, "--out", opath]
            env = dict(os.environ)
            env.pop("LDMC_LLVM_CPU_BF16", None)
            kv = run_ldmc(cmd, env)
            if kv is None:
                return 1
            ours = unet_ref.st_read(opath)["out_sample"]
            kb, ours_bf16 = None, None
            if a.bf16:
                env["LDMC_LLVM_CPU_BF16"] = "1"
                kb = run_ldmc(cmd, env)
                if kb is None:
                    return 1
                ours_bf16 = unet_ref.st_read(opath)["out_sample"]
        with torch.no_grad():
            model(sample, timestep, ctx)  # warm-up
            ts = []
            for _ in range(a.torch_repeat):
                t0 = time.perf_counter()
                want = model(sample, timestep, ctx)
                ts.append((time.perf_counter() - t0) * 1e3)
        want = want.numpy()
        scale = max(np.max(np.abs(want)), 1e-30)
        rel = float(np.max(np.abs(ours - want)) / scale)
        torch_ms = sorted(ts)[len(ts) // 2]
        sg = unet_sgemm(c, hw)
        bf = None
        if kb is not None:
            bf = (kb["median"], float(np.max(np.abs(ours_bf16 - want)) / scale))
        rows.append((c, hw, kv["gflop"], kv["compile_s"], kv["median"], kv.get("first", float("nan")), torch_ms, rel,
                     sg, bf))
        print(f"c={c} {hw}x{hw}: ldmc {kv['median']:.1f} ms (compile {kv['compile_s']:.1f} s), "
              f"torch {torch_ms:.1f} ms, max rel diff {rel:.2e}, sgemm {sg:.1f} GFLOP/s", flush=True)
    peak = peers.fma_peak(a.bin, a.threads)
    print(f"\nFMA peak measured in this run ({a.threads} threads): {peak:.1f} GFLOP/s; "
          f"sgemm: numpy {np.__version__} (OpenBLAS) on each config's main GEMM shapes")
    print(f"{'config':<14}{'GFLOP':>8}{'ldmc ms':>10}{'first ms':>10}{'torch ms':>10}{'speedup':>9}"
          f"{'ldmc GF/s':>10}{'torch GF/s':>11}{'sgemm GF/s':>11}{'vs sgemm':>9}{'of peak':>8}"
          f"{'compile s':>10}{'max rel diff':>13}")
    for c, hw, gf, cs, ms, first, tms, rel, sg, bf in rows:
        ours = gf / ms * 1e3
        print(f"c={c} {hw}x{hw}".ljust(14) + f"{gf:8.1f}{ms:10.1f}{first:10.1f}{tms:10.1f}{tms / ms:9.2f}"
              f"{ours:10.1f}{gf / tms * 1e3:11.1f}{sg:11.1f}{ours / sg:9.2f}{ours / peak:8.0%}{cs:10.1f}{rel:13.2e}")
        if bf is not None:
            bms, brel = bf
            print(f"  bf16".ljust(14) + f"{'':8}{bms:10.1f}{'':10}{'':10}{tms / bms:9.2f}{gf / bms * 1e3:10.1f}"
                  f"{'':11}{'':11}{gf / bms * 1e3 / sg:9.2f}{gf / bms * 1e3 / peak:8.0%}{'':10}{brel:13.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
