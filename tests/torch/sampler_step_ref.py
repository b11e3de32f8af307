"""Whole sampling trajectories with diffusers' scheduler step functions
(DDIMScheduler.step, DDPMScheduler.step, DPMSolverMultistepScheduler.step with
dpmsolver++ / midpoint / order 2), written here in numpy float64 from their
documented formulas (diffusers is not installed), driving a toy denoiser
m = 0.9 x + 0.0005 t + bias. Oracle of tests/test_samplers.c.

Reads a case file written by the test: per case one line
  sampler schedule spacing offset N eta set_alpha_to_one variance lower_order_final
  euler_at_final final_sigmas prediction clip clip_range
then a line 'n', x_T (n numbers), bias (n numbers), and one line of n noise
values per step (the noise the step graph draws). Prints per case
'case K: timesteps t0 t1 ... | v0 v1 ...' (the final latents)."""
import math
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampler_timesteps_ref import T, ddim_ddpm, dpm  # noqa: E402


def alphas_cumprod(schedule):
    if schedule == "scaled_linear":
        betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=np.float64) ** 2
    else:
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.array([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)])
    return np.cumprod(1.0 - betas)


def denoise(x, t, bias):
    return 0.9 * x + 0.0005 * t + bias


def x0_eps(pred, m, x, a, s):
    """(pred_original_sample, pred_epsilon) at sqrt(abar) a, sqrt(1 - abar) s"""
    if pred == "epsilon":
        return (x - s * m) / a, m
    if pred == "sample":
        return m, (x - a * m) / s
    return a * x - s * m, a * m + s * x


def run_ddim(c, ab, ts, x, bias, noises):
    N = c["N"]
    final = 1.0 if c["set_alpha_to_one"] else ab[0]
    for k, t in enumerate(ts):
        m = denoise(x, t, bias)
        prev = t - T // N
        a_t, a_p = ab[t], (ab[prev] if prev >= 0 else final)
        x0, eps = x0_eps(c["pred"], m, x, a_t ** 0.5, (1 - a_t) ** 0.5)
        if c["clip"]:
            x0 = np.clip(x0, -c["range"], c["range"])
        var = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
        std = c["eta"] * var ** 0.5
        x = a_p ** 0.5 * x0 + (1 - a_p - std ** 2) ** 0.5 * eps
        if c["eta"] > 0:
            x = x + std * noises[k]
    return x


def run_ddpm(c, ab, ts, x, bias, noises):
    for k, t in enumerate(ts):
        m = denoise(x, t, bias)
        prev = ts[k + 1] if k + 1 < len(ts) else -1
        a_t, a_p = ab[t], (ab[prev] if prev >= 0 else 1.0)
        cur_alpha = a_t / a_p
        cur_beta = 1 - cur_alpha
        x0, _ = x0_eps(c["pred"], m, x, a_t ** 0.5, (1 - a_t) ** 0.5)
        if c["clip"]:
            x0 = np.clip(x0, -c["range"], c["range"])
        mean = (a_p ** 0.5 * cur_beta) / (1 - a_t) * x0 + cur_alpha ** 0.5 * (1 - a_p) / (1 - a_t) * x
        if t > 0:
            var = max((1 - a_p) / (1 - a_t) * cur_beta, 1e-20)
            if c["variance"] == "fixed_large":
                var = cur_beta
            mean = mean + var ** 0.5 * noises[k]
        x = mean
    return x


def run_dpm(c, ab, ts, x, bias):
    sig = ((1 - ab) / ab) ** 0.5
    sigmas = list(np.interp(ts, np.arange(0, len(sig)), sig))
    sigmas.append(sig[0] if c["final"] == "sigma_min" else 0.0)
    n = len(ts)

    def a_s(sigma):
        a = 1 / (sigma ** 2 + 1) ** 0.5
        return a, sigma * a

    outputs = [None, None]
    lower = 0
    with np.errstate(divide="ignore"):
        for i, t in enumerate(ts):
            m = denoise(x, t, bias)
            last = i == n - 1 and (c["euler"] or (c["lof"] and n < 15) or c["final"] == "zero")
            al, sg = a_s(sigmas[i])
            x0, _ = x0_eps(c["pred"], m, x, al, sg)
            outputs = [outputs[1], x0]
            alpha_t, sigma_t = a_s(sigmas[i + 1])
            alpha_s0, sigma_s0 = a_s(sigmas[i])
            lam_t = np.log(alpha_t) - np.log(sigma_t)
            lam_s0 = np.log(alpha_s0) - np.log(sigma_s0)
            h = lam_t - lam_s0
            if lower < 1 or last:
                x = (sigma_t / sigma_s0) * x - (alpha_t * (np.exp(-h) - 1.0)) * x0
            else:
                alpha_s1, sigma_s1 = a_s(sigmas[i - 1])
                lam_s1 = np.log(alpha_s1) - np.log(sigma_s1)
                r0 = (lam_s0 - lam_s1) / h
                D0, D1 = outputs[1], (1.0 / r0) * (outputs[1] - outputs[0])
                x = (sigma_t / sigma_s0) * x - (alpha_t * (np.exp(-h) - 1.0)) * D0 \
                    - 0.5 * (alpha_t * (np.exp(-h) - 1.0)) * D1
            if lower < 2:
                lower += 1
    return x


def main():
    words = open(sys.argv[1]).read().split()
    pos = 0
    case = 0
    while pos < len(words):
        keys = ["sampler", "schedule", "spacing", "offset", "N", "eta", "set_alpha_to_one", "variance", "lof", "euler",
                "final", "pred", "clip", "range"]
        c = dict(zip(keys, words[pos:pos + len(keys)]))
        pos += len(keys)
        for k in ("offset", "N", "set_alpha_to_one", "lof", "euler", "clip"):
            c[k] = int(c[k])
        c["eta"], c["range"] = float(c["eta"]), float(c["range"])
        n = int(words[pos])
        pos += 1
        vec = lambda: np.array([float(v) for v in words[pos:pos + n]])  # noqa: E731
        x = vec()
        pos += n
        bias = vec()
        pos += n
        if c["sampler"] == "dpmpp2m":
            ts = dpm(c["spacing"], c["N"], c["offset"], T)
        else:
            ts = ddim_ddpm(c["spacing"], c["N"], c["offset"])
        ts = [int(t) for t in ts if t >= 0]
        noises = []
        for _ in ts:
            noises.append(vec())
            pos += n
        ab = alphas_cumprod(c["schedule"])
        if c["sampler"] == "ddim":
            x = run_ddim(c, ab, ts, x, bias, noises)
        elif c["sampler"] == "ddpm":
            x = run_ddpm(c, ab, ts, x, bias, noises)
        else:
            x = run_dpm(c, ab, ts, x, bias)
        print("case %d: %s | %s" % (case, " ".join(str(t) for t in ts), " ".join("%.17g" % v for v in x)))
        case += 1


if __name__ == "__main__":
    main()
