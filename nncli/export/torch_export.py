"""Generate a self-contained Python file that builds the run's model as a ``torch.nn.Sequential``.

The file needs only torch and safetensors: one constructor expression per module (``nn.Linear``,
``nn.Conv1d``, …), small helper classes where torch has no equivalent (the notes' scalar-affine LN,
Residual), and ``load_model()`` which loads the weights with ``strict=True`` — the parameter names
match because nncli names its parameters like ``nn.Sequential.state_dict()``. The weights are a
``.safetensors`` file beside the Python file, found relative to it (``__file__``), so the folder
holding both can be moved or handed over.

By default ``load_model()`` returns ``nn.Sequential(preprocess=Preprocess(), network=…)``: raw inputs
in, the run's training standardisation applied in the module, as ``nncli predict`` does. With
``network_only`` it returns the bare network (inputs already standardised) and the file keeps a
``preprocess(x)`` function with the statistics.

Each layer writes its own expression (``Module.torch_source``, by default from its ``torch_spec``), so
this file knows no layer type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.export import ExportError, unsupported
from nncli.export.preprocessing import Preprocessing


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


def torch_source(
    chain,
    weights: Path | str,
    title: str = "model",
    prep: Preprocessing | None = None,
    *,
    network_only: bool = False,
) -> str:
    """The Python source of the exported module (see the module docstring).

    ``weights``: the safetensors file the module loads, written into the file relative to the file's
    own folder when it is a bare name or a relative path (``model.safetensors``), as is otherwise.
    ``prep`` (``Preprocessing.of_run``): the run's standardisation and class names.
    """
    if prep is None:
        prep = Preprocessing(tuple(int(s) for s in chain.input_shape))
    writer = TorchWriter()
    body = writer.sequential(chain.modules)
    classes = "".join(source + "\n" for source in writer.helpers.values())
    shape = tuple(int(s) for s in chain.input_shape)
    names = None if prep.class_names is None else list(prep.class_names)
    # every name and value from the run (its folder name, paths, statistics) enters the file only
    # through repr(): a crafted folder name stays a string literal, it never becomes code
    head = f'''"""An nncli model as plain PyTorch (written by ``nncli export``); see RUN.

{_usage(network_only, prep.table is not None)}"""
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from safetensors.torch import load_file

#: the run folder this model was exported from
RUN = {str(title)!r}
#: per-example input shape of the network (channels first), as in the run's config
INPUT_SHAPE = {shape!r}
#: the weights, relative to this file's folder (or absolute)
WEIGHTS = {Path(weights).as_posix()!r}
#: training-set statistics the run standardised inputs with (None: it did not)
STANDARDIZATION = {_stats(prep)}
#: the name of each class id (None: the run has no class names, or is a regression)
CLASS_NAMES = {names!r}

{classes}
def build_network():
    """The architecture with PyTorch's default initialisation."""
    return {body}

'''
    table = ""
    if prep.table is not None:
        table = f"\n#: how the run's table columns become the network's inputs (nncli.tabular/1)\nTABLE = {_literal(prep.table)}\n{_ENCODE}"
    return head + table + (_BARE_TAIL if network_only else _PREPROCESS_TAIL) + _LOAD_TAIL


def _literal(value) -> str:
    """``value`` (JSON: dicts, lists, strings, finite numbers, None) as a Python literal."""
    import json

    try:
        return repr(json.loads(json.dumps(value, allow_nan=False)))
    except (TypeError, ValueError) as exc:
        raise ExportError(f"run.json: data.preprocessing is not plain JSON ({exc})") from None


_ENCODE = '''

def encode(table):
    """A table's raw columns → the encoded inputs (N, n_inputs) float64, as nncli encodes them.

    ``table[name]`` gives a column's cells by the training file's column name (by its index when
    the file had no header): a dict of lists or a pandas DataFrame. Missing cells (None, NaN or a
    missing-value text) take the training fill; categories are one-hot encoded."""
    missing = set(TABLE["missing_values"])
    pieces = []
    for entry in TABLE["inputs"]:
        key = entry["column"] if entry["column"] is not None else entry["index"]
        cells = [None if c is None or c != c or str(c).strip() in missing else c for c in table[key]]
        if any(c is None for c in cells) and entry["fill"] is None:
            raise ValueError(f"column {key!r}: a missing value, and the run has no fill for it")
        cells = [entry["fill"] if c is None else c for c in cells]
        if entry["kind"] == "number":
            pieces.append(torch.tensor([float(c) for c in cells], dtype=torch.float64)[:, None])
            continue
        cats = entry["categories"]
        onehot = torch.zeros(len(cells), len(cats), dtype=torch.float64)
        for i, c in enumerate(cells):
            text = str(c).strip()
            if text in cats:
                onehot[i, cats.index(text)] = 1.0
            elif TABLE["unknown_category"] != "ignore":
                raise ValueError(f"column {key!r}: category {text!r} was not in the training split")
        pieces.append(onehot)
    return torch.cat(pieces, dim=1)
