#!/usr/bin/python3
"""Scaling model of data-parallel training (docs/distributed.md, "A scaling
model"): images/s and efficiency for 2..64 machines at each U-Net width.

Inputs, all measured or counted by ldmc:
  - per width, the training FLOPs per image and per step (forward + backward
    per image, optimizer per step) and the parameter count: `ldmc stats
    --model unet --train` for the miniature family (8x8x4 latents, 64x4
    context), `ldmc stats` (forward) x (1 + 2.07) for the SD-1.5 family at
    64x64x4 / 1024x77 (backward/forward FLOP ratio as counted at c=32/64);
  - the achieved training GFLOP/s of one machine, from `--measured C:IMG_S`
    (bench/dp_train.sh, 1 rank x 2 threads, batch 64): a width not measured
    takes the nearest measured width's rate;
  - a second, assumed machine class: an accelerator with --fast-tflops
    effective training TFLOP/s (default 100), where communication matters;
  - all-reduce cost alpha (latency) and beta (bandwidth): `--local A_US:GBS`
    from bench_allreduce on this machine (2 ranks, shared memory), and two
    stated networks, 25 GbE (20 us, 2.9 GB/s) and 100 Gb/s InfiniBand
    (3 us, 12 GB/s).
Model: weak scaling, each machine keeps --per-machine images per step;
ring all-reduce of G = 4 x params bytes: T_ar(N) = 2 (N-1)/N G / beta +
2 (N-1) alpha; buckets overlap the backward (fraction f_bwd of the compute),
so the exposed time is max(T_ar(last 4 MiB bucket), T_ar - f_bwd T_comp);
T_step = T_comp + exposed; images/s = N b / T_step; efficiency = T_comp / T_step.
Not modelled: stragglers, contention between the communication thread and
compute on a machine, stepwise network topology (a two-level fat tree), and
the optimizer step's own time (it is counted in T_comp)."""
import argparse
import json
import os
import subprocess
import sys

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--ldmc', default=os.path.join(os.path.dirname(__file__), '..', 'build', 'bin', 'ldmc'))
p.add_argument('--measured', required=True, help='C:IMG_S[,C:IMG_S...] training images/s on one machine')
p.add_argument('--local', required=True, help='A_US:GBS all-reduce latency (us) and bandwidth (GB/s) measured here')
p.add_argument('--per-machine', type=int, default=64, help='images per machine per step (default 64)')
p.add_argument('--machines', default='1,2,4,8,16,32,64')
p.add_argument('--mini', default='32,64,96,128', help='miniature widths (8x8x4 latents)')
p.add_argument('--sd', default='64,128,320,768', help='SD-1.5 family widths (64x64x4 latents)')
p.add_argument('--fast-tflops', type=float, default=100.0,
               help='an accelerator-class machine: effective training TFLOP/s assumed (default 100)')
a = p.parse_args()

BUCKET = 4 << 20
BWD_RATIO = 2.07


def stats(args):
    out = subprocess.run([a.ldmc, 'stats', '--model', 'unet', '--format', 'json', '--target', 'interp'] + args,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)['widths']


rows = []
for w in stats(['--train', '--channels', a.mini, '--latent', '8x8x4', '--context', '64x4']):
    ph = w['phases']
    fb = sum(ph[k]['mac_flops'] + ph[k]['other_flops'] for k in ('forward', 'backward'))
    opt = ph['optimizer']['mac_flops'] + ph['optimizer']['other_flops']
    bf = (ph['backward']['mac_flops'] + ph['backward']['other_flops']) / fb
    rows.append(('8x8x4', w['channels'], w['params'], fb, opt, bf))
for w in stats(['--channels', a.sd]):
    fwd = (w['gflops_per_step'] + w['other_gflops']) * 1e9
    rows.append(('64x64x4', w['channels'], w['params'], fwd * (1 + BWD_RATIO), 12.0 * w['params'],
                 BWD_RATIO / (1 + BWD_RATIO)))

measured = {int(c): float(v) for c, v in (x.split(':') for x in a.measured.split(','))}
rate = {}  # achieved FLOP/s of one machine at a measured width (batch per_machine)
for lat, c, params, fb, opt, _ in rows:
    if lat == '8x8x4' and c in measured:
        rate[c] = (fb * a.per_machine + opt) * measured[c] / a.per_machine
if not rate:
    sys.exit('dp_model: none of --measured widths is among --mini')
la, lb = (float(x) for x in a.local.split(':'))
shm, gbe, ib = ('shared memory here (measured)', la * 1e-6, lb * 1e9), ('25 GbE', 20e-6, 2.9e9), ('100 Gb/s IB', 3e-6, 12e9)
Ns = [int(x) for x in a.machines.split(',')]
machines = [('this machine (measured rate)', None, [shm, gbe]),
            (f'an accelerator at {a.fast_tflops:g} TFLOP/s (assumed)', a.fast_tflops * 1e12, [gbe, ib])]


def ar(n, g, alpha, beta):
    return 0.0 if n == 1 else 2 * (n - 1) / n * g / beta + 2 * (n - 1) * alpha


print(f'one machine: {a.per_machine} images per step; measured training rate '
      + ', '.join(f'c={c}: {r / 1e9:.1f} GFLOP/s' for c, r in sorted(rate.items())))
for mname, fixed_rate, nets in machines:
  for name, alpha, beta in nets:
    print(f'\n### {mname}, {name}: alpha {alpha * 1e6:g} us, beta {beta / 1e9:g} GB/s\n')
    print('| latent | c | params | grad MB | T_comp ms | ' + ' | '.join(f'N={n}' for n in Ns) + ' |')
    print('|---|---|---|---|---|' + '---|' * len(Ns))
    for lat, c, params, fb, opt, bf in rows:
        r = fixed_rate or rate[min(rate, key=lambda m: abs(m - c))]
        t_comp = (fb * a.per_machine + opt) / r
        g = 4.0 * params
        cells = []
        for n in Ns:
            t_ar = ar(n, g, alpha, beta)
            exposed = 0.0 if n == 1 else max(ar(n, min(g, BUCKET), alpha, beta), t_ar - bf * t_comp)
            t = t_comp + exposed
            cells.append(f'{n * a.per_machine / t:.3g} ({100 * t_comp / t:.0f}%)')
        print(f'| {lat} | {c} | {params / 1e6:.1f}M | {g / 1e6:.0f} | {t_comp * 1e3:.4g} | ' + ' | '.join(cells) + ' |')
print('\n(cells: images/s of N machines (scaling efficiency); T_comp: one machine\'s step of '
      f'{a.per_machine} images)')
