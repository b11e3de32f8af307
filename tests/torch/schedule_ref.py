"""alphas_cumprod of diffusers' DDPMScheduler schedules, written from its
formulas in torch float32 (diffusers itself is not installed here), printed as
'<schedule> <index> <value>' for a few indices. Oracle of tests/test_diffusion.c."""
import math

import torch

T = 1000


def scaled_linear(b0=0.00085, b1=0.012):
    return torch.linspace(b0 ** 0.5, b1 ** 0.5, T, dtype=torch.float32) ** 2


def squaredcos_cap_v2(max_beta=0.999):
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float32)


for name, betas in (("scaled_linear", scaled_linear()), ("squaredcos_cap_v2", squaredcos_cap_v2())):
    abar = torch.cumprod(1.0 - betas, dim=0)
    for i in (0, 1, 250, 500, 998, 999):
        print(name, i, "%.9g" % abar[i].item())
