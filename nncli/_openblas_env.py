"""How long OpenBLAS's idle threads spin: set before numpy loads OpenBLAS, which reads it once.

After a threaded BLAS call, OpenBLAS's worker threads busy-wait for more work for 2^28 CPU cycles
(about 80 ms) by default before they sleep. nncli spreads convolutions and LN over its own threads
(``nncli.core.kernels.threads``) with BLAS on one thread, so a spinning OpenBLAS thread takes the
second core from nncli's: the CIFAR-sized CNN's step took 29–30 ms with two threads, the same as
with one; with the spin cut to 2^20 cycles (~0.3 ms) it took 19.6–20.8 ms, while the MLPs whose
GEMMs use OpenBLAS's own threads kept their speed (784-256-256-10: 0.63–0.67 ms either way).

A value the user set is kept, and nothing changes when numpy (hence OpenBLAS) is already loaded:
a program that imports numpy before nncli can set ``OPENBLAS_THREAD_TIMEOUT=20`` itself.
"""

from __future__ import annotations

import os
import sys

#: log2 of the cycles an idle OpenBLAS thread spins (OpenBLAS accepts 4–30; its default is 28)
SPIN_LOG2_CYCLES = 20

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(SPIN_LOG2_CYCLES))
