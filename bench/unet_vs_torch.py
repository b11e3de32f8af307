#!/usr/bin/python3
"""U-Net forward (batch 1, context 1024x77) on ldmc's llvm-cpu backend against
PyTorch eager CPU with the same weights and the same thread count, plus the
max relative difference of the two outputs. Everything is measured in this
one run, so the ratios hold even on a busy machine.

usage: bench/unet_vs_torch.py [--bin BUILD/bin] [--configs 64x32,64x64,320x64]
                              [--threads 2] [--repeat 3] [--torch-repeat 2]

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


def peer_env():
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["ATEN_CPU_CAPABILITY"] = "avx512"
    return env


if os.environ.get("LDMC_BENCH_ENV") != "1":  # re-exec with the peer's environment before torch loads
    env = peer_env()
    env["LDMC_BENCH_ENV"] = "1"
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests", "torch"))
import unet_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-llvmcpu-rel", "bin"))
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
            r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if r.returncode != 0:
                print(r.stdout, r.stderr)
                return 1
            kv = {}
            for line in r.stdout.split("\n"):
                for tok in line.replace("run_ms ", "").split():
                    if "=" in tok:
                        k, v = tok.split("=", 1)
                        kv[k] = float(v)
            ours = unet_ref.st_read(opath)["out_sample"]
        with torch.no_grad():
            model(sample, timestep, ctx)  # warm-up
            ts = []
            for _ in range(a.torch_repeat):
                t0 = time.perf_counter()
                want = model(sample, timestep, ctx)
                ts.append((time.perf_counter() - t0) * 1e3)
        want = want.numpy()
        rel = float(np.max(np.abs(ours - want)) / max(np.max(np.abs(want)), 1e-30))
        torch_ms = sorted(ts)[len(ts) // 2]
        rows.append((c, hw, kv["gflop"], kv["compile_s"], kv["median"], torch_ms, rel))
        print(f"c={c} {hw}x{hw}: ldmc {kv['median']:.1f} ms (compile {kv['compile_s']:.1f} s), "
              f"torch {torch_ms:.1f} ms, max rel diff {rel:.2e}", flush=True)
    print(f"\n{'config':<14}{'GFLOP':>8}{'ldmc ms':>11}{'torch ms':>11}{'speedup':>9}"
          f"{'ldmc GF/s':>11}{'torch GF/s':>11}{'compile s':>11}{'max rel diff':>14}")
    for c, hw, gf, cs, ms, tms, rel in rows:
        print(f"c={c} {hw}x{hw}".ljust(14) + f"{gf:8.1f}{ms:11.1f}{tms:11.1f}{tms / ms:9.2f}"
              f"{gf / ms * 1e3:11.1f}{gf / tms * 1e3:11.1f}{cs:11.1f}{rel:14.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
