"""Two process-wide settings nncli makes when it is imported, both measured on its workloads.

**OpenBLAS's idle spin** (set before numpy loads OpenBLAS, which reads it once). After a threaded BLAS
call, OpenBLAS's worker threads busy-wait for more work for 2^28 CPU cycles (about 80 ms) by default
before they sleep. nncli spreads convolutions, pooling, activations and LN over its own threads
(``nncli.core.kernels.threads``) with BLAS on one thread, so a spinning OpenBLAS thread takes the second
core from nncli's: the CIFAR-sized CNN's step took 29–30 ms on two threads, no faster than on one;
with the spin cut to 2^20 cycles (~0.3 ms), 19.6–20.8 ms, while the MLPs, whose GEMMs use OpenBLAS's
own threads, kept their speed (784-256-256-10: 0.63–0.67 ms either way).

**glibc's malloc keeps freed memory** for the next allocation. By default, glibc gives large freed
blocks back to the operating system (``munmap``, or trimming the heap's top), so the next step's
arrays of the same sizes are fresh pages again: each 4 kB page costs a fault on first touch, 1–2 µs on
a virtual machine, 0.8 ms for one 2 MB activation. With freed memory kept (mmap threshold 32 MB, the
largest glibc allows; no trimming) a training step reuses its own memory: the three-stage CNN's first
ReLU took 0.88 ms with 512 page faults, 0.12 ms with none; its whole step at one thread ~9.5 → ~6.5 ms.
The price: the process keeps its peak heap until it exits, which a training run reaches anyway.

A value the user set (``OPENBLAS_THREAD_TIMEOUT``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
malloc entries in ``GLIBC_TUNABLES``) is kept. The OpenBLAS setting cannot apply once numpy is loaded:
a program that imports numpy before nncli can set ``OPENBLAS_THREAD_TIMEOUT=20`` itself.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: log2 of the cycles an idle OpenBLAS thread spins (OpenBLAS accepts 4–30; its default is 28)
SPIN_LOG2_CYCLES = 20
#: allocations below this many bytes come from malloc's heap, not fresh mmap'd pages (glibc's maximum)
MMAP_THRESHOLD = 32 << 20
#: free memory at the heap's top kept rather than given back (1 GiB: in practice, never trimmed)
TRIM_THRESHOLD = 1 << 30

# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _user_set_malloc() -> bool:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return "glibc.malloc." in tunables or any(
        k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    )


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse; whether it was set (False off glibc, or
    where the user configured malloc)."""
    if not sys.platform.startswith("linux") or _user_set_malloc():
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(SPIN_LOG2_CYCLES))
MALLOC_KEPT = keep_freed_memory()
