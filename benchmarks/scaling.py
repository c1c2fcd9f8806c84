"""What a second thread buys on this machine: memory-bound passes against BLAS products.

    python benchmarks/scaling.py [--repeats 41]

Each kernel runs on two independent halves of its data, first one half after the other on one
thread, then both at once on two Python threads (numpy and BLAS release the GIL; BLAS on one
thread each). Prints the fastest of the repeats and the speedup. Explains why nncli's convolutions
(an im2col copy, then GEMMs) gain less from a second core than PyTorch's: the copies do not speed up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# nncli before numpy, as under `nncli train`: it sets how long OpenBLAS's idle threads spin
import nncli  # noqa: F401


def kernels() -> dict:
    """name → (function of the half index 0 or 1, bytes one half moves)."""
    import numpy as np

    from nncli.core.kernels.im2col import Geometry, im2col_examples

    rng = np.random.default_rng(0)
    out = {}
    for mb in (0.5, 8, 64):
        n = int(mb * 2**20 / 4)
        a = [rng.standard_normal(n).astype(np.float32) for _ in range(2)]
        b = [np.empty(n, np.float32) for _ in range(2)]
        out[f"copy {mb:g} MB"] = (lambda i, a=a, b=b: np.copyto(b[i], a[i]), 2 * a[0].nbytes)
    g = Geometry((3, 3), (1, 1), (1, 1), (0, 0), (0, 0))
    zp = [rng.standard_normal((32, 3, 34, 34)).astype(np.float32) for _ in range(2)]
    cols = [np.empty((32, 27, 1024), np.float32) for _ in range(2)]
    out["im2col 3→(27, 1024) ×32"] = (
        lambda i: im2col_examples(zp[i], g, (32, 32), into=cols[i]),
        cols[0].nbytes,
    )
    W = rng.standard_normal((32, 27)).astype(np.float32)
    u = [np.empty((32, 32, 1024), np.float32) for _ in range(2)]
    out["GEMM (32, 27)@(27, 1024) ×32"] = (lambda i: np.matmul(W, cols[i], out=u[i]), u[0].nbytes)
    W2 = rng.standard_normal((64, 289)).astype(np.float32)
    c2 = [rng.standard_normal((32, 289, 256)).astype(np.float32) for _ in range(2)]
    u2 = [np.empty((32, 64, 256), np.float32) for _ in range(2)]
    out["GEMM (64, 289)@(289, 256) ×32"] = (lambda i: np.matmul(W2, c2[i], out=u2[i]), c2[0].nbytes)
    z = [rng.standard_normal((32, 32, 32, 32)).astype(np.float32) for _ in range(2)]
    zero = np.zeros((1, 32, 32, 32), np.float32)
    r = [np.empty_like(z[0]) for _ in range(2)]
    out["ReLU 4 MB"] = (lambda i: np.maximum(z[i], zero, out=r[i]), 2 * z[0].nbytes)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=41)
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    pool = ThreadPoolExecutor(1)
    print(f"load average {os.getloadavg()[0]:.2f}; fastest of {args.repeats}; ms for both halves")
    print(f"{'kernel':32} {'one thread':>10} {'two threads':>11} {'speedup':>7}  GB/s (one)")
    with threadpool_limits(limits=1, user_api="blas"):
        for name, (f, nbytes) in kernels().items():
            one, two = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                f(0)
                f(1)
                t1 = time.perf_counter()
                other = pool.submit(f, 1)
                f(0)
                other.result()
                t2 = time.perf_counter()
                one.append(t1 - t0)
                two.append(t2 - t1)
            a, b = min(one), min(two)
            print(f"{name:32} {a * 1e3:10.3f} {b * 1e3:11.3f} {a / b:7.2f}  {2 * nbytes / a / 1e9:6.1f}")


if __name__ == "__main__":
    main()
