#!/usr/bin/python3
"""Peak activation memory of PyTorch's forward of the same U-Net, to set
beside ldmc's planned arena (docs/passes.md).

The model is tests/torch/unet_ref.py (an independent definition of the
diffusers SD-1.5 UNet2DConditionModel family, eager attention as diffusers
runs it without xformers), float32, batch 1, torch.no_grad(), on the CPU.

Peak = the process's peak resident set during one forward minus the resident
set just before it: the high-water mark is reset through /proc/self/clear_refs
("5") after the weights and inputs exist, and glibc is told to serve every
allocation over 64 KiB by mmap (MALLOC_MMAP_THRESHOLD_, set before torch
loads), so freed tensors leave the resident set at once and the mark follows
the live tensors. Weights are excluded, as they are from ldmc's arena.

usage: passes_torch_memory.py [--channels 64,320] [--latent 64] [--context 1024x77] [--threads N]
"""
import argparse
import os
import subprocess
import sys


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def measure(c, latent, ctx_dim, tokens, threads):
    import time

    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "torch"))
    import unet_ref

    torch.set_num_threads(threads)
    cfg = dict(unet_ref.DEFAULTS)
    cfg.update(channels=c, context_dim=ctx_dim)
    torch.manual_seed(0)
    model = unet_ref.UNet(cfg).eval()
    sample = torch.randn(1, 4, latent, latent)
    t = torch.tensor([500.0])
    ctx = torch.randn(1, tokens, ctx_dim)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_kib("VmRSS")
    t0 = time.time()
    with torch.no_grad():
        out = model(sample, t, ctx)
    dt = time.time() - t0
    peak = status_kib("VmHWM")
    assert out.shape == (1, 4, latent, latent)
    return weights, (peak - before) * 1024, dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", default="64,320")
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--context", default="1024x77")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode: measure one width
    a = ap.parse_args()
    d, t = (int(x) for x in a.context.split("x"))
    if a.one:
        w, peak, dt = measure(a.one, a.latent, d, t, a.threads)
        print(f"{a.one} {w} {peak} {dt:.2f}")
        return
    print(f"# PyTorch eager U-Net forward, f32, batch 1, latent {a.latent}x{a.latent}x4, context {a.context}")
    print(f"{'c':>5} {'weights MiB':>12} {'peak activations MiB':>21} {'forward s':>10}")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    for c in (int(x) for x in a.channels.split(",")):
        # a fresh process per width: the high-water mark starts clean
        r = subprocess.run([sys.executable, __file__, "--one", str(c), "--latent", str(a.latent), "--context",
                            a.context, "--threads", str(a.threads)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            sys.exit(1)
        _, w, peak, dt = r.stdout.split()
        print(f"{c:>5} {int(w) / 2**20:>12.1f} {int(peak) / 2**20:>21.1f} {float(dt):>10.2f}")


if __name__ == "__main__":
    main()
