"""What the security tests (``tests/cli/security/``) share: the config of their tiny runs, a callback
that stops one as Ctrl-C does, and copies of the finished and interrupted runs to damage.

    CONFIG                     the runs' config (spirals, 8 steps, a test split)
    StopAt(step)               a trainer callback: stop after ``step`` with a checkpoint
    copy_run(work, name, dest) a copy of the ``work`` fixture's run ``name`` (done, stopped) under dest
"""

from __future__ import annotations

import shutil
from pathlib import Path

CONFIG = {
    "name": "sec",
    "seed": 0,
    "model": {
        "input_shape": [2],
        "layers": [{"type": "MM", "out": 8}, {"type": "Tanh"}, {"type": "MM", "out": 3}],
    },
    "loss": "cross_entropy",
    "data": {"source": "spirals", "n_samples": 60, "classes": 3, "batch_size": 20, "test_split": 0.2},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "train": {"steps": 8, "log_every": 2, "eval_every": 4},
}


class StopAt:
    """Asks the trainer to stop after ``step``, as the first Ctrl-C does (a checkpoint of that step)."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, trainer) -> None:
        if trainer.state.step == self.step:
            trainer.request_stop("SIGINT")


def copy_run(work: Path, name: str, dest: Path, as_name: str | None = None) -> Path:
    """A copy of the fixture run ``name`` under ``dest`` (a runs folder of its own)."""
    run = dest / (as_name or f"{name}-20260101-000000")
    shutil.copytree(work / name, run, symlinks=True)
    return run
