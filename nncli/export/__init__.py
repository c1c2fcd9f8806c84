"""Export a trained run to other frameworks: a plain PyTorch file, or an ONNX model (opset 17).

Both exporters walk the module chain (``Chain.named_modules`` naming, i.e. the keys of
``torch.nn.Sequential.state_dict()``) and ask each layer for its translation (``Module.torch_source``,
``Module.to_onnx``), so an unsupported module is named in the error instead of being silently dropped.

    export_run(run_dir, "torch", checkpoint="best", out=None) -> Path of the written file
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.core.errors import UserError

FORMATS = ("torch", "onnx")
SUFFIX = {"torch": ".py", "onnx": ".onnx"}


class ExportError(UserError):
    """A run that cannot be exported, or an export asked of a missing optional dependency."""


def require_extra(module: str, extra: str, what: str) -> None:
    """Raise ExportError naming the pip extra when ``module`` cannot be imported."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{what} needs the '{module}' package: pip install 'nncli[{extra}]'") from None


def unsupported(module, fmt: str) -> ExportError:
    return ExportError(f"{type(module).__name__} layers cannot be exported to {fmt} yet")


def checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    """``<run>/checkpoints/<checkpoint>.safetensors``, or ExportError listing the ones that exist."""
    if checkpoint not in ("best", "last"):
        raise ExportError(f"--checkpoint must be 'best' or 'last', got {checkpoint!r}")
    path = run_dir / "checkpoints" / f"{checkpoint}.safetensors"
    if not path.is_file():
        have = sorted(
            p.stem
            for p in (run_dir / "checkpoints").glob("*.safetensors")
            if not p.name.endswith(".state.safetensors")
        )
        hint = f"; available: {', '.join(have)}" if have else "; the run saved no checkpoint yet"
        raise ExportError(f"{path}: no {checkpoint} checkpoint{hint}")
    return path


def load_run(run_dir: Path | str, checkpoint: str = "best", dtype=np.float32):
    """(chain in eval mode with the checkpoint's weights, checkpoint path) of the run at ``run_dir``.

    The weights go through the checkpoint reader (``nncli.runs.loaded_run.load_run``): format
    marker, checksum and architecture are checked before anything is exported.
    """
    from nncli.runs.folder import require_run
    from nncli.runs.loaded_run import load_run as load

    checkpoint_path(require_run(run_dir), checkpoint)
    run = load(run_dir, checkpoint, dtype=dtype, with_loss=False)
    return run.chain, run.weights_file


def standardization(run_dir: Path) -> dict | None:
    """The training-set mean/std the run standardised its inputs with (run.json), or None.

    The exported networks take standardised inputs, as nncli's forward does; the exports carry these
    statistics (a ``preprocess`` function in the PyTorch file, metadata in the ONNX model).
    """
    from nncli.runs.folder import read_run

    stats = (read_run(run_dir).get("data") or {}).get("standardization")  # types checked
    if stats is None:
        return None
    # plain floats, whatever JSON spelling the file used: these values are written into the exports
    return {k: np.asarray(stats[k], dtype=np.float64).tolist() for k in ("mean", "std")}


def default_output(run_dir: Path, fmt: str, checkpoint: str) -> Path:
    """``<run>/export/model[-last].py|.onnx``: beside the weights it loads, never over them."""
    stem = "model" if checkpoint == "best" else f"model-{checkpoint}"
    return run_dir / "export" / f"{stem}{SUFFIX[fmt]}"


def _in_export_folder(rel: Path) -> bool:
    return len(rel.parts) >= 2 and rel.parts[0] == "export"


def export_run(
    run_dir: Path | str,
    fmt: str,
    checkpoint: str = "best",
    out: Path | str | None = None,
    force: bool = False,
) -> Path:
    """Write the run's model as ``fmt`` ("torch" or "onnx"); return the written file's path.

    Never overwrites a file of a run (only ``<run>/export/`` may be written inside a run folder) nor,
    without ``force``, any existing file; never writes through a symbolic link in a run folder.
    """
    from nncli.runs.folder import atomic_write_bytes, check_output

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else default_output(run_dir, fmt, checkpoint)
    target = check_output(out, force=force, allowed=_in_export_folder, allowed_text="in its export/ folder")
    if fmt == "torch":
        require_extra("torch", "torch", "export to PyTorch")
    else:
        require_extra("onnx", "onnx", "export to ONNX")
    chain, ckpt = load_run(run_dir, checkpoint)
    stats = standardization(run_dir)
    if fmt == "torch":
        from nncli.export.torch_export import torch_source

        data = torch_source(chain, ckpt, title=run_dir.name, stats=stats).encode("utf-8")
    else:
        from nncli.export.onnx_export import onnx_model

        data = onnx_model(chain, name=run_dir.name, stats=stats).SerializeToString()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data, replace=force)
    except FileExistsError:
        raise ExportError(f"{out}: already exists; pass --force to replace it") from None
    except OSError as exc:
        raise ExportError(f"{out}: cannot write it ({exc.strerror or exc})") from None
    return out