'''


def _usage(network_only: bool, table: bool = False) -> str:
    if table:
        return (
            (
                "    model = load_model()            # standardisation + the trained network, in eval mode\n"
                "    y = model(encode(df))           # df[column]: a table's raw columns (a DataFrame, a dict)\n"
            )
            if not network_only
            else (
                "    model = load_model()            # the trained network, in eval mode\n"
                "    y = model(preprocess(encode(df)))  # df[column]: a table's raw columns\n"
            )
        )
    if network_only:
        return (
            "    model = load_model()            # the trained network, in eval mode\n"
            "    y = model(preprocess(x))        # x: raw inputs, standardised as in training\n"
        )
    return (
        "    model = load_model()            # standardisation + the trained network, in eval mode\n"
        "    y = model(x)                    # x: raw inputs (N, *RAW_SHAPE), as nncli predict takes them\n"
        "    model.network                   # the network alone, on standardised inputs\n"
    )


_PREPROCESS_TAIL = '''
#: the per-example shape of the raw inputs
RAW_SHAPE = tuple(STANDARDIZATION["shape"]) if STANDARDIZATION is not None else INPUT_SHAPE


class Preprocess(nn.Module):
    """Raw inputs (N, *RAW_SHAPE) → the network's (N, *INPUT_SHAPE): (x - mean) / std with the
    training statistics, as nncli predict does, in the model's dtype."""

    def __init__(self):
        super().__init__()
        stats = STANDARDIZATION or {"mean": 0.0, "std": 1.0, "shape": ()}
        for key in ("mean", "std"):
            value = torch.tensor(stats[key], dtype=torch.float64).reshape(stats["shape"])
            self.register_buffer(key, value, persistent=False)  # not weights: not in the state dict

    def forward(self, x):
        x = torch.as_tensor(x).to(self.mean.dtype)
        x = (x.reshape(len(x), *RAW_SHAPE) - self.mean) / self.std
        return x.reshape(len(x), *INPUT_SHAPE)


def build_model():
    """Preprocess, then the network; ``model.network`` is the network alone."""
    return nn.Sequential(OrderedDict(preprocess=Preprocess(), network=build_network()))


def _network(model):
    return model.network
'''

_BARE_TAIL = '''
def preprocess(x, dtype=torch.float32):
    """Raw inputs → what the network was trained on: (x - mean) / std, shaped (N, *INPUT_SHAPE)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    if STANDARDIZATION is not None:
        shape = STANDARDIZATION["shape"]
        mean = torch.tensor(STANDARDIZATION["mean"], dtype=torch.float64).reshape(shape)
        std = torch.tensor(STANDARDIZATION["std"], dtype=torch.float64).reshape(shape)
        x = (x.reshape(len(x), *mean.shape) - mean) / std
    return x.reshape(len(x), *INPUT_SHAPE).to(dtype)


#: the per-example shape of the inputs the model takes
RAW_SHAPE = INPUT_SHAPE


def build_model():
    """The network alone: it takes standardised inputs (see preprocess)."""
    return build_network()


def _network(model):
    return model
'''

_LOAD_TAIL = '''

def load_model(weights=None, dtype=torch.float32):
    """The model with the trained weights (every name must match: strict=True), in eval mode.

    ``weights``: another safetensors file; by default WEIGHTS, found beside this file."""
    path = Path(weights) if weights is not None else Path(__file__).resolve().parent / WEIGHTS
    model = build_model()
    state = {k: v.to(dtype) for k, v in load_file(str(path)).items()}
    _network(model).load_state_dict(state, strict=True)
    return model.to(dtype).eval()


if __name__ == "__main__":
    model = load_model()
    with torch.no_grad():
        out = model(torch.zeros(2, *RAW_SHAPE))
    print(model)
    print("output shape:", tuple(out.shape))
'''


def _stats(prep: Preprocessing) -> str:
    stats = prep.stats_json()
    if stats is None:
        return "None"
    mean, std = (repr([float(v) for v in np.ravel(stats[k])]) for k in ("mean", "std"))
    shape = tuple(int(n) for n in prep.raw_shape)
    return "{" + f'"mean": {mean},\n    "std": {std},\n    "shape": {shape!r}' + "}"


def write_torch_module(
    chain,
    weights: Path | str,
    out: Path | str,
    title: str = "model",
    prep: Preprocessing | None = None,
    *,
    network_only: bool = False,
) -> Path:
    out = Path(out)
    out.write_text(torch_source(chain, weights, title, prep, network_only=network_only))
    return out
