#!/usr/bin/python3
"""An independent PyTorch definition of the SD-1.5 UNet2DConditionModel
(diffusers' layout and state-dict keys), used as the oracle for ldmc's U-Net.

Written from the architecture description (ResnetBlock2D, Transformer2DModel
with one BasicTransformerBlock, GEGLU feed-forward, Downsample2D/Upsample2D,
sinusoidal time embedding with cos first), not from diffusers' source.

usage: unet_ref.py --config '{"channels":32,...}' --weights W.safetensors
                   --inputs IN.safetensors --out OUT.safetensors [--dtype float64]
       unet_ref.py --config '{...}' --count     (prints tensors and parameters)
       unet_ref.py --config '{...}' --emit-weights W [--weights-dtype BF16]
                   --emit-inputs IN --shape BxHxWxT --seed S  (random test files)
       unet_ref.py --config '{...}' --weights W --inputs IN --train-steps N --lr LR
                   [--weight-decay WD] [--eps EPS] [--clip NORM] [--ema DECAY] --out OUT [--dtype float64]
                   (N steps of torch.optim.AdamW on the epsilon-prediction loss
                   mean((unet(noisy_sample, timestep, ctx) - target)^2) on the
                   batch IN; OUT: loss[N], grad_norm[N] (before clipping), and
                   the final P, adam_m.P, adam_v.P [, ema.P] of every parameter)
The weights are loaded with load_state_dict(strict=True), so any key or shape
that differs from this definition fails loudly.
"""
import argparse
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---- safetensors, by hand (the format: u64 header length, JSON header, data) ----
_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = data[a:b]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(_DT[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def _encode(arr, dtype):
    if dtype == "BF16":  # round to nearest even
        u = np.ascontiguousarray(arr, dtype="<f4").view("<u4").astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return u.astype("<u2").tobytes()
    if dtype == "I64":
        return np.ascontiguousarray(arr, dtype="<i8").tobytes()
    return np.ascontiguousarray(arr, dtype={"F64": "<f8", "F32": "<f4", "F16": "<f2"}[dtype]).tobytes()


def st_write(path, tensors, dtype="F32", dtypes=None):
    header, chunks, off = {}, [], 0
    for name, arr in tensors.items():
        dt = (dtypes or {}).get(name, dtype)
        b = _encode(arr, dt)
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


# ---- the model ----
def _norm_in_f32(forward, weight, x):
    # under CPU autocast, torch 1.13 hands the norms bf16 inputs with f32
    # weights and fails; normalize those in f32 (as newer torch's autocast does)
    if x.dtype in (torch.bfloat16, torch.float16) and weight.dtype == torch.float32:
        return forward(x.float()).to(x.dtype)
    return forward(x)


class GroupNorm(nn.GroupNorm):
    def forward(self, x):
        return _norm_in_f32(super().forward, self.weight, x)


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return _norm_in_f32(super().forward, self.weight, x)


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    def __init__(self, dim, kv_dim, heads):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        b, n, _ = x.shape

        def split(t):
            return t.reshape(b, t.shape[1], self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        o = (p @ v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out[1](self.to_out[0](o))


class GEGLU(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x):
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, ctx_dim, heads, ff_mult):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, dim, heads)
        self.norm2 = LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(dim, ctx_dim, heads)
        self.norm3 = LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x, ctx):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), ctx)
        return x + self.ff(self.norm3(x))


class Transformer2D(nn.Module):
    def __init__(self, ch, cfg):
        super().__init__()
        self.linear = cfg["linear_proj"]
        self.norm = GroupNorm(cfg["groups"], ch, eps=cfg["transformer_norm_eps"])
        proj = (lambda: nn.Linear(ch, ch)) if self.linear else (lambda: nn.Conv2d(ch, ch, 1))
        self.proj_in = proj()
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(ch, cfg["context_dim"], cfg["heads"], cfg["ff_mult"])
             for _ in range(cfg["transformer_depth"])])
        self.proj_out = proj()

    def forward(self, x, ctx):
        b, c, h, w = x.shape
        t = self.norm(x)
        if not self.linear:
            t = self.proj_in(t)
        t = t.permute(0, 2, 3, 1).reshape(b, h * w, c)
        if self.linear:
            t = self.proj_in(t)
        for blk in self.transformer_blocks:
            t = blk(t, ctx)
        if self.linear:
            t = self.proj_out(t)
        t = t.reshape(b, h, w, c).permute(0, 3, 1, 2)
        if not self.linear:
            t = self.proj_out(t)
        return t + x


