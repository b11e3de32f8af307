#!/usr/bin/env python3
"""Independent account of a text-IR graph for the driver tests (tests/cli/*.sh).

Reads the canonical print (`ldmc print FILE`: one node per line) and writes
key=value lines, computed here without any of ldmc's code:
  nodes           node count
  edges           operand references (one per operand, repeats counted)
  naive_bytes     bytes of every node but parameters and constants: the memory
                  of the graph as built if nothing were freed or fused
  unfused_peak    the most bytes live at once running the nodes one by one in
                  graph order, each value freed after its last use, outputs kept
                  (parameters and constants excluded)
"""
import re
import sys

SIZE = {"f32": 4, "bf16": 2, "f16": 2, "i32": 4, "i64": 8, "pred": 1}
NODE = re.compile(r"^\s*%(\d+) = (\w+)\[([0-9,]*)\] (\w+)\(([^)]*)\)")


def main(path):
    ids, nbytes, ops, operands, outputs = {}, [], [], [], set()
    with open(path) as f:
        for line in f:
            m = NODE.match(line)
            if m:
                name, dt, dims, op, args = m.groups()
                n = 1
                for d in filter(None, dims.split(",")):
                    n *= int(d)
                ids[name] = len(nbytes)
                nbytes.append(n * SIZE[dt])
                ops.append(op)
                operands.append([ids[a.strip()[1:]] for a in args.split(",") if a.strip()])
            elif line.strip().startswith("return"):
                outputs |= {ids[v] for v in re.findall(r"%(\d+)", line)}
    source = [op in ("parameter", "constant") for op in ops]
    last = list(range(len(ops)))
    for i, args in enumerate(operands):
        for a in args:
            last[a] = i
    for o in outputs:
        last[o] = len(ops)
    live = peak = naive = 0
    for i, args in enumerate(operands):
        if source[i]:
            continue
        naive += nbytes[i]
        live += nbytes[i]
        peak = max(peak, live)
        for a in set(args):
            if last[a] == i and not source[a]:
                live -= nbytes[a]
        if last[i] == i:
            live -= nbytes[i]
    print(f"nodes={len(ops)}")
    print(f"edges={sum(len(a) for a in operands)}")
    print(f"naive_bytes={naive}")
    print(f"unfused_peak={peak}")


if __name__ == "__main__":
    main(sys.argv[1])
