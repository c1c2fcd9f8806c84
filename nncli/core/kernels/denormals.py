"""Subnormal floats flushed to zero while nncli trains, evaluates and predicts.

Late in training, gradients, Adam's second moments and softmax's small probabilities fall below
float32's smallest normal number (1.2e-38). On many x86 CPUs an arithmetic operation that reads or
writes such a subnormal number takes a slow microcode path, a hundred times slower or worse. Measured
on an Intel Xeon (2 cores, one thread): `nncli train configs/mnist1d_cnn.yaml` slowed from 0.74 ms
a step over its first 1000 steps to 1.21 ms over its last 1000, and took 10.4 s for its 8000 steps.
With subnormals flushed it takes 6.3 s, its last 1000 steps 0.78 ms a step.

The CPU does the flushing itself, through two bits of its floating-point control register, which the
C library reads and writes with ``fegetenv``/``fesetenv`` (``_controlfp_s`` on Windows):

- x86-64: MXCSR's FTZ bit, results that would be subnormal become 0, and DAZ, subnormal inputs
  read as 0;
- ARM64: FPCR's FZ bit, which does both.

These registers are per thread, and only values below 1.2e-38 (2.2e-308 in float64) change. So it is
no numerical setting in practice, but it does change bits. ``flushing`` therefore sets the bits on
the calling thread only, for the duration of a block, and puts back what it found. TensorFlow and XLA
on the CPU flush the same way by default. Inside a ``flushing`` block, nncli's pool threads take the
block's setting for each task (``kernels.threads``; outside one they are left alone, at no cost), and
OpenBLAS's threads take the caller's register themselves, so results stay the same on any thread
count.

``NNCLI_DENORMALS=keep`` in the environment turns it off: subnormals are computed as IEEE 754 says,
as PyTorch does by default. Where the C library's layout is not one listed here, or the self-check
(a subnormal times 1 must give 0) fails, ``flushing`` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from nncli.core.env_choice import env_choice

#: the environment variable that turns flushing off (value ``keep``)
ENV = "NNCLI_DENORMALS"

_X86_FTZ_DAZ = 0x8000 | 0x0040  # MXCSR bits 15 (flush to zero) and 6 (denormals are zero)
_ARM_FZ = 1 << 24  # FPCR bit 24 (flush to zero)
_WIN_DN_FLUSH, _WIN_MCW_DN = 0x01000000, 0x03000000  # _controlfp_s: flush denormals, its mask


class _FenvRegister:
    """One control register inside the C library's ``fenv_t``, at ``offset``, 4 bytes wide."""

    def __init__(self, libc: Any, offset: int, bits: int):
        self._get, self._set = libc.fegetenv, libc.fesetenv
        self._get.argtypes = self._set.argtypes = (ctypes.c_void_p,)
        self._offset, self.bits = offset, bits

    def read(self) -> int:
        env = (ctypes.c_uint32 * 16)()  # larger than any fenv_t listed below
        if self._get(env):
            raise OSError("fegetenv failed")
        return int(env[self._offset // 4])

    def write(self, value: int) -> None:
        env = (ctypes.c_uint32 * 16)()
        if self._get(env):
            raise OSError("fegetenv failed")
        env[self._offset // 4] = value
        if self._set(env):
            raise OSError("fesetenv failed")


class _WindowsControl:
    """The flush bits through the C runtime's ``_controlfp_s``."""

    bits = _WIN_DN_FLUSH

    def __init__(self, crt: Any):
        self._fn = crt._controlfp_s
        self._fn.argtypes = (ctypes.POINTER(ctypes.c_uint), ctypes.c_uint, ctypes.c_uint)

    def read(self) -> int:
        current = ctypes.c_uint()
        self._fn(ctypes.byref(current), 0, 0)
        return int(current.value) & _WIN_MCW_DN

    def write(self, value: int) -> None:
        current = ctypes.c_uint()
        self._fn(ctypes.byref(current), value & _WIN_MCW_DN, _WIN_MCW_DN)


def _register() -> Any:
    """The control register of this platform, or None where its C library's layout is not known."""
    machine = platform.machine().lower()
    x86 = machine in ("x86_64", "amd64")
    arm = machine in ("aarch64", "arm64")
    if not (x86 or arm):
        return None
    if sys.platform == "win32":
        try:
            return _WindowsControl(ctypes.PyDLL("ucrtbase")) if x86 else None
        except (OSError, AttributeError):
            return None
    if sys.platform.startswith("linux"):
        # glibc's and musl's fenv_t: the x87 state (28 bytes), then MXCSR / {FPCR, FPSR}
        offset, bits = (28, _X86_FTZ_DAZ) if x86 else (0, _ARM_FZ)
    elif sys.platform == "darwin":
        # {control, status: 16 bits; MXCSR: 32; reserved} / {FPSR: 64 bits; FPCR: 64}
        offset, bits = (4, _X86_FTZ_DAZ) if x86 else (8, _ARM_FZ)
    else:
        return None
    # glibc keeps fegetenv in libm; musl and macOS in the C library itself. PyDLL: the calls keep the
    # GIL (they take nanoseconds), where CDLL would release it and hand it to another thread each time
    # (the thread pool's callers and workers read the setting: LN on two threads 8.2 → 9.3 ms a step)
    for name in ("m", "c"):
        try:
            return _FenvRegister(ctypes.PyDLL(ctypes.util.find_library(name) or None), offset, bits)
        except (OSError, AttributeError):
            continue
    return None


_lock = threading.Lock()
_checked = False
_reg: Any = None


def wanted() -> bool:
    """Whether ``ENV`` asks for flushing: unset, empty or ``flush`` yes, ``keep`` no; anything else
    is refused (a misspelt ``keep`` would otherwise flush silently)."""
    return env_choice(ENV, {"keep": False, "flush": True}, True)


def _control() -> Any:
    """The register, once it has passed the self-check; None if flushing is off or unavailable."""
    global _checked, _reg
    if not wanted():
        return None
    with _lock:
        if not _checked:
            _checked = True
            _reg = _self_checked(_register())
        return _reg


def _self_checked(reg: Any) -> Any:
    """``reg`` if setting its bits really flushes (a subnormal times 1 gives 0) and clearing them
    brings subnormals back; None otherwise (a layout misread, an emulator), with the register as found."""
    if reg is None:
        return None
    tiny, one = np.array([1e-39], np.float32), np.float32(1.0)
    try:
        before = reg.read()
        try:
            reg.write(before | reg.bits)
            flushed = (tiny * one)[0] == 0
            reg.write(before & ~reg.bits)
            kept = (tiny * one)[0] != 0
        finally:
            reg.write(before)
    except (OSError, AttributeError, ValueError):
        return None
    return reg if flushed and kept else None


def available() -> bool:
    """Whether ``flushing`` changes anything here (a known platform, and not turned off by ``ENV``)."""
    return _control() is not None


def mode_name() -> str:
    """What nncli's training does with subnormals here: "flushed", or "kept" (``ENV``, or a platform
    without a known control register); recorded in a run's run.json."""
    return "flushed" if available() else "kept"


def flushed() -> bool:
    """Whether the calling thread flushes subnormals now (the register itself, whoever set it)."""
    reg = _control()
    return reg is not None and reg.read() & reg.bits == reg.bits


#: per thread, the ``on`` of the innermost ``flushing`` block (absent outside any)
_scope = threading.local()


def requested() -> bool | None:
    """The ``on`` of the innermost ``flushing`` block on the calling thread, None outside any: what
    nncli's pool hands to its threads (``kernels.threads``), read without touching the register, so
    that work outside any block (a library caller's own) costs nothing extra."""
    return getattr(_scope, "on", None)


@contextmanager
def flushing(on: bool | None = True) -> Iterator[None]:
    """Within the block, the calling thread flushes subnormal floats to zero (``on``) or keeps them;
    afterwards its setting is what it was. A no-op for ``on=None``, and where ``available()`` is False."""
    reg = _control() if on is not None else None
    if reg is None:
        yield
        return
    before = reg.read()
    wanted = before | reg.bits if on else before & ~reg.bits
    if wanted != before:
        reg.write(wanted)
    outer, _scope.on = requested(), on
    try:
        yield
    finally:
        _scope.on = outer
        if wanted != before:  # only the flush bits: status flags raised inside stay raised
            reg.write((reg.read() & ~reg.bits) | (before & reg.bits))
