"""Where an nncli workload spends its time: cProfile over many steps, sorted by own time.

    python benchmarks/profile_step.py [mnist1d_cnn] [--steps 500] [--threads 1] [--top 20]

Runs in this process only (no torch). With ``--threads 1`` OpenBLAS does not spin, so the profile
shows the work itself rather than thread wake-ups on a busy machine.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", nargs="?", default="mnist1d_cnn")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0, help="numpy BLAS threads (default: unchanged)")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args(argv)
    import numpy  # noqa: F401  (threadpoolctl can only limit a BLAS that is already loaded)

    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")
    import workloads_nncli

    w = workloads_nncli.make(args.workload)
    for _ in range(5):
        w.step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        w.step()
    plain = (time.perf_counter() - t0) / args.steps
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.steps):
        w.step()
    prof.disable()
    print(f"{args.workload}: {plain * 1e3:.3f} ms/step without the profiler ({args.steps} steps)")
    pstats.Stats(prof).strip_dirs().sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
