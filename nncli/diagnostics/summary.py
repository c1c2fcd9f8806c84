"""What `nncli inspect` shows: per module the shapes, parameter counts with the notes' formulas,
multiply-adds and the activations kept for backward; then the totals.

Counting conventions (per example unless said otherwise):

- parameters are each module's own ``params`` (a Residual owns none; its body's rows count theirs), so
  the total equals ``Chain.param_count`` and the equivalent ``torch.nn.Sequential``'s;
- ``weight`` is every parameter tensor but the biases (the class's ``bias_keys``; LN's γ and β count
  as weight and bias);
- the type is the class's ``label()``; the formula, MACs and saved floats are its ``describe()``
  facts; a container's (Residual's) include its body's, so the totals sum the top-level rows only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from nncli.core.errors import ConfigError


@dataclass
class Row:
    """One module of the chain. ``name`` is PyTorch's (``3``, ``3.body.0``); ``depth`` its nesting."""

    name: str
    depth: int
    type: str
    line: int | None
    input_shape: list[int]
    output_shape: list[int]
    weight: int
    bias: int
    formula: str
    macs_forward: int
    macs_backward: int
    saved: int
    hparams: dict = field(default_factory=dict)


@dataclass
class Summary:
    rows: list[Row]
    input_shape: list[int]
    output_shape: list[int]
    loss: str | None
    dtype: str
    batch: int
    params: int
    param_bytes: int
    macs_forward: int
    macs_backward: int
    saved: int  # floats kept for backward, per example
    saved_bytes: int  # … in bytes, per example
    saved_bytes_batch: int  # … in bytes, for one batch of ``batch`` examples
    source: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _place_line(loaded, path: str) -> int | None:
    if loaded is None:
        return None
    place = None
    try:
        place = loaded.place(path)
    except Exception:  # positions are a convenience: a missing one leaves the column empty
        place = getattr(loaded, "positions", {}).get(path)
    return getattr(place, "line", None)


def _yaml_path(loaded, name: str) -> str:
    """``3.body.0`` → where the config declared it: ``model.layers[3].layers[0]`` (a Residual's YAML
    key) or ``model.layers[3].body[0]`` (its attribute name), whichever has a position. One path,
    chosen level by level, so nested blocks cost linear time, not 2^depth."""
    positions = getattr(loaded, "positions", None) or {}
    parts = name.split(".")
    path = f"model.layers[{parts[0]}]"
    for key, idx in zip(parts[1::2], parts[2::2]):
        options = [f"{path}.{k}[{idx}]" for k in dict.fromkeys(("layers", key))]
        path = next((p for p in options if p in positions), options[0])
    return path


def line_for(loaded, name: str) -> int | None:
    # a nested module without its own position falls back to its parent's line
    parts = name.split(".")
    while parts:
        line = _place_line(loaded, _yaml_path(loaded, ".".join(parts)))
        if line is not None:
            return line
        parts = parts[:-2]
    return None


def build_from_config(path: str, overrides=(), *, dtype=None, seed=None, with_loss: bool = True):
    """(LoadedConfig, built Chain) for a YAML config: the same loading and errors as ``train``."""
    from nncli.config.build import build_chain
    from nncli.config.load import load_config

    loaded = load_config(path, list(overrides))
    return loaded, build_chain(loaded, dtype=dtype, seed=seed, with_loss=with_loss)


def summarize(chain, *, batch: int, loaded=None, dtype=None, source: str | None = None) -> Summary:
    """Rows and totals for a built ``chain``; ``loaded`` (a LoadedConfig) supplies YAML lines."""
    dtype = np.dtype(dtype or chain.dtype)
    rows = []
    for name, m in chain.named_modules():
        if m.input_shape is None:
            raise ConfigError(f"module {name} ({type(m).__name__}) is not built")
        d = m.describe()
        bias = sum(p.size for k, p in m.params.items() if k in m.bias_keys)
        rows.append(
            Row(
                name=name,
                depth=name.count(".") // 2,
                type=m.label(),
                line=line_for(loaded, name),
                input_shape=list(m.input_shape),
                output_shape=list(m.output_shape(m.input_shape)),
                weight=int(sum(p.size for p in m.params.values()) - bias),
                bias=int(bias),
                formula=str(d.get("formula", "")),
                macs_forward=int(d.get("macs_forward", 0)),
                macs_backward=int(d.get("macs_backward", 0)),
                saved=int(d.get("saved", 0)),
                hparams=_jsonable(m.hparams()),
            )
        )
    params = sum(r.weight + r.bias for r in rows)
    top = [r for r in rows if r.depth == 0]
    saved = sum(r.saved for r in top)
    loss = chain.loss
    return Summary(
        rows=rows,
        input_shape=list(chain.input_shape),
        output_shape=list(chain.output_shape()),
        loss=loss.label() if loss is not None else None,
        dtype=dtype.name,
        batch=int(batch),
        params=params,
        param_bytes=params * dtype.itemsize,
        macs_forward=sum(r.macs_forward for r in top),
        macs_backward=sum(r.macs_backward for r in top),
        saved=saved,
        saved_bytes=saved * dtype.itemsize,
        saved_bytes_batch=saved * dtype.itemsize * batch,
        source=source,
    )


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        out[k] = (
            list(v)
            if isinstance(v, tuple)
            else v
            if isinstance(v, (int, float, str, bool, list, type(None)))
            else str(v)
        )
    return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def human_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{int(n)}"
