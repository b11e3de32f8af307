"""The inference timesteps of diffusers' DDIMScheduler, DDPMScheduler and
DPMSolverMultistepScheduler (set_timesteps), written here from their rules
with numpy as diffusers computes them (diffusers itself is not installed):

  DDIM / DDPM  linspace  linspace(0, T-1, N).round()[::-1]          (no offset)
               leading   arange(N) * (T // N), reversed, + steps_offset
               trailing  round(arange(T, 0, -T / N)) - 1
  DPM-Solver   linspace  linspace(0, last-1, N+1).round()[::-1][:-1] (no offset)
               leading   arange(N+1) * (last // (N+1)), reversed, last dropped, + offset
               trailing  round(arange(last, 0, -T / N)) - 1
  last = T - #{t : lambda_t < lambda_min_clipped}, lambda_t = log(alpha_t) - log(sigma_t)
  in float32 torch from float32 betas, as the scheduler does.

Prints one line per case: '<sampler> <schedule> <spacing> <offset> <N> <lambda_min> <last> : t0 t1 ...'
with the raw values (out-of-range and repeated ones included: the C side decides
what it accepts). Oracle of tests/test_sampler_schedule.c."""
import math

import numpy as np

T = 1000


def betas_of(schedule):
    import torch
    if schedule == "scaled_linear":
        return torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float32) ** 2

    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)],
                        dtype=torch.float32)


def last_timestep(schedule, lambda_min):
    import torch
    abar = torch.cumprod(1.0 - betas_of(schedule), dim=0)
    lam = torch.log(torch.sqrt(abar)) - torch.log(torch.sqrt(1 - abar))
    clipped = torch.searchsorted(torch.flip(lam, [0]), lambda_min)
    return int(T - clipped.item())


def ddim_ddpm(spacing, n, offset):
    if spacing == "linspace":
        return np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        ratio = T // n
        return (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64) + offset
    ratio = T / n
    return np.round(np.arange(T, 0, -ratio)).astype(np.int64) - 1


def dpm(spacing, n, offset, last):
    if spacing == "linspace":
        return np.linspace(0, last - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
    if spacing == "leading":
        ratio = last // (n + 1)
        return (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64) + offset
    ratio = T / n
    return np.arange(last, 0, -ratio).round().copy().astype(np.int64) - 1


def main():
    steps = list(range(1, 101)) + [128, 200, 250, 333, 500, 999, 1000]
    for sampler in ("ddim", "ddpm", "dpmpp2m"):
        for spacing in ("leading", "trailing", "linspace"):
            for offset in (0, 1):
                for n in steps:
                    ts = ddim_ddpm(spacing, n, offset) if sampler != "dpmpp2m" else dpm(spacing, n, offset, T)
                    print(sampler, "scaled_linear", spacing, offset, n, "-inf", T, ":", " ".join(str(int(t)) for t in ts))
    # DPM-Solver's lambda clipping (SD-2's configs use -5.1 with the cosine schedule)
    for lam in (-5.1, -3.0):
        last = last_timestep("squaredcos_cap_v2", lam)
        for spacing in ("leading", "trailing", "linspace"):
            for n in (1, 7, 10, 20, 25, 50):
                ts = dpm(spacing, n, 1, last)
                print("dpmpp2m", "squaredcos_cap_v2", spacing, 1, n, lam, last, ":", " ".join(str(int(t)) for t in ts))


if __name__ == "__main__":
    main()
