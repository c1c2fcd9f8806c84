"""Your own module from the command line: ``--code FILE`` imports it before the config is read, and
gradcheck, inspect --trace and train use it like a built-in; a broken file is a located error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import merge, write_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_module.py"


@pytest.fixture
def cube_config(tmp_path, tiny_config):
    layers = [{"type": "MM", "out": 6}, {"type": "ScaledCube", "init": 0.05}, {"type": "MM", "out": 3}]
    return write_config(tmp_path, merge(tiny_config, {"model": {"layers": layers}}))


def test_gradcheck_inspect_trace_and_train_through_the_cli(nncli, cube_config, tmp_path):
    run = nncli("gradcheck", "--code", EXAMPLE, "-m", "ScaledCube", "--json")
    assert run.code == 0, run
    result = json.loads(run.out)
    assert result["passed"] and {r["tensor"] for r in result["tensors"]} == {"input", "weight"}

    run = nncli("--code", EXAMPLE, "inspect", cube_config, "--trace")  # before the command too
    assert run.code == 0, run
    assert "ScaledCube" in run.out and "u = z + a ⊙ z³" in run.out

    run = nncli(
        "train", cube_config, f"--code={EXAMPLE}", "--runs-dir", tmp_path / "runs", "--json", "--no-curves"
    )
    assert run.code == 0, run
    assert json.loads(run.out)["status"] == "completed"


def test_without_code_the_name_is_unknown(nncli, cube_config):
    run = nncli("inspect", cube_config)
    assert run.code == 2 and "ScaledCube" in run.err


@pytest.mark.parametrize(
    "source, line, what",
    [
        ("import numpy\n\ndef f(:\n    pass\n", 3, "SyntaxError"),
        (
            "import numpy\nx = 1\nraise RuntimeError('broken on purpose')\n",
            3,
            "RuntimeError: broken on purpose",
        ),
        (
            "from nncli.core.registry import modules\n\n@modules.register('MM')\nclass Mine:\n    pass\n",
            3,
            "registered twice",
        ),
    ],
    ids=["syntax", "exception", "clash"],
)
def test_an_error_in_the_users_file_is_located(nncli_main, tmp_path, tiny_config_file, source, line, what):
    bad = tmp_path / "bad_layers.py"
    bad.write_text(source)
    run = nncli_main("inspect", tiny_config_file, "--code", bad)
    assert run.code == 2, run
    assert f"{bad}:{line}" in run.err and what in run.err
    assert "Traceback" not in run.err and len(run.err.strip().splitlines()) == 1


def test_a_missing_file_is_refused(nncli_main, tiny_config_file, tmp_path):
    run = nncli_main("inspect", tiny_config_file, "--code", tmp_path / "nope.py")
    assert run.code == 2 and "no such Python file" in run.err


def test_a_registered_class_must_be_a_module(nncli_main, tiny_config_file, tmp_path):
    from nncli.core.registry import modules

    bad = tmp_path / "notmodule.py"
    bad.write_text(
        "from nncli.core.registry import modules\n\n@modules.register('NotAModule')\nclass X:\n    pass\n"
    )
    try:
        run = nncli_main("inspect", tiny_config_file, "--code", bad)
    finally:
        cls = modules.canonical_classes().get("NotAModule")
        if cls is not None:
            modules.unregister(cls)
    assert run.code == 2 and "not a subclass of nncli.core.module.Module" in run.err
