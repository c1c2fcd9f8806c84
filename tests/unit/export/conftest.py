"""Export to PyTorch (generated Python file) and ONNX: the exported model computes nncli's forward.

One theme per file: every architecture's layers and options (``test_export_architectures``), each
registered module at its own examples (``test_export_registry``), a run folder's export taking raw
inputs (``test_export_run_folders``), a table run's columns encoded in the export
(``test_export_tables``), and what is refused (``test_export_errors``). The fixtures here are run
folders as ``nncli train`` leaves them; what the files import by name is in ``tests/export_cases.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from export_cases import CONFIG, TABLE


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as `nncli train` leaves it, with a checkpoint of a freshly built chain."""
    from nncli.runs.checkpoint import save_checkpoint

    run = tmp_path / "tiny-20260101-000000"
    stats = {"mean": [[0.5 * i for i in range(8)]], "std": [[1.0 + i for i in range(8)]]}
    data = {"standardization": stats, "class_names": ["cat", "dog", "eel"]}
    chain, state = _saved_run(run, CONFIG, data, noise=0.3)
    save_checkpoint(
        run / "checkpoints", "last", {k: np.zeros_like(v) for k, v in state.items()}, {}, {"step": 20}
    )
    return run, chain


@pytest.fixture
def table_run(tmp_path):
    """A run folder of a classifier on a table (the format above), with its standardisation."""
    run = tmp_path / "table-20260101-000000"
    cfg = {
        **CONFIG,
        "model": {
            "input_shape": [7],
            "layers": [{"type": "MM", "out": 5}, {"type": "Tanh"}, {"type": "MM", "out": 2}],
        },
    }
    stats = {"mean": [100.0, 0.3, 0.3, 0.4, 40.0, 0.5, 0.5], "std": [30.0, 0.4, 0.4, 0.5, 12.0, 0.5, 0.5]}
    data = {"standardization": stats, "class_names": ["no", "yes"], "preprocessing": TABLE}
    chain, _ = _saved_run(run, cfg, data, noise=0.5)
    return run, chain, stats


def _saved_run(run, config: dict, data: dict, noise: float):
    """A completed run folder at ``run`` for ``config`` and run.json's ``data``: the chain built from
    the config, its weights moved by N(0, noise²) and saved as checkpoint "best" (step 10).
    Returns (the chain in eval mode holding those weights, the weights)."""
    from nncli.config.build import build_chain
    from nncli.config.load import load_config
    from nncli.runs.checkpoint import save_checkpoint

    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "run.json").write_text(json.dumps({"status": "completed", "data": data}))
    chain = build_chain(load_config(run / "config.yaml", []), dtype=np.float32, with_loss=False)
    rng = np.random.default_rng(3)
    state = {
        k: np.asarray(v + rng.normal(0, noise, v.shape), dtype=np.float32)
        for k, v in chain.state_dict().items()
    }
    save_checkpoint(run / "checkpoints", "best", state, {}, {"step": 10})
    chain.load_state_dict(state)
    return chain.eval(), state
