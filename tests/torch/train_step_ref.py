"""PyTorch reference for tests/test_train_step.c: trains the tiny linear model
loss = mean((scale * (x @ W + b) - y)^2) for --steps steps with
torch.optim.AdamW, torch.nn.utils.clip_grad_norm_ and an EMA kept by
torch.optim.swa_utils.AveragedModel, all in float64, from the tensors of
--init (x, y, scale, W, b; F64 safetensors), and writes W, b, their AdamW
moments (adam_m.*, adam_v.*), EMA (ema.*) and each step's loss and grad_norm
(the norm before clipping) to --out."""
import argparse
import json
import struct

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F64", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f8").reshape(info["shape"]).copy()
    return out


def st_write(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        blob = np.ascontiguousarray(arr, dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(arr.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Linear(nn.Module):
    def __init__(self, W, b):
        super().__init__()
        self.W = nn.Parameter(W)
        self.b = nn.Parameter(b)

    def forward(self, x, scale):
        return scale * (x @ self.W + self.b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3)
    for k in ("lr", "beta1", "beta2", "eps", "weight-decay", "clip", "ema"):
        ap.add_argument("--" + k, type=float, required=True)
    a = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    t = {k: torch.from_numpy(v) for k, v in st_read(a.init).items()}
    model = Linear(t["W"].clone(), t["b"].clone())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps,
                            weight_decay=a.weight_decay)
    ema = AveragedModel(model, avg_fn=lambda e, p, n: a.ema * e + (1 - a.ema) * p)
    ema.update_parameters(model)  # the first call copies: ema starts at the initial weights
    losses, norms = [], []
    for _ in range(a.steps):
        opt.zero_grad()
        loss = ((model(t["x"], t["scale"]) - t["y"]) ** 2).mean()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        ema.update_parameters(model)
        losses.append(loss.item())
        norms.append(float(norm))
    out = {"loss": np.array(losses), "grad_norm": np.array(norms)}
    for name, p in (("W", model.W), ("b", model.b)):
        out[name] = p.detach().numpy()
        out["adam_m." + name] = opt.state[p]["exp_avg"].numpy()
        out["adam_v." + name] = opt.state[p]["exp_avg_sq"].numpy()
        out["ema." + name] = getattr(ema.module, name).detach().numpy()
    st_write(a.out, out)


if __name__ == "__main__":
    main()
