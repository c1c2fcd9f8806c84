"""Generate a self-contained Python file that builds the run's model as a ``torch.nn.Sequential``.

The file needs only torch and safetensors: one constructor expression per module (``nn.Linear``,
``nn.Conv1d``, …), small helper classes where torch has no equivalent (the notes' scalar-affine LN,
Residual), and ``load_model()`` which loads the run's checkpoint with ``strict=True`` — the parameter
names match because nncli names its parameters like ``nn.Sequential.state_dict()``.

Each layer writes its own expression (``Module.torch_source``, by default from its ``torch_spec``), so
this file knows no layer type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.export import unsupported


class TorchWriter:
    """What a layer's ``torch_source`` writes into: helper classes (defined once, in first-use order)
    and nested ``nn.Sequential``s at the right indentation."""

    def __init__(self, indent: int = 4):
        self.helpers: dict[str, str] = {}
        self._indent = indent

    def helper(self, name: str, source: str) -> None:
        self.helpers.setdefault(name, source)

    def sequential(self, modules) -> str:
        """``nn.Sequential(...)`` source for ``modules``, one constructor per line with its index."""
        self._indent += 4
        pad = " " * self._indent
        lines = []
        for i, m in enumerate(modules):
            src = m.torch_source(self)
            if src is None:
                raise unsupported(m, "PyTorch")
            lines.append(f"{pad}{src},  # {i}")
        self._indent -= 4
        return "nn.Sequential(\n" + "\n".join(lines) + "\n" + " " * self._indent + ")"


def torch_source(chain, weights: Path | str, title: str = "model", stats: dict | None = None) -> str:
    """The Python source of the exported module (see the module docstring).

    ``stats`` ({"mean", "std"} lists shaped like one example): the run's input standardisation,
    written out as ``preprocess(x)``; without it ``preprocess`` returns x unchanged.
    """
    writer = TorchWriter()
    body = writer.sequential(chain.modules)
    classes = "".join(source + "\n" for source in writer.helpers.values())
    shape = tuple(int(s) for s in chain.input_shape)
    # every name and value from the run (its folder name, paths, statistics) enters the file only
    # through repr(): a crafted folder name stays a string literal, it never becomes code
    return f'''"""An nncli model as a plain PyTorch ``nn.Sequential`` (written by ``nncli export``); see RUN.

    model = load_model()            # the trained weights, in eval mode
    y = model(preprocess(x))        # x: raw inputs (N, *INPUT_SHAPE), standardised as in training
"""
import os

import torch
from torch import nn
from safetensors.torch import load_file

#: the run folder this model was exported from
RUN = {str(title)!r}
#: per-example input shape (channels first), as in the run's config
INPUT_SHAPE = {shape!r}
#: the run's checkpoint; pass another path to load_model() if it moved
WEIGHTS = {str(Path(weights).resolve())!r}
#: training-set statistics the run standardised inputs with (None: it did not)
STANDARDIZATION = {_stats(stats)}

{classes}
def build_model():
    """The architecture with PyTorch's default initialisation."""
    return {body}


def preprocess(x, dtype=torch.float32):
    """Raw inputs (N, *INPUT_SHAPE) → what the network was trained on: (x - mean) / std."""
    x = torch.as_tensor(x, dtype=torch.float64)
    if STANDARDIZATION is not None:
        shape = STANDARDIZATION["shape"]
        mean = torch.tensor(STANDARDIZATION["mean"], dtype=torch.float64).reshape(shape)
        std = torch.tensor(STANDARDIZATION["std"], dtype=torch.float64).reshape(shape)
        x = (x.reshape(len(x), *mean.shape) - mean) / std
    return x.to(dtype)


def load_model(weights=WEIGHTS, dtype=torch.float32):
    """The model with the checkpoint's weights (every name must match: strict=True), in eval mode."""
    model = build_model()
    state = {{k: v.to(dtype) for k, v in load_file(os.fspath(weights)).items()}}
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval()


if __name__ == "__main__":
    model = load_model()
    with torch.no_grad():
        out = model(torch.zeros(2, *INPUT_SHAPE))
    print(model)
    print("output shape:", tuple(out.shape))
'''


def _stats(stats: dict | None) -> str:
    if stats is None:
        return "None"
    mean, std = (repr([float(v) for v in np.ravel(stats[k])]) for k in ("mean", "std"))
    shape = tuple(int(n) for n in np.shape(stats["mean"]))
    return "{" + f'"mean": {mean},\n    "std": {std},\n    "shape": {shape!r}' + "}"


def write_torch_module(
    chain, weights: Path | str, out: Path | str, title: str = "model", stats: dict | None = None
) -> Path:
    out = Path(out)
    out.write_text(torch_source(chain, weights, title, stats))
    return out
