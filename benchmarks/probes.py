"""What sets a machine apart for nncli's kernels, measured in a few hundred milliseconds.

The same code ranks differently against PyTorch on different machines (see docs/performance.md):
nncli's convolutions are copies (im2col) plus OpenBLAS products of skinny shapes, and its second
core comes from Python threads. So beside the SGEMM peak the benchmark records:

- ``skinny_gflops``: a convolution-shaped product, (32 × 145) @ (145 × 12544) float32 on one
  thread (a Conv2D 16 → 32, k3, over 16 examples of 28 × 28), which OpenBLAS runs well below its
  1024² peak on some cores;
- ``copy_gbps``: an 8 MB copy (read + write counted), the speed of im2col, pooling and activations;
- ``first_touch_us``: the cost of a fresh 4 kB page (its first write), which every array allocated
  outside malloc's kept memory pays;
- ``pool_round_trip_us``: handing a no-op to nncli's thread pool and waiting for it, what each
  threaded kernel pays before it gains (needs nncli; None without).

Also the caches the kernel reports (``caches``). Each timing is the median of repeated runs.
"""

from __future__ import annotations

import mmap
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def _median_us(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def caches() -> str:
    """The first CPU's caches as the kernel lists them, e.g. 'L1d 48K, L1i 32K, L2 2048K, L3 …'."""
    found = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        found.append(f"L{level}{suffix} {size}")
    return ", ".join(found) or "unknown"


def _first_touch_us(pages: int = 2048) -> float:
    """µs per 4 kB page for the first write into fresh anonymous memory (8 MB)."""
    import numpy as np

    def touch() -> float:
        region = mmap.mmap(-1, pages * 4096)
        a = np.frombuffer(region, dtype=np.uint8)
        t0 = time.perf_counter()
        a[::4096] = 1  # one byte per page: the fault, not the bandwidth
        spent = time.perf_counter() - t0
        del a
        region.close()
        return spent

    return statistics.median(touch() for _ in range(5)) * 1e6 / pages


def _pool_round_trip_us() -> float | None:
    try:
        from nncli.core.kernels.threads import run_blocks
    except ImportError:
        return None
    return _median_us(lambda: run_blocks(lambda k, slot: None, 2, 2), 200)


def machine_probes() -> dict:
    """The four measurements of the module docstring, and the caches."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 145), dtype=np.float32)
    cols = rng.standard_normal((145, 16 * 784), dtype=np.float32)
    out = np.empty((32, cols.shape[1]), np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        skinny_us = _median_us(lambda: np.matmul(w, cols, out=out), 15)
    src = rng.standard_normal(2 << 20, dtype=np.float32)
    dst = np.empty_like(src)
    copy_us = _median_us(lambda: np.copyto(dst, src), 30)
    return {
        "caches": caches(),
        "skinny_gflops": 2 * w.size * cols.shape[1] / skinny_us / 1e3,
        "copy_gbps": 2 * src.nbytes / copy_us / 1e3,
        "first_touch_us": _first_touch_us(),
        "pool_round_trip_us": _pool_round_trip_us(),
    }
