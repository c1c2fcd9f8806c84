"""What two Python threads cost each other on a training step, and what two processes would not.

    python benchmarks/gil_cost.py [cifar_cnn_avg cnn3_avg conv1d mnist1d_cnn] [--seconds 1.5]

For each workload of ``bench.py`` (BLAS on one thread throughout), ms per step:

- alone: the step on one thread;
- beside a product: the same while another thread multiplies two 1500×1500 matrices in a loop,
  which releases the GIL for almost all of its time (the second core busy, the GIL nearly free);
- beside itself: two copies of the workload at once on two threads, each with its own scratch
  buffers (workspace slots), as a split batch's two halves run;
- and for training workloads, half the batch on one thread, and two processes each training on
  half the batch at once: what a split batch in a second process, sharing no GIL, would bound.

The gap between "beside a product" and "beside itself" is the GIL: each numpy call takes it and
gives it back, and a thread that finds it held sleeps until it is released.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import nncli  # noqa: E402, F401  (before numpy, as under `nncli train`)


def _per_step(step, seconds: float) -> float:
    """Seconds per call of ``step``, over about ``seconds`` after three warm-up calls."""
    for _ in range(3):
        step()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return (time.perf_counter() - t0) / n


def _make(name: str, batch: int | None = None):
    import specs
    import workloads_nncli

    if batch is not None:
        specs.SPECS[name] = dict(specs.SPECS[name], batch=batch)
    return workloads_nncli.make(name)


def _threads(name: str, seconds: float) -> dict[str, float]:
    import numpy as np

    from nncli.core.kernels.workspace import slots_from

    first, second = _make(name), _make(name)
    out = {"alone": _per_step(first.step, seconds)}

    big = np.random.default_rng(0).standard_normal((1500, 1500)).astype(np.float32)
    stop = threading.Event()

    def product() -> None:
        while not stop.is_set():
            big @ big

    side = threading.Thread(target=product)
    side.start()
    out["beside a product"] = _per_step(first.step, seconds)
    stop.set()
    side.join()

    results: list[float] = [0.0, 0.0]

    def run(w, i: int) -> None:
        with slots_from(8 * i):  # its own scratch buffers, as a split batch's second half
            results[i] = _per_step(w.step, seconds)

    pair = [threading.Thread(target=run, args=(w, i)) for i, w in enumerate((first, second))]
    for t in pair:
        t.start()
    for t in pair:
        t.join()
    out["beside itself"] = max(results)
    return out


def _halves(name: str, seconds: float) -> dict[str, float] | None:
    """Half the batch alone, and two processes on half the batch at once (training workloads)."""
    import specs

    spec = specs.SPECS[name]
    if spec.get("kind") != "train":
        return None
    half = spec["batch"] // 2
    cmd = [sys.executable, os.path.abspath(__file__), "--half", name, str(half), "--seconds", str(seconds)]
    alone = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    both = max(float(p.communicate()[0]) for p in procs)
    return {"half alone": alone, "two processes": both}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", default=["cifar_cnn_avg", "cnn3_avg", "conv1d", "mnist1d_cnn"])
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per measurement")
    ap.add_argument("--half", nargs=2, metavar=("WORKLOAD", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import numpy  # noqa: F401  (threadpoolctl can only limit a BLAS that is already loaded)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    if args.half:  # a worker: print seconds per step of the half batch
        print(_per_step(_make(args.half[0], int(args.half[1])).step, args.seconds))
        return
    cols = ["alone", "beside a product", "beside itself", "half alone", "two processes"]
    print(f"ms per step, BLAS on one thread; load average {os.getloadavg()[0]:.2f}")
    print(f"{'workload':<16}" + "".join(f"{c:>18}" for c in cols))
    for name in args.workloads:
        row = _threads(name, args.seconds)
        row.update(_halves(name, args.seconds) or {})
        cells = "".join(f"{row[c] * 1e3:>18.2f}" if c in row else f"{'—':>18}" for c in cols)
        print(f"{name:<16}{cells}", flush=True)


if __name__ == "__main__":
    main()
