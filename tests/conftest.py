"""Shared fixtures. Helpers that tests import by name (the CLI harness, config writers, the checks of
a refused input) live in ``support.py`` beside this file; ``tests/`` is on ``sys.path`` (pyproject's
``pythonpath``), so ``from support import run_nncli`` works from every folder.

Layout: ``unit/`` library-level tests, ``cli/`` tests that run commands (in this process or in a
subprocess), ``e2e/`` long end-to-end runs (kill, resume, sweeps), marked ``slow`` where they are.
A theme tested in several files has a folder of its own (``cli/bad_input/``, ``cli/security/``,
``unit/export/``) whose ``conftest.py`` holds the fixtures its files share; what they import by
name is a module beside ``support.py`` (``bad_inputs.py``, ``security_runs.py``, ``export_cases.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import merge, run_main, run_nncli, write_config

#: a model and run that train in well under a second: spirals, one hidden layer, a few steps
TINY_CONFIG = {
    "seed": 0,
    "dtype": "float64",
    "model": {
        "input_shape": [2],
        "layers": [{"type": "MM", "out": 8}, {"type": "ReLU"}, {"type": "MM", "out": 3}],
    },
    "loss": "cross_entropy",
    "data": {"source": "spirals", "n_samples": 60, "batch_size": 20},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"steps": 4},
}


@pytest.fixture
def tiny_config() -> dict:
    """A fresh copy of :data:`TINY_CONFIG` to edit."""
    return merge(TINY_CONFIG, {})


@pytest.fixture
def tiny_config_file(tmp_path: Path, tiny_config: dict) -> Path:
    """:data:`TINY_CONFIG` written as ``tmp_path/cfg.yaml``."""
    return write_config(tmp_path, tiny_config)


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """``tmp_path/data.npz``: 40 examples of 4 features (``x``) with 3 integer classes (``y``)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.normal(size=(40, 4)), y=rng.integers(0, 3, 40))
    return path


@pytest.fixture
def nncli():
    """The subprocess CLI harness: ``nncli(*args, cwd=..., env=...)`` → Result(code, out, err)."""
    return run_nncli


@pytest.fixture
def nncli_main():
    """The in-process CLI harness: ``nncli_main(*args)`` → Result(code, out, err)."""
    return run_main
