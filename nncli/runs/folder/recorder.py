"""The training callback that records a run: metrics.jsonl lines and the last / best checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nncli.runs.folder.metrics_log import MetricsLog


class RunRecorder:
    """Trainer callback that writes metrics.jsonl lines and the ``last`` / ``best`` checkpoints.

    ``stamp`` (e.g. the resolved config's hash) is stored in every checkpoint's state, so a resume
    can check that the run's config.yaml is still the one the checkpoint was made with.
    """

    def __init__(self, folder: Path | str, stamp: dict[str, Any]):
        self.folder = Path(folder)
        self.ckpt_dir = self.folder / "checkpoints"
        self.stamp = dict(stamp)
        self.metrics = MetricsLog(self.folder / "metrics.jsonl")

    def on_log(self, trainer, record) -> None:
        self.metrics.write(record)

    def on_eval(self, trainer, record, improved) -> None:
        self.metrics.write(record)

    def on_checkpoint(self, trainer, best: bool) -> None:
        from nncli.runs.checkpoint import save_checkpoint

        weights, arrays, state = trainer.checkpoint_state()
        state.update(self.stamp)
        # best first: if the process dies between the two saves, the resume starts before this
        # step and saves the same best again, so best and last never disagree with a straight run
        if best:
            save_checkpoint(self.ckpt_dir, "best", weights, arrays, state)
        save_checkpoint(self.ckpt_dir, "last", weights, arrays, state)

    def on_end(self, trainer, result) -> None:
        self.metrics.close()
