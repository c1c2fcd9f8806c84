"""A layer's PyTorch equivalent, said once: a ``torch.nn`` class name and its constructor arguments.

From one ``TorchSpec`` nncli derives both the live torch module of the cross-checks
(``Module.to_torch``) and the constructor expression of an exported PyTorch file
(``Module.torch_source``), so the two cannot drift apart. A layer torch has no class for names a
small helper class and gives its source text; that same text is what the exported file defines and
what ``build`` executes, so the cross-check runs the exported code.

    TorchSpec("Linear", (4, 3), {"bias": True})   →  nn.Linear(4, 3, bias=True)
    TorchSpec("Sequential", (TorchSpec("Flatten"), TorchSpec("Unflatten", (1, (2, 3)))))

torch is imported inside ``build`` only: the core never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import numpy as np


class SourceWriter(Protocol):
    """What ``torch_source`` may ask of the exporter (``nncli.export.torch_export.TorchWriter``)."""

    def helper(self, name: str, source: str) -> None:
        """Define the helper class ``name`` (its ``source``) once in the generated file."""

    def sequential(self, modules: list) -> str:
        """``nn.Sequential(...)`` source for nncli ``modules``, one constructor per line."""
        ...


@dataclass(frozen=True)
class TorchSpec:
    """``torch.nn.<cls>(*args, **kwargs)``, or the helper class ``cls`` defined by ``helper_source``.

    Arguments are plain Python values or nested TorchSpecs (a ``Sequential``'s members).
    """

    cls: str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    helper_source: str = ""

    def source(self, writer: SourceWriter | None = None) -> str:
        """The constructor expression, e.g. ``nn.Linear(4, 3, bias=True)``; helpers go to ``writer``."""
        if self.helper_source:
            if writer is not None:
                writer.helper(self.cls, self.helper_source)
            head = self.cls
        else:
            head = f"nn.{self.cls}"
        parts = [_source(a, writer) for a in self.args]
        parts += [f"{k}={_source(v, writer)}" for k, v in self.kwargs.items()]
        return f"{head}({', '.join(parts)})"

    def build(self):
        """The live ``torch.nn.Module`` (fresh parameters, torch's default dtype)."""
        import torch

        cls = (
            helper_class(self.cls, self.helper_source) if self.helper_source else getattr(torch.nn, self.cls)
        )
        args = [_build(a) for a in self.args]
        return cls(*args, **{k: _build(v) for k, v in self.kwargs.items()})


def _plain(v: Any) -> Any:
    """numpy scalars → Python numbers (their repr is ``np.int64(3)``), inside tuples and lists too."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (tuple, list)):
        return type(v)(_plain(x) for x in v)
    return v


def _source(v: Any, writer: SourceWriter | None) -> str:
    return v.source(writer) if isinstance(v, TorchSpec) else repr(_plain(v))


def _build(v: Any) -> Any:
    return v.build() if isinstance(v, TorchSpec) else _plain(v)


@cache
def helper_class(name: str, source: str) -> type:
    """The class ``name`` defined by ``source`` (the text an exported file holds), with ``torch`` and
    ``nn`` in scope as in that file."""
    import torch

    namespace: dict[str, Any] = {"torch": torch, "nn": torch.nn}
    exec(compile(source, f"<nncli torch helper {name}>", "exec"), namespace)
    return namespace[name]


def to_torch_dtype(dtype):
    """torch.float64 for numpy float64, else torch.float32."""
    import torch

    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def load_params(layer, params: dict[str, np.ndarray], dtype):
    """``layer`` converted to ``dtype`` (numpy's) holding copies of ``params`` (state-dict names of
    parameters or buffers)."""
    import torch

    layer = layer.to(to_torch_dtype(dtype))
    buffers = dict(layer.named_buffers())
    with torch.no_grad():
        for k, p in params.items():
            target = buffers[k] if k in buffers else layer.get_parameter(k)
            target.copy_(torch.from_numpy(np.array(p, copy=True)))
    return layer
