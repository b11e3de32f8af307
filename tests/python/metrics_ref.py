#!/usr/bin/python3
"""An independent numpy/scipy computation of ldmc's sample-quality metrics
(models/metrics.c), the oracle of tests/test_metrics.c and tests/cli/eval.sh.

  FD   as pytorch-fid computes it: ‖μ1−μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr sqrtm(Σ1 Σ2)
       (scipy.linalg.sqrtm, its real part; Σ with n − 1), and a second way
       through symmetric eigendecompositions (scipy.linalg.eigh / eigvalsh).
  KID  torch-fidelity's unbiased MMD² with k(x, y) = (x·y/d + 1)³, over the
       subsets of ldmc's documented scheme (splitmix64 + partial Fisher-Yates,
       models/metrics.h), reimplemented here; mean and std (ddof 0).
  class accuracy  argmax(logits) == label over labels >= 0, overall and per class.

usage:
  metrics_ref.py --in IN.safetensors --out OUT.safetensors [--kid-subsets K] [--kid-subset-size S] [--seed S]
      IN: x1 F32[n1,d], x2 F32[n2,d]; optional logits F32[n,c] with labels I64[n].
      OUT (F64): fd, fd_eigh, mean_term, tr1, tr2, tr_sqrt, kid_mmd[K], kid_mean, kid_std, kid_m,
      and with logits: acc_correct, acc_count, acc_class_correct[c], acc_class_count[c].
  metrics_ref.py --check-json RESULT.json --samples S.safetensors --reference R.safetensors
                 --labels L.safetensors [--reference-labels RL.safetensors]
                 [--kid-subsets K] [--kid-subset-size S] [--seed S] [--tol T]
      S, R: features F*[n,d] and logits F*[n,c] (tests/torch/classifier_ref.py's output);
      L (RL): the sample (reference) file whose labels I64[n] they belong to. Compares every figure of `ldmc eval --json`
      with this computation (relative tolerance T, default 1e-3) and prints them; exit 1 on a mismatch.
  metrics_ref.py --make-samples OUT.safetensors --split train|t10k [--count N] [--offset K] [--noise S]
                 [--relabel P] [--seed S] [--data DIR]
      N Fashion-MNIST images from K on, padded to 32x32 in [-1, 1] as ldmc reads them, plus Gaussian
      noise of std S (clipped to [-1, 1]); labels I64 their classes, a share P of them replaced by
      another class: a stand-in for generated samples.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
from scipy import linalg

DT = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}
M64 = (1 << 64) - 1


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
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(data[a:b], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype=np.dtype(DT[info["dtype"]]))
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def st_write(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(np.asarray(arr, dtype="<f8"))
        blob = arr.tobytes()
        header[name] = {"dtype": "F64", "shape": list(arr.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---- FD ----
def fd_sqrtm(x1, x2, eps=1e-6):
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():  # pytorch-fid's fallback
        off = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + off).dot(s2 + off))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    tr_sqrt = float(np.trace(covmean))
    return {"fd": float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt),
            "mean_term": float(diff.dot(diff)), "tr1": float(np.trace(s1)), "tr2": float(np.trace(s2)),
            "tr_sqrt": tr_sqrt, "s1": s1, "s2": s2, "diff": diff}


def fd_eigh(s1, s2, diff):
    w, v = linalg.eigh(s1)
    h = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # √Σ1
    mu = linalg.eigvalsh(h @ s2 @ h)
    tr_sqrt = float(np.sqrt(np.clip(mu, 0, None)).sum())
    return max(0.0, float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt))


# ---- KID ----
def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def subset(seed, s, which, n, m):
    state = (seed ^ ((0x9E3779B97F4A7C15 * (2 * s + which + 1)) & M64)) & M64
    perm = list(range(n))
    for j in range(m):
        state, u = splitmix64(state)
        r = j + ((u * (n - j)) >> 64)
        perm[j], perm[r] = perm[r], perm[j]
    return np.array(perm[:m])


def mmd2(x, y):  # torch-fidelity's mmd2 with its polynomial kernel (degree 3, gamma 1/d, coef0 1)
    d, m = x.shape[1], x.shape[0]
    kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


def kid(x1, x2, subsets, size, seed):
    m = min(size, len(x1), len(x2))
    mmds = np.array([mmd2(x1[subset(seed, s, 0, len(x1), m)], x2[subset(seed, s, 1, len(x2), m)])
                     for s in range(subsets)])
    return mmds, float(mmds.mean()), float(mmds.std()), m


def accuracy(logits, labels):
    c = logits.shape[1]
    keep = labels >= 0
    hit = (np.argmax(logits, 1) == labels) & keep
    cc = np.array([hit[labels == k].sum() for k in range(c)], dtype=np.float64)
    cn = np.array([(labels == k).sum() for k in range(c)], dtype=np.float64)
    return int(hit.sum()), int(keep.sum()), cc, cn


def run_in_out(a):
    t = st_read(a.inp)
    x1, x2 = t["x1"].astype(np.float64), t["x2"].astype(np.float64)
    f = fd_sqrtm(x1, x2)
    mmds, mean, std, m = kid(x1, x2, a.kid_subsets, a.kid_subset_size, a.seed)
    out = {"fd": f["fd"], "fd_eigh": fd_eigh(f["s1"], f["s2"], f["diff"]), "mean_term": f["mean_term"],
           "tr1": f["tr1"], "tr2": f["tr2"], "tr_sqrt": f["tr_sqrt"],
           "kid_mmd": mmds, "kid_mean": mean, "kid_std": std, "kid_m": m}
    if "logits" in t:
        c, n, cc, cn = accuracy(t["logits"].astype(np.float64), t["labels"].astype(np.int64))
        out.update({"acc_correct": c, "acc_count": n, "acc_class_correct": cc, "acc_class_count": cn})
    st_write(a.out, out)
    return 0


def close(what, got, want, tol, scale=None):
    s = max(abs(want), 1e-300) if scale is None else scale
    ok = abs(got - want) <= tol * s
    print("metrics_ref: %-28s ldmc %.9g  numpy %.9g  %s" % (what, got, want, "ok" if ok else "MISMATCH"))
    return ok


def check_json(a):
    r = json.load(open(a.check_json))
    s, ref = st_read(a.samples), st_read(a.reference)
    fs, fr = s["features"].astype(np.float64), ref["features"].astype(np.float64)
    f = fd_sqrtm(fs, fr)
    scale = f["tr1"] + f["tr2"] + f["mean_term"]  # the size of the terms that cancel
    ok = close("FD", r["fd"]["value"], f["fd"], a.tol, scale)
    ok &= close("FD (eigh)", r["fd"]["value"], fd_eigh(f["s1"], f["s2"], f["diff"]), a.tol, scale)
    ok &= r["fd"]["n_samples"] == len(fs) and r["fd"]["n_reference"] == len(fr)
    mmds, mean, std, m = kid(fs, fr, a.kid_subsets, a.kid_subset_size, a.seed)
    kscale = float(np.mean((np.sum(fr * fr, 1) / fr.shape[1] + 1) ** 3))
    ok &= close("KID mean", r["kid"]["mean"], mean, a.tol, max(abs(mean), 1e-6 * kscale))
    ok &= close("KID std", r["kid"]["std"], std, a.tol * 10, max(std, 1e-6 * kscale))
    ok &= r["kid"]["subset_size"] == m and r["kid"]["subsets"] == a.kid_subsets
    labels = st_read(a.labels)["labels"].astype(np.int64)
    c, n, cc, cn = accuracy(s["logits"].astype(np.float64), labels)
    acc = r["class_accuracy"]
    # a sample whose two largest logits are within float error may flip: allow one
    ok &= close("class accuracy", acc["value"], c / n, 1.0 / n + 1e-12, 1.0)
    ok &= abs(acc["correct"] - c) <= 1 and acc["count"] == n
    for k in range(len(cc)):
        ok &= abs(acc["per_class"][k]["correct"] - cc[k]) <= 1 and acc["per_class"][k]["count"] == cn[k]
    if a.reference_labels:
        rl = st_read(a.reference_labels)["labels"].astype(np.int64)
        c2, n2, _, _ = accuracy(ref["logits"].astype(np.float64), rl)
        ra = r["reference_accuracy"]
        ok &= ra is not None and close("reference accuracy", ra["value"], c2 / n2, 2.0 / n2, 1.0) and ra["count"] == n2
    print("metrics_ref: %s" % ("all figures agree" if ok else "MISMATCH"))
    return 0 if ok else 1


def make_samples(a):
    import gzip

    def idx(name):
        with gzip.open(os.path.join(a.data, name), "rb") as f:
            raw = f.read()
        nd = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)

    x = idx("%s-images-idx3-ubyte.gz" % a.split)[a.offset:a.offset + a.count]
    y = idx("%s-labels-idx1-ubyte.gz" % a.split)[a.offset:a.offset + a.count].astype(np.int64)
    rng = np.random.default_rng(a.seed)
    x = np.pad(x, ((0, 0), (2, 2), (2, 2))).astype(np.float32) / np.float32(127.5) - np.float32(1)
    x = np.clip(x + a.noise * rng.standard_normal(x.shape), -1, 1).astype(np.float32)[:, None]
    flip = rng.random(len(y)) < a.relabel
    y[flip] = (y[flip] + rng.integers(1, 10, flip.sum())) % 10
    blobs = [("images", "F32", x), ("labels", "I64", y)]
    header, off, data = {}, 0, b""
    for name, dt, arr in blobs:
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(a.make_samples, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp")
    ap.add_argument("--out")
    ap.add_argument("--check-json")
    ap.add_argument("--samples")
    ap.add_argument("--reference")
    ap.add_argument("--labels")
    ap.add_argument("--reference-labels")
    ap.add_argument("--kid-subsets", type=int, default=100)
    ap.add_argument("--kid-subset-size", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--make-samples")
    ap.add_argument("--split", default="train")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--relabel", type=float, default=0.0)
    ap.add_argument("--data", default=os.environ.get("LDMC_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    if a.make_samples:
        return make_samples(a)
    if a.check_json:
        return check_json(a)
    if not a.inp or not a.out:
        ap.error("give --in and --out, or --check-json")
    return run_in_out(a)


if __name__ == "__main__":
    sys.exit(main())
