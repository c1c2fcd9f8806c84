"""watch.jsonl: the records of ``train.watch`` (``nncli.training.watch``) in the run folder.

One JSON object per line, written and flushed one line at a time like metrics.jsonl, so a kill tears
at most the last line, which readers skip. A resume from the checkpoint of step t drops the records
after t (``trim_metrics``): the resumed run writes them again, with the same values, since a resumed
run continues exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nncli.runs.folder.metrics_log import MetricsLog, read_metrics
from nncli.training.watch import Watcher

WATCH_FILE = "watch.jsonl"


class WatchRecorder(Watcher):
    """A ``Watcher`` appending its records to ``<folder>/watch.jsonl``."""

    def __init__(self, folder: Path | str, every: int):
        self.log = MetricsLog(Path(folder) / WATCH_FILE)
        super().__init__(every, self.log.write)

    def on_end(self, trainer, result) -> None:
        super().on_end(trainer, result)
        self.log.close()


def read_watch(run: Path | str, warn=None) -> list[dict[str, Any]]:
    """The records of ``<run>/watch.jsonl`` in step order; a torn or damaged line is skipped (``warn``
    names a damaged one), a missing file gives none."""
    path = Path(run) / WATCH_FILE
    return read_metrics(path, warn) if warn is not None else read_metrics(path)
