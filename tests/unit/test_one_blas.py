"""nncli runs a single BLAS thread pool: numpy's. Nothing it imports may load a second one."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import numpy as np, nncli
from nncli.core.registry import modules
from threadpoolctl import threadpool_info
rng = np.random.default_rng(0)
for fn in ("gelu", "softplus", "sigmoid"):      # the exact GELU is the one that needs erf
    m = modules.create("sigma", fn=fn).build((4,), rng)
    m.backward(m.forward(rng.normal(size=(3, 4))))
libs = {p["filepath"] for p in threadpool_info() if p["user_api"] == "blas"}
print(len(libs), sorted(libs))
"""


def test_nncli_loads_one_blas_library_even_for_the_exact_gelu():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True).stdout
    assert out.startswith("1 "), out
