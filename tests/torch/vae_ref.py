#!/usr/bin/python3
"""An independent PyTorch definition of diffusers' AutoencoderKL (its layout
and state-dict keys), the oracle for ldmc's autoencoder (models/autoencoder.c).

Written from the architecture description (Encoder / Decoder with
DownEncoderBlock2D / UNetMidBlock2D / UpDecoderBlock2D, ResnetBlock2D without a
time embedding, the single-head mid-block Attention with its own GroupNorm and
biased projections, quant_conv / post_quant_conv, DiagonalGaussianDistribution),
not from diffusers' source; diffusers is not installed here.

usage: vae_ref.py --config '{"block_out_channels":[8,16],...}' --count
           prints "<tensors> <parameters>" of the state dict
       vae_ref.py --config '{...}' --keys
           prints "<key> <d0>x<d1>..." per state-dict entry
       vae_ref.py --config '{...}' --weights W.safetensors --inputs IN.safetensors
                  --out OUT.safetensors [--dtype float64]
           IN holds image [B,Cin,H,W] and latent [B,L,h,w]; OUT: mean, logvar
           (encode(image), logvar clamped to [-30, 20]) and decoded
           (decode(latent)); with --loss KL_WEIGHT IN must also hold eps
           [B,L,h,w] and OUT gets loss, recon, kl and grad.<key> of loss for
           every parameter, by autograd, where z = mean + exp(logvar / 2) * eps,
           recon = mean((decode(z) - image)^2) over every element,
           kl = 0.5 * sum(mean^2 + exp(logvar) - 1 - logvar) / B,
           loss = recon + KL_WEIGHT * kl.
Weights load with load_state_dict(strict=True): a key or shape that differs
from this definition fails loudly.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_ref import st_read, st_write  # noqa: E402  (safetensors by hand)


class Resnet(nn.Module):  # ResnetBlock2D with temb_channels=None
    def __init__(self, cin, cout, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):  # one head over the H*W tokens, residual
    def __init__(self, ch, groups, eps):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, ch, eps=eps)
        self.to_q = nn.Linear(ch, ch)
        self.to_k = nn.Linear(ch, ch)
        self.to_v = nn.Linear(ch, ch)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(t), self.to_k(t), self.to_v(t)
        p = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
        o = self.to_out[1](self.to_out[0](p @ v))
        return o.transpose(1, 2).reshape(b, c, h, w) + x


class MidBlock(nn.Module):
    def __init__(self, ch, groups, eps, attention):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(ch, ch, groups, eps), Resnet(ch, ch, groups, eps)])
        self.attentions = nn.ModuleList([Attention(ch, groups, eps)] if attention else [])

    def forward(self, x):
        x = self.resnets[0](x)
        for a in self.attentions:
            x = a(x)
        return self.resnets[1](x)


class Down(nn.Module):  # Downsample2D(padding=0): pad right and bottom by one, 3x3 stride 2
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):  # Upsample2D: nearest x2, 3x3
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    def __init__(self, resnets):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        for s in getattr(self, "downsamplers", []):
            x = s(x)
        for s in getattr(self, "upsamplers", []):
            x = s(x)
        return x


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, eps, n = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["norm_eps"], cfg["layers_per_block"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        cur = ch[0]
        for i, c in enumerate(ch):
            blk = Block([Resnet(cur if j == 0 else c, c, g, eps) for j in range(n)])
            cur = c
            if i < len(ch) - 1:
                blk.downsamplers = nn.ModuleList([Down(c)])
            self.down_blocks.append(blk)
        self.mid_block = MidBlock(cur, g, eps, cfg["mid_attention"])
        self.conv_norm_out = nn.GroupNorm(g, cur, eps=eps)
        self.conv_out = nn.Conv2d(cur, 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for blk in self.down_blocks:
            x = blk(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, eps, n = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["norm_eps"], cfg["layers_per_block"]
        rev = list(reversed(ch))
        self.conv_in = nn.Conv2d(cfg["latent_channels"], rev[0], 3, padding=1)
        self.mid_block = MidBlock(rev[0], g, eps, cfg["mid_attention"])
        self.up_blocks = nn.ModuleList()
        cur = rev[0]
        for i, c in enumerate(rev):
            blk = Block([Resnet(cur if j == 0 else c, c, g, eps) for j in range(n + 1)])
            cur = c
            if i < len(rev) - 1:
                blk.upsamplers = nn.ModuleList([Up(c)])
            self.up_blocks.append(blk)
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for blk in self.up_blocks:
            x = blk(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        lat = cfg["latent_channels"]
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * lat, 2 * lat, 1)
        self.post_quant_conv = nn.Conv2d(lat, lat, 1)

    def encode(self, x):
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


SD15 = {"in_channels": 3, "out_channels": 3, "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2,
        "latent_channels": 4, "norm_num_groups": 32, "norm_eps": 1e-6, "mid_attention": True}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="{}", help="JSON over SD-1.5's AutoencoderKL config")
    ap.add_argument("--count", action="store_true")
    ap.add_argument("--keys", action="store_true")
    ap.add_argument("--weights")
    ap.add_argument("--inputs")
    ap.add_argument("--out")
    ap.add_argument("--loss", type=float, default=None, metavar="KL_WEIGHT")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    a = ap.parse_args()
    cfg = dict(SD15)
    cfg.update(json.loads(a.config))
    model = AutoencoderKL(cfg).eval()
    if a.count or a.keys:
        sd = model.state_dict()
        if a.count:
            print(len(sd), sum(v.numel() for v in sd.values()))
        else:
            for k, v in sd.items():
                print(k, "x".join(str(d) for d in v.shape))
        return 0
    dt = getattr(torch, a.dtype)
    model = model.to(dt)
    w = st_read(a.weights)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}, strict=True)
    ins = {k: torch.from_numpy(np.asarray(v)).to(dt) for k, v in st_read(a.inputs).items()}
    res = {}
    with torch.no_grad():
        mean, logvar = model.encode(ins["image"])
        res["mean"], res["logvar"] = mean.numpy(), logvar.numpy()
        res["decoded"] = model.decode(ins["latent"]).numpy()
    if a.loss is not None:
        x = ins["image"]
        mean, logvar = model.encode(x)
        z = mean + torch.exp(0.5 * logvar) * ins["eps"]
        recon = ((model.decode(z) - x) ** 2).mean()
        kl = 0.5 * (mean ** 2 + torch.exp(logvar) - 1.0 - logvar).sum() / x.shape[0]
        loss = recon + a.loss * kl
        loss.backward()
        res.update(loss=loss.detach().numpy(), recon=recon.detach().numpy(), kl=kl.detach().numpy())
        for k, v in model.named_parameters():
            res["grad." + k] = v.grad.numpy()
    st_write(a.out, {k: np.asarray(v, dtype=np.float64) for k, v in res.items()}, "F64")
    return 0


if __name__ == "__main__":
    sys.exit(main())
