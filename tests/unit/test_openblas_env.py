"""nncli sets how long OpenBLAS's idle threads spin before numpy loads OpenBLAS (nncli/_openblas_env.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

READ = "import os, sys; {first}; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"


def _spin_after(first: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run(
        [sys.executable, "-c", READ.format(first=first)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.parametrize("first", ["import nncli", "import nncli.cli"])
def test_importing_nncli_first_shortens_the_spin(first):
    from nncli._openblas_env import SPIN_LOG2_CYCLES

    assert _spin_after(first) == str(SPIN_LOG2_CYCLES)


def test_a_users_setting_is_kept():
    assert _spin_after("import nncli", OPENBLAS_THREAD_TIMEOUT="8") == "8"


def test_nothing_changes_once_numpy_is_loaded():
    # OpenBLAS has read its environment by then; setting it would only mislead child processes
    assert _spin_after("import numpy, nncli") == "None"
