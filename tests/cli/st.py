"""A small, independent safetensors writer/reader for the driver tests (the
format: u64 little-endian header length, JSON header with dtype, shape and
data_offsets, then the raw little-endian data).

  st.py write OUT.safetensors NAME DTYPE SHAPE VALUES [NAME DTYPE SHAPE VALUES ...]
      SHAPE "2,3" ("" for a scalar), VALUES "1,2,3,4,5,6"; DTYPE F32, I64, ...
  st.py read FILE NAME        prints the values, one per line, %.9g
  st.py header FILE           prints the JSON header
  st.py set IN OUT NAME DTYPE VALUES   copy IN with tensor NAME replaced (same shape)
  st.py drop IN OUT NAME               copy IN without tensor NAME
"""
import json
import struct
import sys

FMT = {"F64": "d", "F32": "f", "F16": "e", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B", "BOOL": "?"}


def write(path, specs):
    header, blobs, off = {}, [], 0
    for name, dtype, shape, values in specs:
        dims = [int(d) for d in shape.split(",")] if shape else []
        vals = [float(v) if dtype.startswith("F") else int(float(v)) for v in values.split(",")] if values else []
        n = 1
        for d in dims:
            n *= d
        assert n == len(vals), f"{name}: shape {dims} needs {n} values, got {len(vals)}"
        blob = struct.pack("<%d%s" % (n, FMT[dtype]), *vals)
        header[name] = {"dtype": dtype, "shape": dims, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load(path):
    data = open(path, "rb").read()
    (hl,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + hl])
    return header, data[8 + hl :]


def read(path, name):
    header, body = load(path)
    t = header[name]
    b, e = t["data_offsets"]
    n = (e - b) // struct.calcsize(FMT[t["dtype"]])
    for v in struct.unpack("<%d%s" % (n, FMT[t["dtype"]]), body[b:e]):
        print("%.9g" % v)


def tensors(path):
    """name -> (dtype, shape, raw bytes), in header order, without __metadata__."""
    header, body = load(path)
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0] : v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}


def write_raw(path, ts):
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, raw) in ts.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write":
        a = sys.argv[3:]
        write(sys.argv[2], [a[i : i + 4] for i in range(0, len(a), 4)])
    elif cmd == "read":
        read(sys.argv[2], sys.argv[3])
    elif cmd == "set":
        ts = tensors(sys.argv[2])
        name, dtype, values = sys.argv[4:7]
        shape = ts[name][1]
        vals = [float(v) if dtype.startswith("F") else int(float(v)) for v in values.split(",")]
        ts[name] = (dtype, shape, struct.pack("<%d%s" % (len(vals), FMT[dtype]), *vals))
        write_raw(sys.argv[3], ts)
    elif cmd == "drop":
        ts = tensors(sys.argv[2])
        del ts[sys.argv[4]]
        write_raw(sys.argv[3], ts)
    elif cmd == "header":
        print(json.dumps(load(sys.argv[2])[0], sort_keys=True))
