"""What the benchmarks that time peers share. The peers' best environment:
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed, ATEN_CPU_CAPABILITY set to
avx512; ensure() re-executes the calling script once with it, before torch or
numpy load, so the change stays in the benchmark's own process. fma_peak():
the machine's FMA peak measured now by bench_llvm_cpu_gemm."""
import json
import os
import subprocess
import sys


def peer_env():
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env["ATEN_CPU_CAPABILITY"] = "avx512"
    return env


def ensure():
    if os.environ.get("LDMC_BENCH_ENV") != "1":
        env = peer_env()
        env["LDMC_BENCH_ENV"] = "1"
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def fma_peak(bindir, threads):
    out = subprocess.run([os.path.join(bindir, "bench_llvm_cpu_gemm"), "--json", "--threads", str(threads),
                          "--only", "(none)", "--no-bf16"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("kind") == "peak":
            return float(r["gflops"])
    return float("nan")
