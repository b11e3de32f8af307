#!/usr/bin/python3
"""An independent PyTorch definition of ldmc's Fashion-MNIST classifier CNN
(models/classifier.c), with the same state-dict keys, the oracle for its
graphs, and a check that the design trains to a good accuracy.

usage: classifier_ref.py [--config JSON] --weights W --inputs IN --out OUT
         IN: images [B,C,S,S] F32, labels [B] (I32 or I64).
         OUT (F64): logits, features, loss (mean cross-entropy), correct
         (examples whose label's logit is the largest), and grad.<key> of the
         loss for every parameter (autograd).
       classifier_ref.py [--config JSON] --train-fmnist DIR [--epochs N]
                         [--batch B] [--lr LR] [--seed S]
         trains with torch.optim.AdamW (betas 0.9/0.999, no weight decay, as
         ldmc's defaults) on DIR/train-*-idx*.gz, images padded 28 -> 32 with
         the background and scaled to [-1, 1], and prints the test accuracy
         after every epoch.
The weights are loaded with load_state_dict(strict=True).
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet_ref import st_read, st_write  # noqa: E402

DEFAULTS = {"widths": [32, 64, 128], "features": 128, "classes": 10, "in_channels": 1, "image_size": 32}


class Classifier(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cin, s = cfg["in_channels"], cfg["image_size"]
        self.n = len(cfg["widths"])
        for i, w in enumerate(cfg["widths"]):
            setattr(self, "conv%d" % (i + 1), nn.Conv2d(cin, w, 3, padding=1))
            cin, s = w, s // 2
        self.fc1 = nn.Linear(cin * s * s, cfg["features"])
        self.fc2 = nn.Linear(cfg["features"], cfg["classes"])

    def forward(self, x):
        for i in range(self.n):
            x = F.relu(F.max_pool2d(getattr(self, "conv%d" % (i + 1))(x), 2))
        feats = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(feats), feats


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fmnist(d, split):
    x = read_idx(os.path.join(d, "%s-images-idx3-ubyte.gz" % split))
    y = read_idx(os.path.join(d, "%s-labels-idx1-ubyte.gz" % split))
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))  # background 0, becomes -1
    x = torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)[:, None]
    return x, torch.from_numpy(y.astype(np.int64))


def train_fmnist(cfg, a):
    torch.manual_seed(a.seed)
    xtr, ytr = load_fmnist(a.train_fmnist, "train")
    xte, yte = load_fmnist(a.train_fmnist, "t10k")
    model = Classifier(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    n = xtr.shape[0]
    for ep in range(a.epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            logits, _ = model(xtr[idx])
            loss = F.cross_entropy(logits, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xte[i:i + 1000])[0].argmax(1) for i in range(0, xte.shape[0], 1000)])
        acc = float((pred == yte).float().mean())
        print("epoch %d: train loss %.4f, test accuracy %.4f (%.0f s)" % (ep + 1, total / n, acc, time.time() - t0))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="{}")
    ap.add_argument("--weights")
    ap.add_argument("--inputs")
    ap.add_argument("--out")
    ap.add_argument("--train-fmnist", help="folder of the gzipped IDX files")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cfg = dict(DEFAULTS)
    cfg.update(json.loads(a.config))
    if a.train_fmnist:
        return train_fmnist(cfg, a)
    model = Classifier(cfg).to(torch.float64)
    w = st_read(a.weights)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}, strict=True)
    inp = st_read(a.inputs)
    x = torch.from_numpy(np.asarray(inp["images"], dtype=np.float64))
    y = torch.from_numpy(np.asarray(inp["labels"], dtype=np.int64))
    logits, feats = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    correct = (logits.gather(1, y[:, None])[:, 0] >= logits.max(1).values).sum()
    res = {"logits": logits.detach().numpy(), "features": feats.detach().numpy(),
           "loss": loss.detach().numpy(), "correct": correct.to(torch.float64).numpy()}
    for k, v in model.named_parameters():
        res["grad." + k] = v.grad.detach().numpy()
    st_write(a.out, res, "F64")
    return 0


if __name__ == "__main__":
    sys.exit(main())
