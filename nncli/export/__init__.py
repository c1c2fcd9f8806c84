"""Export a trained run to other frameworks: a plain PyTorch file, or an ONNX model (opset 17).

Both exporters walk the module chain (``Chain.named_modules`` naming, i.e. the keys of
``torch.nn.Sequential.state_dict()``) and ask each layer for its translation (``Module.torch_source``,
``Module.to_onnx``), so an unsupported module is named in the error instead of being silently dropped.

    export_run(run_dir, "onnx", checkpoint="best", out=None) -> Path of the written file

By default an export takes raw inputs, like ``nncli predict``: the run's preprocessing (the training
split's standardisation) is part of the exported model, and the class names travel with it
(``export.preprocessing``). ``network_only=True`` exports the bare network, which takes inputs already
preprocessed. A PyTorch export is two files, ``model.py`` and the weights ``model.safetensors`` beside
it, which the Python file finds relative to itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nncli.core.errors import UserError

FORMATS = ("torch", "onnx")
SUFFIX = {"torch": ".py", "onnx": ".onnx"}
#: the format an output file's suffix asks for
FORMAT_OF_SUFFIX = {v: k for k, v in SUFFIX.items()}


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


def load_run(run_dir: Path | str, checkpoint: str = "best"):
    """The run at ``run_dir`` with the checkpoint's weights (``nncli.runs.loaded_run.LoadedRun``),
    its chain in the run's dtype with its loss.

    The weights go through the checkpoint reader: format marker, checksum and architecture are
    checked before anything is exported.
    """
    from nncli.runs.folder.run_dir import require_run
    from nncli.runs.loaded_run import load_run as load

    checkpoint_path(require_run(run_dir), checkpoint)
    return load(run_dir, checkpoint)


def default_output(run_dir: Path, fmt: str, checkpoint: str) -> Path:
    """``<run>/export/model[-last].py|.onnx``: beside the weights it loads, never over them."""
    stem = "model" if checkpoint == "best" else f"model-{checkpoint}"
    return run_dir / "export" / f"{stem}{SUFFIX[fmt]}"


def weights_beside(path: Path) -> Path:
    """Where a PyTorch export's weights go: ``<stem>.safetensors`` in the Python file's folder."""
    return path.with_name(f"{path.stem}.safetensors")


def choose_format(fmt: str | None, out: Path | str | None) -> str:
    """``fmt`` (case-insensitive), or the one ``out``'s suffix names (.py, .onnx), else torch;
    ExportError for an unknown format or a suffix that names the other one."""
    suffix = Path(out).suffix if out is not None else ""
    implied = FORMAT_OF_SUFFIX.get(suffix.lower())
    if fmt is None:
        return implied or "torch"
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if implied is not None and implied != fmt:
        raise ExportError(
            f"--format {fmt} with --out {out}: a {suffix} file is a {implied} export; "
            f"write to a {SUFFIX[fmt]} file or drop --format"
        )
    return fmt


def _in_export_folder(rel: Path) -> bool:
    return len(rel.parts) >= 2 and rel.parts[0] == "export"


def export_run(
    run_dir: Path | str,
    fmt: str | None = None,
    checkpoint: str = "best",
    out: Path | str | None = None,
    force: bool = False,
    network_only: bool = False,
) -> Path:
    """Write the run's model as ``fmt`` ("torch" or "onnx"; None: from ``out``'s suffix, else torch);
    return the written file's path (for torch, the weights are at ``weights_beside(path)``).

    Never overwrites a file of a run (only ``<run>/export/`` may be written inside a run folder) nor,
    without ``force``, any existing file; never writes through a symbolic link in a run folder.
    """
    from nncli.export.preprocessing import Preprocessing
    from nncli.runs.folder.own_files import check_output

    fmt = choose_format(fmt, out)
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else default_output(run_dir, fmt, checkpoint)
    targets = [out, weights_beside(out)] if fmt == "torch" else [out]
    checked = [
        check_output(t, force=force, allowed=_in_export_folder, allowed_text="in its export/ folder")
        for t in targets
    ]
    if fmt == "torch":
        require_extra("torch", "torch", "export to PyTorch")
    else:
        require_extra("onnx", "onnx", "export to ONNX")
    run = load_run(run_dir, checkpoint)
    prep = Preprocessing.of_run(run)
    if fmt == "torch":
        from safetensors.numpy import save

        from nncli.export.torch_export import torch_source

        source = torch_source(run.chain, checked[1].name, run_dir.name, prep, network_only=network_only)
        meta = {"format": "pt", "run": run_dir.name, "checkpoint": run.checkpoint, "step": str(run.step)}
        state = {k: np.asarray(v, order="C") for k, v in run.chain.state_dict().items()}
        files = [source.encode("utf-8"), save(state, metadata=meta)]
    else:
        from nncli.export.onnx_export import onnx_model

        model = onnx_model(run.chain, run_dir.name, prep, network_only=network_only)
        files = [model.SerializeToString()]
    _write_all(list(zip(checked, files, strict=True)), targets, force)
    return out


def _write_all(files: list[tuple[Path, bytes]], shown: list[Path], force: bool) -> None:
    """Write every file, the first one (the entry point) last; on a failure remove those written."""
    from nncli.runs.atomic import atomic_write_bytes

    written: list[Path] = []
    for (target, data), name in zip(reversed(files), reversed(shown), strict=True):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data, replace=force)
        except (FileExistsError, OSError) as exc:
            for path in written:
                path.unlink(missing_ok=True)
            if isinstance(exc, FileExistsError):
                raise ExportError(f"{name}: already exists; pass --force to replace it") from None
            raise ExportError(f"{name}: cannot write it ({exc.strerror or exc})") from None
        written.append(target)
