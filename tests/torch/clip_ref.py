#!/usr/bin/python3
"""An independent PyTorch definition of transformers' CLIPTextModel (its
layout and state-dict keys), the oracle for ldmc's prompt encoder
(models/text_encoder.c).

Written from the architecture description (token + position embeddings,
pre-LayerNorm encoder layers with causal multi-head self-attention and a
quick_gelu MLP, final LayerNorm), not from transformers' source; the causal
mask is added as transformers does (the dtype's most negative value above
the diagonal).

usage: clip_ref.py --config '{"vocab_size":12,...}' --weights W.safetensors
                   --inputs IN.safetensors --out OUT.safetensors [--grad]
         IN: input_ids [B,T] (I32 or I64); with --grad also cotangent.last_hidden_state [B,T,D].
         OUT: last_hidden_state; with --grad also grad.<key> (F64) of
         sum(last_hidden_state * cotangent) for every parameter (autograd).
       clip_ref.py --config sd15 --count   (prints tensors and parameters;
         built on the meta device, so nothing is allocated)
The weights are loaded with load_state_dict(strict=True): any key or shape
that differs from this definition fails loudly.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_ref import st_read, st_write  # noqa: E402  (the hand-written safetensors reader/writer)

SD15 = {"vocab_size": 49408, "max_positions": 77, "width": 768, "layers": 12, "heads": 12, "mlp_width": 3072}


class Attention(nn.Module):
    def __init__(self, d, heads, device):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.q_proj = nn.Linear(d, d, device=device)
        self.k_proj = nn.Linear(d, d, device=device)
        self.v_proj = nn.Linear(d, d, device=device)
        self.out_proj = nn.Linear(d, d, device=device)

    def forward(self, x, mask):
        b, t, d = x.shape

        def split(y):
            return y.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

        q = split(self.q_proj(x) * self.head_dim ** -0.5)
        k, v = split(self.k_proj(x)), split(self.v_proj(x))
        p = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1)
        return self.out_proj((p @ v).transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, d, m, device):
        super().__init__()
        self.fc1 = nn.Linear(d, m, device=device)
        self.fc2 = nn.Linear(m, d, device=device)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu


class EncoderLayer(nn.Module):
    def __init__(self, cfg, device):
        super().__init__()
        d = cfg["width"]
        self.layer_norm1 = nn.LayerNorm(d, eps=1e-5, device=device)
        self.self_attn = Attention(d, cfg["heads"], device)
        self.layer_norm2 = nn.LayerNorm(d, eps=1e-5, device=device)
        self.mlp = MLP(d, cfg["mlp_width"], device)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class Embeddings(nn.Module):
    def __init__(self, cfg, device):
        super().__init__()
        self.token_embedding = nn.Embedding(cfg["vocab_size"], cfg["width"], device=device)
        self.position_embedding = nn.Embedding(cfg["max_positions"], cfg["width"], device=device)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1])[None, :]
        return self.token_embedding(ids) + self.position_embedding(pos)


class Encoder(nn.Module):
    def __init__(self, cfg, device):
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(cfg, device) for _ in range(cfg["layers"])])


class TextTransformer(nn.Module):
    def __init__(self, cfg, device):
        super().__init__()
        self.embeddings = Embeddings(cfg, device)
        self.encoder = Encoder(cfg, device)
        self.final_layer_norm = nn.LayerNorm(cfg["width"], eps=1e-5, device=device)

    def forward(self, ids):
        h = self.embeddings(ids)
        t = ids.shape[1]
        mask = torch.full((t, t), torch.finfo(h.dtype).min, dtype=h.dtype).triu(1)
        for layer in self.encoder.layers:
            h = layer(h, mask)
        return self.final_layer_norm(h)


class CLIPTextModel(nn.Module):
    def __init__(self, cfg, device=None):
        super().__init__()
        self.text_model = TextTransformer(cfg, device)

    def forward(self, ids):
        return self.text_model(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="sd15", help="JSON object, or sd15")
    ap.add_argument("--weights")
    ap.add_argument("--inputs")
    ap.add_argument("--out")
    ap.add_argument("--count", action="store_true")
    ap.add_argument("--grad", action="store_true")
    a = ap.parse_args()
    cfg = dict(SD15) if a.config == "sd15" else json.loads(a.config)
    if a.count:
        sd = CLIPTextModel(cfg, device="meta").state_dict()
        print(len(sd), sum(v.numel() for v in sd.values()))
        return 0
    model = CLIPTextModel(cfg).to(torch.float64)
    w = st_read(a.weights)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}, strict=True)
    inp = st_read(a.inputs)
    ids = torch.from_numpy(np.asarray(inp["input_ids"], dtype=np.int64))
    if not a.grad:
        with torch.no_grad():
            out = model(ids)
        st_write(a.out, {"last_hidden_state": out.to(torch.float32).numpy()})
        return 0
    out = model(ids)
    ct = torch.from_numpy(np.asarray(inp["cotangent.last_hidden_state"], dtype=np.float64))
    (out * ct).sum().backward()
    res = {"last_hidden_state": out.detach().numpy()}
    for k, v in model.named_parameters():
        res["grad." + k] = v.grad.detach().numpy()
    st_write(a.out, res, "F64")
    return 0


if __name__ == "__main__":
    sys.exit(main())
