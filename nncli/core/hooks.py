"""Forward and backward hooks: look at what flows through a module without changing it.

``module.register_forward_hook(fn)`` has ``fn(module, z, u, seconds)`` called after every forward
that a chain (or a Residual) runs through ``module``; ``register_backward_hook(fn)`` has
``fn(module, v, dz, seconds)`` called after every backward (``dz`` is None when the chain asked only
for ∂J/∂θ). Both return a ``HookHandle``: ``handle.remove()``, or use it as a context manager.

Hooks cost nothing while none is registered anywhere: the chains check one process-wide count per
pass and then call ``forward``/``backward`` directly. ``watch`` hooks every module of a tree at
once (tracing, timing and the divergence check use it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nncli.core.module import Module

#: fn(module, input, output, seconds): input z and output u (forward) or v and ∂J/∂z (backward)
Hook = Callable[["Module", Any, Any, float], object]
#: fn(dotted name, module, input, output, seconds), for ``watch``
NamedHook = Callable[[str, "Module", Any, Any, float], object]

_registered = 0  # hooks registered in the process; while 0 the chains take the plain path


def any_registered() -> bool:
    """True while at least one hook is registered on some module."""
    return _registered > 0


class HookHandle:
    """Adds ``fn`` to ``hooks`` under ``key``; removes it once, on ``remove()`` or when a ``with``
    block ends."""

    def __init__(self, hooks: dict[int, Hook], key: int, fn: Hook):
        global _registered
        self._hooks, self._key = hooks, key
        hooks[key] = fn
        _registered += 1

    def remove(self) -> None:
        global _registered
        if self._hooks.pop(self._key, None) is not None:
            _registered -= 1

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def run_hooked(module: Module, hooks: dict[int, Hook], fn: Callable[[Any], Any], x: Any) -> Any:
    """``fn(x)``, timed, then every hook in ``hooks`` with (module, x, result, seconds)."""
    t0 = time.perf_counter()
    y = fn(x)
    seconds = time.perf_counter() - t0
    for hook in list(hooks.values()):
        hook(module, x, y, seconds)
    return y


@contextmanager
def watch(
    root: Module, on_forward: NamedHook | None = None, on_backward: NamedHook | None = None
) -> Iterator[None]:
    """Hook every module under ``root`` (``root.named_modules()``, nested ones too) while the block
    runs: ``on_forward(name, module, z, u, seconds)`` after each forward and ``on_backward(name,
    module, v, dz, seconds)`` after each backward. A container's time includes its body's."""
    with ExitStack() as stack:
        for name, m in root.named_modules():
            if on_forward is not None:
                stack.enter_context(m.register_forward_hook(_named(on_forward, name)))
            if on_backward is not None:
                stack.enter_context(m.register_backward_hook(_named(on_backward, name)))
        yield


def _named(fn: NamedHook, name: str) -> Hook:
    return lambda m, x, y, t: fn(name, m, x, y, t)
