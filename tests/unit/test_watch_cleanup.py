"""train.watch hooks every module during a watched step; a step that raises must not leave them behind."""

from __future__ import annotations

import pytest
from support import write_config

from nncli.core import hooks
from nncli.runs.session.prepare import prepare
from nncli.runs.train_run import run_session


def test_a_step_that_raises_leaves_no_hooks(tmp_path):
    cfg = write_config(
        tmp_path,
        {
            "name": "w",
            "model": {
                "input_shape": [2],
                "layers": [{"type": "MM", "out": 8}, {"type": "ReLU"}, {"type": "MM", "out": 3}],
            },
            "data": {"source": "spirals", "n_samples": 60, "batch_size": 16},
            "train": {"steps": 4, "watch": {"every": 1}},
        },
    )
    s = prepare(cfg, [])
    chain = s.trainer.chain
    seen = []

    def failing_step(x, y):
        seen.append(hooks.any_registered())  # the watcher hooked the modules for this step
        raise RuntimeError("a bug in the middle of a step")

    chain.loss_and_grad = failing_step
    with pytest.raises(RuntimeError, match="a bug in the middle"):
        run_session(s, tmp_path / "runs", raise_errors=True)
    assert seen == [True]
    assert not hooks.any_registered()
