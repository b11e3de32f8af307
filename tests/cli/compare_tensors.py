#!/usr/bin/python3
"""Whether the f32 tensors of two .safetensors files agree: the same names
and shapes, and per tensor max |a - b| <= RTOL max |a| + ATOL (ATOL for
tensors near zero, such as biases a few Adam steps from their zero init).
Usage: compare_tensors.py A B RTOL [ATOL]; exit 1 when any tensor fails."""
import json
import struct
import sys

import numpy as np


def read(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, v in head.items():
        if name == '__metadata__':
            continue
        if v['dtype'] != 'F32':
            continue
        lo, hi = v['data_offsets']
        out[name] = np.frombuffer(raw[8 + n + lo:8 + n + hi], dtype=np.float32).reshape(v['shape'])
    return out


a, b, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
atol = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
if sorted(a) != sorted(b):
    print('different tensor names:', sorted(set(a) ^ set(b)))
    sys.exit(1)
worst, where, bad = 0.0, '', []
for k in a:
    if a[k].shape != b[k].shape:
        print(f'{k}: shapes {a[k].shape} and {b[k].shape}')
        sys.exit(1)
    diff = float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].size else 0.0
    scale = float(np.max(np.abs(a[k]))) if a[k].size else 0.0
    if diff > tol * scale + atol:
        bad.append(f'{k}: max |a - b| {diff:.3g}, max |a| {scale:.3g}')
    if diff / (scale + 1e-30) > worst:
        worst, where = diff / (scale + 1e-30), k
print(f'{len(a)} tensors, largest relative difference {worst:.3g} ({where}); {len(bad)} beyond the tolerance')
for line in bad[:5]:
    print(' ', line)
sys.exit(0 if not bad else 1)
