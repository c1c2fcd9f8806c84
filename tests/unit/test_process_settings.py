"""What nncli sets for its process when imported (nncli/_process.py): OpenBLAS's idle spin, before numpy
loads OpenBLAS, and glibc's malloc keeping freed memory; a user's own settings win."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import nncli._process as process

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
    assert _spin_after(first) == str(process.SPIN_LOG2_CYCLES)


def test_a_users_spin_is_kept():
    assert _spin_after("import nncli", OPENBLAS_THREAD_TIMEOUT="8") == "8"


def test_nothing_changes_once_numpy_is_loaded():
    # OpenBLAS has read its environment by then; setting it would only mislead child processes
    assert _spin_after("import numpy, nncli") == "None"


class FakeLibc:
    """A C library whose mallopt records its calls (a plain function: ctypes sets ``argtypes`` on it)."""

    def __init__(self):
        self.calls = []

        def mallopt(param, value):
            self.calls.append((param, value))
            return 1

        self.mallopt = mallopt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_malloc_keeps_freed_memory(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(process.ctypes, "CDLL", lambda name: libc)
    for k in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    assert process.keep_freed_memory()
    assert libc.calls == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_MMAP_THRESHOLD_": "131072"},
        {"MALLOC_TRIM_THRESHOLD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
    ],
)
def test_a_users_malloc_settings_are_kept(monkeypatch, env):
    libc = FakeLibc()
    monkeypatch.setattr(process.ctypes, "CDLL", lambda name: libc)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert not process.keep_freed_memory()
    assert libc.calls == []


def test_without_mallopt_nothing_is_set(monkeypatch):
    monkeypatch.setattr(process.ctypes, "CDLL", lambda name: object())  # no mallopt (not glibc)
    for k in ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(k, raising=False)
    assert process.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_the_real_mallopt_accepts_the_settings():
    # run in a fresh process: glibc's own mallopt, not a fake, returns success for both values
    out = subprocess.run(
        [sys.executable, "-c", "import nncli._process as p; print(p.MALLOC_KEPT)"],
        env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"