class Conv(nn.Module):  # holds ".conv" as Downsample2D / Upsample2D do
    def __init__(self, ch, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(ch, ch, 3, stride=stride, padding=1)

    def forward(self, x):
        if self.stride == 1:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnets = nn.ModuleList()
        self.attentions = nn.ModuleList()


class TimestepEmbedding(nn.Module):
    def __init__(self, c, t):
        super().__init__()
        self.linear_1 = nn.Linear(c, t)
        self.linear_2 = nn.Linear(t, t)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class UNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c, L, g, eps = cfg["channels"], len(cfg["channel_mult"]), cfg["groups"], cfg["norm_eps"]
        chans = [c * m for m in cfg["channel_mult"]]
        temb = 4 * c
        self.conv_in = nn.Conv2d(cfg["in_channels"], c, 3, padding=1)
        self.time_embedding = TimestepEmbedding(c, temb)
        self.down_blocks = nn.ModuleList()
        skip_ch, cur = [c], c
        for i in range(L):
            blk = Block()
            for j in range(cfg["layers_down"]):
                blk.resnets.append(Resnet(cur, chans[i], temb, g, eps))
                cur = chans[i]
                if cfg["attend"][i]:
                    blk.attentions.append(Transformer2D(cur, cfg))
                skip_ch.append(cur)
            if i < L - 1:
                blk.downsamplers = nn.ModuleList([Conv(cur, 2)])
                skip_ch.append(cur)
            self.down_blocks.append(blk)
        self.mid_block = Block()
        self.mid_block.resnets.append(Resnet(cur, cur, temb, g, eps))
        if cfg["mid_attention"]:
            self.mid_block.attentions.append(Transformer2D(cur, cfg))
        self.mid_block.resnets.append(Resnet(cur, cur, temb, g, eps))
        self.up_blocks = nn.ModuleList()
        for i in range(L):
            lvl = L - 1 - i
            blk = Block()
            for j in range(cfg["layers_down"] + 1):
                blk.resnets.append(Resnet(cur + skip_ch.pop(), chans[lvl], temb, g, eps))
                cur = chans[lvl]
                if cfg["attend"][lvl]:
                    blk.attentions.append(Transformer2D(cur, cfg))
            if i < L - 1:
                blk.upsamplers = nn.ModuleList([Conv(cur, 1)])
            self.up_blocks.append(blk)
        self.conv_norm_out = GroupNorm(g, c, eps=eps)
        self.conv_out = nn.Conv2d(c, cfg["out_channels"], 3, padding=1)

    def time_proj(self, t):
        half = self.cfg["channels"] // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half).to(t.dtype)
        arg = t[:, None] * freqs[None, :]
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)  # flip_sin_to_cos: cos first

    def forward(self, sample, timestep, ctx):
        temb = self.time_embedding(self.time_proj(timestep))
        x = self.conv_in(sample)
        skips = [x]
        for blk in self.down_blocks:
            for j, res in enumerate(blk.resnets):
                x = res(x, temb)
                if len(blk.attentions):
                    x = blk.attentions[j](x, ctx)
                skips.append(x)
            if hasattr(blk, "downsamplers"):
                x = blk.downsamplers[0](x)
                skips.append(x)
        x = self.mid_block.resnets[0](x, temb)
        if len(self.mid_block.attentions):
            x = self.mid_block.attentions[0](x, ctx)
        x = self.mid_block.resnets[1](x, temb)
        for blk in self.up_blocks:
            for j, res in enumerate(blk.resnets):
                x = res(torch.cat([x, skips.pop()], dim=1), temb)
                if len(blk.attentions):
                    x = blk.attentions[j](x, ctx)
            if hasattr(blk, "upsamplers"):
                x = blk.upsamplers[0](x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


def mse_train_step(model, opt, x_t, t, ctx, eps, clip=0.0, bf16=False, want_norm=False):
    """One training step of the epsilon-prediction loss: forward (under CPU
    bfloat16 autocast with bf16), MSE against eps in float32 or wider, backward,
    optional clip_grad_norm_, opt.step(). Returns (loss, grad norm before
    clipping or None)."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        pred = model(x_t, t, ctx)
    loss = F.mse_loss(pred.to(eps.dtype), eps)
    loss.backward()
    norm = None
    if clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    elif want_norm:
        norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in model.parameters() if p.grad is not None))
    opt.step()
    return loss.detach(), norm


def train(model, ins, steps, lr, weight_decay, clip, ema, eps=1e-8):
    """--train-steps: torch.optim.AdamW (betas 0.9/0.999) on one batch."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, eps=eps)
    avg = {k: v.detach().clone() for k, v in model.named_parameters()} if ema > 0 else None
    losses, norms = [], []
    for _ in range(steps):
        loss, norm = mse_train_step(model, opt, ins["noisy_sample"], ins["timestep"], ins["encoder_hidden_states"],
                                    ins["target"], clip=clip, want_norm=True)
        losses.append(float(loss))
        norms.append(float(norm))
        if avg is not None:
            with torch.no_grad():
                for k, v in model.named_parameters():
                    avg[k].mul_(ema).add_(v.detach(), alpha=1 - ema)
    res = {"loss": np.array(losses), "grad_norm": np.array(norms)}
    for k, v in model.named_parameters():
        st = opt.state[v]
        res[k] = v.detach().numpy()
        res["adam_m." + k] = st["exp_avg"].numpy()
        res["adam_v." + k] = st["exp_avg_sq"].numpy()
        if avg is not None:
            res["ema." + k] = avg[k].numpy()
    return res


DEFAULTS = {"channels": 320, "channel_mult": [1, 2, 4, 4], "attend": [True, True, True, False],
            "mid_attention": True, "layers_down": 2, "heads": 8, "groups": 32, "norm_eps": 1e-5,
            "transformer_norm_eps": 1e-6, "context_dim": 768, "in_channels": 4, "out_channels": 4,
            "linear_proj": False, "transformer_depth": 1, "ff_mult": 4}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="{}")
    ap.add_argument("--weights")
    ap.add_argument("--inputs")
    ap.add_argument("--out")
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--count", action="store_true")
    ap.add_argument("--emit-weights", help="write random weights for the config (norms included) here")
    ap.add_argument("--weights-dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--emit-inputs", help="write random inputs (timestep as I64) here")
    ap.add_argument("--shape", default="1x8x8x4", help="BxHxW x tokens for --emit-inputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-steps", type=int, default=0, help="train N AdamW steps on the batch --inputs")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--eps", type=float, default=1e-8, help="AdamW's eps")
    ap.add_argument("--clip", type=float, default=0.0, help="clip_grad_norm_ to this (0: none)")
    ap.add_argument("--ema", type=float, default=0.0, help="also keep an EMA of the weights with this decay")
    ap.add_argument("--grad", action="store_true",
                    help="also write grad.<name> of sum(out_sample) for every parameter and float input (autograd)")
    a = ap.parse_args()
    cfg = dict(DEFAULTS)
    cfg.update(json.loads(a.config))
    dt = getattr(torch, a.dtype)
    model = UNet(cfg).eval()
    if a.count:
        sd = model.state_dict()
        print(len(sd), sum(v.numel() for v in sd.values()))
        return 0
    if a.emit_weights or a.emit_inputs:
        g = torch.Generator().manual_seed(a.seed)

        def u(shape):  # uniform [-1, 1)
            return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1).numpy()

        if a.emit_weights:
            sd = model.state_dict()
            out = {}
            for k, v in sd.items():
                if v.dim() >= 2:
                    out[k] = u(v.shape) / math.sqrt(np.prod(v.shape[1:]))
                elif k.endswith(".bias") and k[:-5] + ".weight" in sd and sd[k[:-5] + ".weight"].dim() >= 2:
                    out[k] = u(v.shape) / math.sqrt(np.prod(sd[k[:-5] + ".weight"].shape[1:]))
                elif k.endswith(".weight"):
                    out[k] = 1 + 0.5 * u(v.shape)  # norm scale
                else:
                    out[k] = 0.5 * u(v.shape)  # norm shift
            st_write(a.emit_weights, out, a.weights_dtype)
        if a.emit_inputs:
            bsz, h, w, t = (int(x) for x in a.shape.split("x"))
            ins = {"sample": 2 * u((bsz, cfg["in_channels"], h, w)),
                   "timestep": np.array([(977 * i + 31) % 1000 for i in range(bsz)], dtype=np.int64),
                   "encoder_hidden_states": u((bsz, t, cfg["context_dim"]))}
            st_write(a.emit_inputs, ins, "F32", {"timestep": "I64"})
        return 0
    w = st_read(a.weights)
    model = model.to(dt)  # before loading: load_state_dict copies into the parameters' dtype
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}, strict=True)
    inp = st_read(a.inputs)
    if a.train_steps > 0:
        ins = {k: torch.from_numpy(np.asarray(v)).to(dt) for k, v in inp.items()}
        res = train(model, ins, a.train_steps, a.lr, a.weight_decay, a.clip, a.ema, a.eps)
        st_write(a.out, res, "F64" if dt == torch.float64 else "F32")
        return 0
    xs = {k: torch.from_numpy(np.asarray(inp[k])).to(dt) for k in ("sample", "timestep", "encoder_hidden_states")}
    if not a.grad:
        with torch.no_grad():
            out = model(xs["sample"], xs["timestep"], xs["encoder_hidden_states"])
        st_write(a.out, {"out_sample": out.to(torch.float32).numpy()})
        return 0
    for v in xs.values():
        v.requires_grad_(True)
    out = model(xs["sample"], xs["timestep"], xs["encoder_hidden_states"])
    out.sum().backward()
    res = {"out_sample": out.detach().to(torch.float32).numpy()}
    for k, v in list(model.named_parameters()) + list(xs.items()):
        res["grad." + k] = v.grad.detach().to(torch.float64).numpy()
    st_write(a.out, res, "F64")
    return 0


if __name__ == "__main__":
    sys.exit(main())
