"""The peers' best environment, shared by the benchmarks that time PyTorch and
OpenBLAS: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed, ATEN_CPU_CAPABILITY
set to avx512. ensure() re-executes the calling script once with it, before
torch or numpy load; the change stays in the benchmark's own process."""
import os
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
