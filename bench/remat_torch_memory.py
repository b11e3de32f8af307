#!/usr/bin/python3
"""Peak memory of PyTorch's gradient step for the same U-Net, to set beside
ldmc's planned arena with and without rematerialization (bench/remat_memory.c,
docs/passes.md "remat").

The model is tests/torch/unet_ref.py (an independent definition of the
diffusers UNet2DConditionModel family, eager attention as diffusers runs it
without xformers), float32, batch 1, on the CPU. One step: out = model(sample,
t, ctx); out.sum().backward(), gradients with respect to every weight
(--wrt weights, what `ldmc_grad` of sum(out) computes) or to the sample only
(--wrt sample: weights frozen). --wrt train is the AdamW step bench/remat_memory.c
plans as `--graph train`: loss = sum(out^2), backward, torch.optim.AdamW
(weight decay 0, no clipping); measured on the second step, once the Adam
state exists (as ldmc's donated state does, outside its arena), with the
gradients set to None before it.

Peak = the process's peak resident set during the step minus the resident set
just before it, as bench/passes_torch_memory.py measures a forward: the
high-water mark is reset through /proc/self/clear_refs ("5") once the weights
and inputs exist, and glibc serves every allocation over 64 KiB by mmap
(MALLOC_MMAP_THRESHOLD_, set before torch loads), so freed tensors leave the
resident set at once. Weights are excluded (ldmc keeps them outside its
arena); the .grad tensors are included (ldmc's arena holds the gradient
outputs).

usage: remat_torch_memory.py [--channels 320] [--latent 64] [--context 1024x77] [--threads 1]
                             [--wrt weights|sample|train]
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


def measure(c, latent, ctx_dim, tokens, threads, wrt):
    import time

    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "torch"))
    import unet_ref

    torch.set_num_threads(threads)
    cfg = dict(unet_ref.DEFAULTS)
    cfg.update(channels=c, context_dim=ctx_dim)
    torch.manual_seed(0)
    model = unet_ref.UNet(cfg).eval()
    for p in model.parameters():
        p.requires_grad_(wrt != "sample")
    sample = torch.randn(1, 4, latent, latent, requires_grad=(wrt == "sample"))
    t = torch.tensor([500.0])
    ctx = torch.randn(1, tokens, ctx_dim)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0) if wrt == "train" else None

    def step():
        out = model(sample, t, ctx)
        if opt is None:
            out.sum().backward()
            return out
        (out * out).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out

    if opt is not None:
        step()  # creates the Adam state
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_kib("VmRSS")
    t0 = time.time()
    out = step()
    dt = time.time() - t0
    peak = status_kib("VmHWM")
    assert out.shape == (1, 4, latent, latent)
    return weights, (peak - before) * 1024, dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", default="320")
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--context", default="1024x77")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wrt", default="weights", choices=["weights", "sample", "train"])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode: measure one width
    a = ap.parse_args()
    d, t = (int(x) for x in a.context.split("x"))
    if a.one:
        w, peak, dt = measure(a.one, a.latent, d, t, a.threads, a.wrt)
        print(f"{a.one} {w} {peak} {dt:.2f}")
        return
    what = "an AdamW step on sum(out^2)" if a.wrt == "train" else f"forward + backward of sum(out) wrt {a.wrt}"
    print(f"# PyTorch eager U-Net {what}, f32, batch 1, "
          f"latent {a.latent}x{a.latent}x4, context {a.context}, {a.threads} thread(s)")
    print(f"{'c':>5} {'weights MiB':>12} {'peak MiB':>10} {'step s':>9}")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    for c in (int(x) for x in a.channels.split(",")):
        # a fresh process per width: the high-water mark starts clean
        r = subprocess.run([sys.executable, __file__, "--one", str(c), "--latent", str(a.latent), "--context",
                            a.context, "--threads", str(a.threads), "--wrt", a.wrt], env=env, capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            sys.exit(1)
        _, w, peak, dt = r.stdout.split()
        print(f"{c:>5} {int(w) / 2**20:>12.1f} {int(peak) / 2**20:>10.1f} {float(dt):>9.2f}")


if __name__ == "__main__":
    main()
