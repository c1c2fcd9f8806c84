"""Timing, memory and machine facts shared by the benchmark workers and the driver.

Nothing here imports torch: the nncli worker imports this module too, and it must run with a single
BLAS thread pool (numpy's), so the PyTorch side lives only in ``workloads_torch``.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: environment variables that change which OpenBLAS kernel runs (reported, optionally unset)
OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


class Unavailable(Exception):
    """A workload cannot run yet (a module type or a command is missing); the table says why."""


@dataclass
class Workload:
    """One benchmark case: ``step()`` does the timed work once; ``model`` feeds the memory estimate."""

    step: Callable[[], object]
    note: str = ""
    model: object = None  # the nncli Chain, for the theoretical memory figure
    batch: int = 0
    optimizer_slots: int = 0  # optimiser buffers per parameter (SGD 0, momentum 1, Adam 2)
    extra: dict = field(default_factory=dict)


# -- machine facts ------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_pools() -> list[dict]:
    """Every BLAS / OpenMP thread pool loaded in this process (threadpoolctl's view)."""
    from threadpoolctl import threadpool_info

    keep = (
        "user_api",
        "internal_api",
        "version",
        "num_threads",
        "architecture",
        "threading_layer",
        "filepath",
    )
    pools = [{k: p.get(k) for k in keep} for p in threadpool_info()]
    for p in pools:  # read by OpenBLAS when it loaded: how long its idle threads spin (log2 cycles)
        if p["internal_api"] == "openblas":
            p["spin"] = os.environ.get("OPENBLAS_THREAD_TIMEOUT") or "28 (OpenBLAS's default)"
    return pools


def numpy_blas_threads() -> int:
    """Threads of numpy's own BLAS: the pool whose library file lives under numpy's folder."""
    import numpy as np

    pools = [p for p in blas_pools() if p["user_api"] == "blas"]
    site = os.path.dirname(os.path.dirname(np.__file__))
    # wheels keep the library in site-packages/numpy.libs; a system numpy links one from /usr/lib
    own = [p for p in pools if (p["filepath"] or "").startswith(os.path.join(site, "numpy"))]
    chosen = own or pools
    return int(chosen[0]["num_threads"]) if chosen else 1


def openblas_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in OPENBLAS_ENV}


# -- timing -------------------------------------------------------------------------------------
def calibrate(step: Callable[[], object], min_time: float) -> int:
    """Calls per timed repeat so that one repeat lasts at least ``min_time`` seconds (timer noise)."""
    t0 = time.perf_counter()
    step()
    one = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(1000, int(min_time / one) + 1)) if one < min_time else 1


def time_repeats(step: Callable[[], object], repeats: int, number: int) -> list[float]:
    """``repeats`` timings of ``number`` back-to-back calls each, in seconds per call.

    The garbage collector is off while timing (as ``timeit`` does) and run between repeats.
    """
    out = []
    enabled = gc.isenabled()
    try:
        for _ in range(repeats):
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            for _ in range(number):
                step()
            out.append((time.perf_counter() - t0) / number)
            gc.enable()
    finally:
        if enabled:
            gc.enable()
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float]) -> float:
    """Run-to-run spread: interquartile range over the median (0.25 = 25 %)."""
    if len(xs) < 4:
        return (max(xs) - min(xs)) / median(xs) if len(xs) > 1 else 0.0
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / statistics.median(xs)


# -- memory -------------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (VmHWM) of this process (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_bytes() -> int:
    return _status_kb("VmRSS") * 1024


def peak_rss_bytes() -> int:
    return _status_kb("VmHWM") * 1024


def fmt_bytes(n: float | None) -> str:
    if n is None or n != n:
        return "—"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def flops_per_step(chain, batch: int) -> int:
    """Floating-point operations of one step: 2 × the multiply-adds each layer's ``describe()`` gives
    for its forward and backward, × batch. A training step (the chain has a loss) runs no backward
    before its first trainable layer and skips that layer's ∂J/∂x (half its backward, as for MM and
    Conv: ∂J/∂W and ∂J/∂z cost the same), as nncli, PyTorch and JAX all do. The optimiser's few
    elementwise operations per parameter are not counted."""
    facts = [m.describe() for m in chain.modules]
    macs = sum(f["macs_forward"] + f["macs_backward"] for f in facts)
    from nncli.core.chain import first_trainable

    first = first_trainable(chain.modules) if chain.loss is not None else None
    if first is not None:
        macs -= sum(f["macs_backward"] for f in facts[:first]) + facts[first]["macs_backward"] // 2
    return 2 * int(macs) * batch


def sgemm_peak_gflops(threads: int, n: int = 1024, repeats: int = 7) -> float:
    """This machine's float32 matrix-product speed on ``threads`` BLAS threads: the best of
    ``repeats`` n×n products through numpy (OpenBLAS's SGEMM), in GFLOP/s (2n³ per product)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    best = float("inf")
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=out)  # warm-up: thread start, page faults
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def theoretical_bytes(chain, batch: int, optimizer_slots: int) -> dict[str, int]:
    """What a training step cannot do without: parameters, their gradients, optimiser state and the
    activations the backward pass reads (each module's ``describe()['saved']`` floats per example).
    """
    import numpy as np

    item = np.dtype(chain.dtype).itemsize
    p = chain.param_count
    saved = sum(int(m.describe().get("saved", 0)) for _, m in chain.named_modules())
    return {
        "params": p * item,
        "grads": p * item,
        "optimizer": optimizer_slots * p * item,
        "activations": saved * batch * item,
    }
