#!/usr/bin/python3
"""U-Net training-step throughput: ldmc's step graph on llvm-cpu
(bench_llvm_cpu_train: U-Net + MSE on epsilon + backward + AdamW, compiled
once, state fed back every step) against PyTorch eager training the same
model (tests/torch/unet_ref.py, torch.optim.AdamW, MSE on epsilon, the same
batch, weights and thread count; each torch run in a process of its own),
in float32 and in bf16 (ldmc's --bf16 compile option: bf16 GEMM/convolution
operands with f32 accumulation; torch: torch.autocast("cpu", torch.bfloat16)).
Everything is measured in this one run, and the load average is printed: with
other processes on the cores, eager torch's thousands of small parallel
regions slow down far more than ldmc's step, so compare runs on a quiet
machine.

usage: bench/train_vs_torch.py [--bin BUILD/bin] [--configs 32x8x32,64x16x16] [--context 64x8]
                               [--threads 2] [--steps 5] [--torch-steps 5] [--no-bf16]
                               [--compile-config 320x64] [--no-compile]

A config is c x latent side x batch. Also printed: the forward / backward /
optimizer shares of ldmc's step time and the GFLOP/s of each phase's kernels
(the profiling hook, kernels grouped by their root node's scope), the
machine's FMA peak measured in this run (bench_llvm_cpu_gemm), the first
step's loss on both sides (same weights and batch: they must agree), and
the cold compile time (empty kernel cache) of the --compile-config step,
batch 1, context 1024x77. Lr is 1e-4 on both sides, weight decay 0.

The peer gets its best: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed and
ATEN_CPU_CAPABILITY=avx512 is set, in this process's environment only (the
script re-executes itself with that environment before importing torch).
"""
import argparse
import json
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

LR = 1e-4


def run_ldmc(cmd, env):
    """bench_llvm_cpu_train's key=value lines as {prefix: {key: value}}"""
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    out = {}
    for line in r.stdout.splitlines():
        toks = line.split()
        if not toks:
            continue
        if toks[0] == "losses":
            out["losses"] = [float(x) for x in toks[1:]]
            continue
        if toks[0] == "phase_kernels":
            out.setdefault("kernels", {})[toks[1]] = toks[2:]
            continue
        if toks[0] == "attn_bwd":  # attention backward: ms=, kernels=, then name=ms@GFLOP/s entries
            out["attn_bwd"] = {t.split("=", 1)[0]: t.split("=", 1)[1] for t in toks[1:] if "=" in t}
            continue
        d = out.setdefault("", {})
        for t in toks:  # a word without '=' opens a group: "phase_ms fwd=1 ... phase_gflops fwd=2"
            if "=" not in t:
                d = out.setdefault(t, {})
                continue
            k, v = t.split("=", 1)
            d[k] = float(v)
    return out


def make_model(c, ctx_dim):
    cfg = dict(unet_ref.DEFAULTS)
    cfg.update({"channels": c, "context_dim": ctx_dim})
    torch.manual_seed(0)
    model = unet_ref.UNet(cfg).float().train()
    with torch.no_grad():  # give norms some spread too (as bench/unet_vs_torch.py)
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 1:
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.uniform_(-0.1, 0.1)
    return model


BATCH_NAMES = ["noisy_sample", "timestep", "encoder_hidden_states", "target"]


