"""Generate a self-contained Python file that builds the run's model as a ``torch.nn.Sequential``.

The file needs only torch and safetensors: one constructor expression per module (``nn.Linear``,
``nn.Conv1d``, …), two small classes where torch has no equivalent (the notes' scalar-affine LN and
Residual), and ``load_model()`` which loads the run's checkpoint with ``strict=True`` — the parameter
names match because nncli names its parameters like ``nn.Sequential.state_dict()``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nncli.export import unsupported

_CLASSES = {
    "ScalarLayerNorm": '''
class ScalarLayerNorm(nn.Module):
    """The notes' LN: beta + gamma * (z - mean) / sqrt(var + eps) over all features of an example,
    with scalar gamma (``weight``) and beta (``bias``)."""

    def __init__(self, normalized_shape, eps):
        super().__init__()
        self.normalized_shape, self.eps = tuple(normalized_shape), eps
        self.weight = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, eps=self.eps) * self.weight + self.bias
''',
    "Residual": '''
class Residual(nn.Module):
    """u = z + body(z)."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)
''',
}


def _mm(m, used, indent):
    return f"nn.Linear({m.input_shape[0]}, {m.cfg.out}, bias={m.cfg.bias})"


def _sigma(m, used, indent):
    c = m.cfg
    return {
        "relu": "nn.ReLU()",
        "sigmoid": "nn.Sigmoid()",
        "tanh": "nn.Tanh()",
        "identity": "nn.Identity()",
        "leaky_relu": f"nn.LeakyReLU({c.negative_slope!r})",
        "gelu": f"nn.GELU(approximate={c.approximate!r})",
        "softplus": f"nn.Softplus(beta={c.beta!r}, threshold={c.threshold!r})",
    }[c.fn]


def _ln(m, used, indent):
    shape = list(m.input_shape)
    if m.cfg.affine == "scalar":
        used.add("ScalarLayerNorm")
        return f"ScalarLayerNorm({shape}, eps={m.cfg.eps!r})"
    return f"nn.LayerNorm({shape}, eps={m.cfg.eps!r}, elementwise_affine={m.cfg.affine == 'per_feature'})"


def _conv(m, used, indent):
    g = m.geom
    # nncli pads asymmetrically only for padding "same" at stride 1, which torch spells the same way
    pad = repr("same") if g.pad_lo != g.pad_hi else _tup(g.pad_lo)
    return (
        f"nn.Conv{g.nd}d({m.input_shape[0]}, {m.cfg.out}, kernel_size={_tup(g.kernel)}, "
        f"stride={_tup(g.stride)}, padding={pad}, dilation={_tup(g.dilation)}, bias={m.cfg.bias})"
    )


def _pool(m, used, indent):
    g = m.geom
    kind = "Max" if "Max" in type(m).__name__ else "Avg"  # AvgPool: zeros counted, torch's default
    return (
        f"nn.{kind}Pool{g.nd}d(kernel_size={_tup(g.kernel)}, stride={_tup(g.stride)}, "
        f"padding={_tup(g.pad_lo)})"
    )


def _flatten(m, used, indent):
    return "nn.Flatten()"


def _reshape(m, used, indent):
    target = tuple(m.output_shape(m.input_shape))
    if len(m.input_shape) == 1:
        return f"nn.Unflatten(1, {target})"
    return f"nn.Sequential(nn.Flatten(), nn.Unflatten(1, {target}))"  # no parameters: keys unchanged


def _dropout(m, used, indent):
    return f"nn.Dropout({m.cfg.p!r})"


def _residual(m, used, indent):
    used.add("Residual")
    return f"Residual({sequential(m.body.modules, used, indent=indent + 4)})"


def _tup(t) -> str:
    return repr(tuple(int(x) for x in t))


#: nncli module class name → function(module, used class names, indent) returning the torch constructor
EMITTERS: dict[str, Callable] = {
    "MM": _mm,
    "Sigma": _sigma,
    "LN": _ln,
    "Conv1D": _conv,
    "Conv2D": _conv,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": _dropout,
    "Residual": _residual,
    "MaxPool1D": _pool,
    "MaxPool2D": _pool,
    "AvgPool1D": _pool,
    "AvgPool2D": _pool,
}


def sequential(modules, used: set, indent: int = 4) -> str:
    """``nn.Sequential(...)`` source for ``modules``, one constructor per line with its index."""
    pad = " " * indent
    lines = []
    for i, m in enumerate(modules):
        emit = EMITTERS.get(type(m).__name__)
        if emit is None:
            raise unsupported(m, "PyTorch")
        lines.append(f"{pad}{emit(m, used, indent)},  # {i}")
    return "nn.Sequential(\n" + "\n".join(lines) + "\n" + " " * (indent - 4) + ")"


def torch_source(chain, weights: Path | str, title: str = "model", stats: dict | None = None) -> str:
    """The Python source of the exported module (see the module docstring).

    ``stats`` ({"mean", "std"} lists shaped like one example): the run's input standardisation,
    written out as ``preprocess(x)``; without it ``preprocess`` returns x unchanged.
    """
    used: set[str] = set()
    body = sequential(chain.modules, used, indent=8)
    classes = "".join(_CLASSES[name] + "\n" for name in _CLASSES if name in used)
    shape = tuple(int(s) for s in chain.input_shape)
    functional = "import torch.nn.functional as F\n" if "ScalarLayerNorm" in used else ""
    return f'''"""{title}: an nncli model as a plain PyTorch ``nn.Sequential`` (written by ``nncli export``).

    model = load_model()            # the trained weights, in eval mode
    y = model(preprocess(x))        # x: raw inputs (N, *INPUT_SHAPE), standardised as in training
"""
import os

import torch
{functional}from torch import nn
from safetensors.torch import load_file

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
        mean = torch.tensor(STANDARDIZATION["mean"], dtype=torch.float64)
        std = torch.tensor(STANDARDIZATION["std"], dtype=torch.float64)
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
    return "{" + f'"mean": {stats["mean"]!r},\n    "std": {stats["std"]!r}' + "}"


def write_torch_module(
    chain, weights: Path | str, out: Path | str, title: str = "model", stats: dict | None = None
) -> Path:
    out = Path(out)
    out.write_text(torch_source(chain, weights, title, stats))
    return out
