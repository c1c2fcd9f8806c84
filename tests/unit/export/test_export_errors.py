"""What an export refuses: a layer without a translation (named), a missing extra (what to
install), a missing checkpoint, conflicting options, files that exist, a folder that is not a run."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nncli.core.chain import Chain
from nncli.core.errors import UserError
from nncli.core.module import Module
from nncli.export import ExportError, checkpoint_path, export_run


class Opaque(Module):
    """A module with no export translation (the identity)."""

    def forward(self, z):
        return z

    def backward(self, v):
        return v


def test_unsupported_module_is_named():
    from nncli.export.onnx_export import onnx_model
    from nncli.export.torch_export import torch_source

    chain = Chain([Opaque()]).build((3,), np.random.default_rng(0))
    with pytest.raises(ExportError, match="Opaque layers cannot be exported to PyTorch"):
        torch_source(chain, "w.safetensors")
    pytest.importorskip("onnx", reason="export to ONNX needs onnx (nncli[onnx])")
    with pytest.raises(ExportError, match="Opaque layers cannot be exported to ONNX"):
        onnx_model(chain)


@pytest.mark.parametrize("fmt, extra", [("torch", "torch"), ("onnx", "onnx")])
def test_missing_extra_says_what_to_install(fmt, extra, tmp_path, monkeypatch, capsys):
    from nncli.cli import main

    monkeypatch.setitem(sys.modules, extra, None)  # makes `import torch` / `import onnx` fail
    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path), "--format", fmt])
    assert exc.value.code == 2
    assert f"pip install 'nncli[{extra}]'" in capsys.readouterr().err


def test_missing_checkpoint_lists_the_available_ones(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.safetensors").write_bytes(b"")
    (tmp_path / "checkpoints" / "last.state.safetensors").write_bytes(b"")
    with pytest.raises(ExportError, match="no best checkpoint; available: last$"):
        checkpoint_path(tmp_path, "best")
    with pytest.raises(ExportError, match="'best' or 'last'"):
        checkpoint_path(tmp_path, "first")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "tflite"], "unknown export format 'tflite'"),
        (["--format", "torch", "-o", "m.onnx"], "a .onnx file is a onnx export"),
        (["--format", "onnx", "-o", "m.py"], "a .py file is a torch export"),
        (["--checkpoint", "first"], "'best' or 'last'"),
    ],
)
def test_conflicting_export_options_exit_2(run_dir, tmp_path, monkeypatch, capsys, args, message):
    from nncli.cli import main

    run, _ = run_dir
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (run / "export").exists() and not list(tmp_path.glob("m.*"))


def test_unknown_export_option_exits_2(run_dir, capsys):
    from nncli.cli import main

    run, _ = run_dir
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), "--bare-network"])
    assert exc.value.code == 2


def test_torch_export_never_half_written(run_dir, tmp_path):
    """The weights exist already: nothing is written, the Python file included."""
    pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    run, _ = run_dir
    (tmp_path / "m.safetensors").write_bytes(b"mine")
    with pytest.raises(UserError, match="m.safetensors: already exists; pass --force"):
        export_run(run, "torch", out=tmp_path / "m.py")
    assert not (tmp_path / "m.py").exists() and (tmp_path / "m.safetensors").read_bytes() == b"mine"


def test_export_of_a_non_run_is_a_user_error(tmp_path):
    pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    with pytest.raises(UserError, match="not a run folder"):
        export_run(tmp_path, "torch")
    with pytest.raises(ExportError, match="unknown export format"):
        export_run(tmp_path, "tflite")