def torch_child(a):
    """--torch-child: one (config, mode) in a process of its own (sharing one,
    later runs' float32 steps were at times 5-20x slower than in a fresh
    process), from the weights and batch files ldmc read. Prints a JSON line:
    the best ms of --torch-steps steps after one warm-up, the first step's loss."""
    torch.set_num_threads(a.threads)
    c, ctx_dim, wpath, ipath, mode = a.torch_child
    cfg = dict(unet_ref.DEFAULTS)
    cfg.update({"channels": int(c), "context_dim": int(ctx_dim)})
    model = unet_ref.UNet(cfg).float().train()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in unet_ref.st_read(wpath).items()}, strict=True)
    ins = unet_ref.st_read(ipath)
    x, t, ctx, eps = (torch.from_numpy(ins[k]) for k in BATCH_NAMES)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    bf16 = mode == "bf16"
    first, _ = unet_ref.mse_train_step(model, opt, x, t, ctx, eps, bf16=bf16)
    ts = []
    for _ in range(a.torch_steps):
        t0 = time.perf_counter()
        unet_ref.mse_train_step(model, opt, x, t, ctx, eps, bf16=bf16)
        ts.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"ms": min(ts), "loss0": float(first)}))
    return 0


def torch_train(a, c, ctx_dim, wpath, ipath, mode):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--threads", str(a.threads), "--torch-steps",
                        str(a.torch_steps), "--torch-child", str(c), str(ctx_dim), wpath, ipath, mode],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        raise SystemExit("the torch run failed")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return d["ms"], d["loss0"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--configs", default="32x8x32,64x16x16", help="c x latent side x batch, comma separated")
    ap.add_argument("--context", default="64x8", help="context width x tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--torch-steps", type=int, default=5)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--compile-config", default="320x64", help="c x latent side of the compile-time row")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--torch-child", nargs=5, metavar=("C", "CTX_DIM", "W", "IN", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        return torch_child(a)
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]  # other processes on the cores slow eager torch far more than ldmc
    exe = os.path.join(a.bin, "bench_llvm_cpu_train")
    dim, tokens = (int(x) for x in a.context.split("x"))
    modes = ["f32"] + ([] if a.no_bf16 else ["bf16"])
    rows = []
    for spec in a.configs.split(","):
        c, hw, bsz = (int(x) for x in spec.split("x"))
        model = make_model(c, dim)
        g = torch.Generator().manual_seed(1)
        batch = (torch.randn(bsz, 4, hw, hw, generator=g), torch.randint(0, 1000, (bsz,), generator=g).float(),
                 torch.randn(bsz, tokens, dim, generator=g), torch.randn(bsz, 4, hw, hw, generator=g))
        with tempfile.TemporaryDirectory() as tmp:
            wpath, ipath = os.path.join(tmp, "w.safetensors"), os.path.join(tmp, "in.safetensors")
            unet_ref.st_write(wpath, {k: v.detach().numpy() for k, v in model.state_dict().items()}, "F32")
            unet_ref.st_write(ipath, dict(zip(BATCH_NAMES, (b.numpy() for b in batch))), "F32")
            ours = {}
            for m in modes:
                cmd = [exe, "--channels", str(c), "--latent", f"{hw}x{hw}x4", "--context", a.context, "--batch",
                       str(bsz), "--threads", str(a.threads), "--steps", str(a.steps), "--lr", str(LR),
                       "--weights", wpath, "--inputs", ipath] + (["--bf16"] if m == "bf16" else [])
                ours[m] = run_ldmc(cmd, dict(os.environ))
                ours[m]["donated"] = run_ldmc(cmd + ["--donate", "--profile-steps", "0"], dict(os.environ))
                s, sd = ours[m]["step_ms"], ours[m]["donated"]["step_ms"]
                print(f"c={c} {hw}x{hw} b{bsz} {m}: ldmc {s['min']:.1f} ms/step, donated {sd['min']:.1f} "
                      f"(compile {ours[m]['']['compile_s']:.1f} s)", flush=True)
            theirs = {}
            for m in modes:
                theirs[m] = torch_train(a, c, dim, wpath, ipath, m)
                print(f"c={c} {hw}x{hw} b{bsz} {m}: torch {theirs[m][0]:.1f} ms/step", flush=True)
        rows.append((c, hw, bsz, ours, theirs))
    load_runs = os.getloadavg()[0]
    peak = peers.fma_peak(a.bin, a.threads)
    comp = None
    if not a.no_compile:
        cc, chw = (int(x) for x in a.compile_config.split("x"))
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ)
            env["LDMC_CACHE_DIR"] = cache  # cold: nothing compiled before
            r = run_ldmc([exe, "--channels", str(cc), "--latent", f"{chw}x{chw}x4", "--context", "1024x77",
                          "--batch", "1", "--threads", str(a.threads), "--compile-only"], env)
            comp = (cc, chw, r[""])

    print(f"\nU-Net training step (MSE on epsilon, AdamW lr {LR}) on llvm-cpu vs PyTorch {torch.__version__} eager, "
          f"{a.threads} threads, context {a.context}; FMA peak measured in this run: {peak:.1f} GFLOP/s; "
          f"load average {load0:.2f} at the start, {load_runs:.2f} after the runs ({os.cpu_count()} CPUs)")
    hdr = (f"{'config':<18}{'mode':<6}{'GFLOP':>8}{'ldmc ms':>9}{'donated':>9}{'img/s':>8}{'torch ms':>9}{'img/s':>8}"
           f"{'speedup':>8}{'GF/s':>7}{'of peak':>8}{'fwd':>6}{'bwd':>6}{'opt':>6}{'gaps':>6}"
           f"{'fwd GF/s':>9}{'bwd GF/s':>9}{'loss0 rel':>10}")
    print(hdr)
    for c, hw, bsz, ours, theirs in rows:
        for m in modes:
            o, (tms, tl0) = ours[m], theirs[m]
            s, ph, gfl = o["step_ms"], o.get("phase_ms", {}), o[""]["gflop"]
            dms = o["donated"]["step_ms"]["min"]
            tot = sum(ph.get(k, 0) for k in ("fwd", "bwd", "opt", "gaps")) or float("nan")
            rel = abs(o["losses"][0] - tl0) / abs(tl0)
            print(f"c={c} {hw}x{hw}x4 b{bsz}".ljust(18) + f"{m:<6}{gfl:8.1f}{s['min']:9.1f}{dms:9.1f}"
                  f"{bsz / s['min'] * 1e3:8.1f}{tms:9.1f}{bsz / tms * 1e3:8.1f}{tms / s['min']:8.2f}"
                  f"{gfl / s['min'] * 1e3:7.1f}{gfl / s['min'] * 1e3 / peak:8.0%}"
                  + "".join(f"{ph.get(k, 0) / tot:6.0%}" for k in ("fwd", "bwd", "opt", "gaps"))
                  + f"{o.get('phase_gflops', {}).get('fwd', 0):9.1f}"
                  f"{o.get('phase_gflops', {}).get('bwd', 0):9.1f}{rel:10.1e}")
    print("ms: the best of the timed steps on each side (other processes on the cores only slow steps down).\n"
          "ldmc ms: fresh output tensors every step, the state swapped in; donated: compiled with the state\n"
          "pairing as ldmc_compile_opts.donate (updated in place, nothing allocated). img/s, speedup, GF/s,\n"
          "of peak and the shares are of the fresh-output step. fwd/bwd/opt/gaps: shares of ldmc's profiled\n"
          "step time (kernel wall time by the root node's scope; gaps: between kernels); fwd/bwd GF/s: each\n"
          "phase's kernels.\n"
          "loss0 rel: |ldmc - torch| / torch of the first step's loss (same weights and batch).")
    for c, hw, bsz, ours, _ in rows:
        for m in modes:
            for phase, toks in ours[m].get("kernels", {}).items():
                print(f"  c={c} {m} {phase} kernels (ms/step @ GFLOP/s): {' '.join(toks)}")
    if comp:
        cc, chw, r = comp
        print(f"compile of the c={cc} {chw}x{chw}x4 training step (batch 1, context 1024x77, cold kernel cache): "
              f"build {r['build_s']:.1f} s + compile {r['compile_s']:.1f} s; {r['gflop']:.0f} GFLOP per step, "
              f"{r['params'] / 1e6:.0f}M parameters, state {r['state_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
