"""A running trial's evaluations (metrics.jsonl's eval rows) reported to Optuna, and the pruner's verdict."""

from __future__ import annotations

import math
from pathlib import Path

from nncli.runs.folder.metrics_log import read_metrics
from nncli.training.metrics import EVAL_FIELDS


class Reporter:
    """Reads a running trial's eval rows and reports them; ``__call__`` → True once it should be pruned."""

    def __init__(self, trial, metric: str, folder: Path, name: str):
        self.trial, self.metric, self.folder, self.name = trial, metric, folder, name
        self.field = EVAL_FIELDS.get(metric, metric)
        self.reported: set[int] = set()
        self.pruned = False

    def __call__(self, final: bool = False) -> bool:
        """Report the evaluations not reported yet; ``final`` (the trial has ended): report, never prune."""
        if self.pruned:
            return True
        hits = sorted(self.folder.glob(f"{self.name}-*"))
        if not hits:
            return False
        for rec in read_metrics(hits[-1]):
            if rec.get("event") != "eval" or not isinstance(rec.get("step"), int):
                continue
            value = rec.get(self.field)
            if (
                rec["step"] in self.reported
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                continue
            self.reported.add(rec["step"])
            self.trial.report(float(value), rec["step"])
            if not final and self.trial.should_prune():
                self.pruned = True
                return True
        return False
