"""Training progress for people: a rich progress bar on a terminal, plain periodic lines otherwise.

Both are trainer callbacks (see ``nncli.training.loop``) writing to stderr, so ``--json`` output on stdout
stays clean. ``make_progress(console, quiet)`` picks one; ``--quiet`` gets none.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import TaskID


def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Rate:
    """Examples per second over this session (resumed runs do not count earlier sessions)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.step0 = None

    def start(self, trainer) -> None:
        self.t0, self.step0 = time.perf_counter(), trainer.state.step

    def __call__(self, trainer) -> tuple[float, float]:
        """(examples/s, seconds left)."""
        dt = time.perf_counter() - self.t0
        done = trainer.state.step - (self.step0 or 0)
        if dt <= 0 or done <= 0:
            return math.nan, math.nan
        steps_per_s = done / dt
        left = (trainer.total_steps - trainer.state.step) / steps_per_s
        return steps_per_s * trainer.batch_size, left


class PlainProgress:
    """One line per evaluation, and a train-loss line at most every ``every`` seconds."""

    def __init__(self, console, every: float = 5.0):
        self.console, self.every = console, every
        self.rate = _Rate()
        self._last = 0.0

    def _line(self, trainer, rec: dict) -> None:
        ex_s, left = self.rate(trainer)
        parts = [
            f"step {rec['step']}/{trainer.total_steps}",
            f"epoch {rec['epoch']}",
            # an eval row's training loss is the mean since the previous evaluation
            f"loss {_fmt(rec.get('train_loss', rec.get('train_loss_since_eval')))}",
        ]
        if "val_loss" in rec:
            parts.append(f"val_loss {_fmt(rec['val_loss'])}")
        if "val_acc" in rec:
            parts.append(f"val_acc {_fmt(rec['val_acc'], '.2%')}")
        chosen = trainer.tcfg.best_metric  # the metric the best checkpoint is chosen by, if another
        if chosen not in ("val_loss", "val_acc") and chosen in rec:
            parts.append(f"{chosen} {_fmt(rec[chosen], metric_spec(chosen))}")
        parts += [f"{_fmt(ex_s, '.0f')} ex/s", f"eta {_duration(left)}"]
        self.console.print("  ".join(parts), markup=False, highlight=False, soft_wrap=True)

    def on_begin(self, trainer) -> None:
        self.rate.start(trainer)
        self._last = time.perf_counter()

    def on_log(self, trainer, rec) -> None:
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self._line(trainer, rec)

    def on_eval(self, trainer, rec, improved) -> None:
        self._last = time.perf_counter()
        self._line(trainer, rec)


class RichProgress:
    """A live bar: epoch, step, loss, validation accuracy (a classifier's; else the validation loss),
    examples/s and ETA; refreshed a few times a second."""

    def __init__(self, console, refresh: float = 0.2):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[rate]} ex/s"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.refresh, self.rate = refresh, _Rate()
        self.task: TaskID | None = None  # the bar, once training begins
        self._next = 0.0
        self._loss = None
        self._val = "–"

    def on_begin(self, trainer) -> None:
        self.rate.start(trainer)
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=trainer.total_steps,
            completed=trainer.state.step,
            epoch=trainer.epoch,
            loss="–",
            val="–",
            rate="–",
        )

    def _update(self, trainer) -> None:
        if self.task is None:
            return
        ex_s, _ = self.rate(trainer)
        self.progress.update(
            self.task,
            completed=trainer.state.step,
            epoch=trainer.epoch,
            loss=_fmt(self._loss),
            val=self._val,
            rate=_fmt(ex_s, ".0f"),
        )

    def on_step(self, trainer) -> None:
        now = time.perf_counter()  # throttled: a rich update costs more than a small model's step
        if now >= self._next:
            self._next = now + self.refresh
            self._update(trainer)

    def on_log(self, trainer, rec) -> None:
        self._loss = rec.get("train_loss")

    def on_eval(self, trainer, rec, improved) -> None:
        self._val = val_text(rec, trainer.tcfg.best_metric)
        self._update(trainer)

    def on_end(self, trainer, result) -> None:
        if self.task is not None:
            self._update(trainer)
        self.close()

    def close(self) -> None:
        """Stop the live display (also after a crash, so the terminal is left clean)."""
        self.progress.stop()


def val_text(rec: dict, chosen: str | None = None) -> str:
    """What the bar shows of an evaluation: the metric the best checkpoint is chosen by (``chosen``)
    when it is another validation metric (val_f1_macro, val_r2), else a classifier's validation
    accuracy, else (regression) its validation loss."""
    from nncli.training.metrics import kind

    if chosen and chosen.startswith("val_") and chosen != "val_loss" and rec.get(chosen) is not None:
        return f"{kind(chosen)} {_fmt(rec[chosen], metric_spec(chosen))}"
    if rec.get("val_acc") is not None:
        return f"acc {_fmt(rec['val_acc'], '.2%')}"
    if rec.get("val_loss") is not None:
        return f"loss {_fmt(rec['val_loss'])}"
    return "–"


def make_progress(console, quiet: bool):
    """The progress callback for ``console`` (stderr): None when quiet, a bar on a terminal, else lines."""
    if quiet:
        return None
    return RichProgress(console) if console.is_terminal else PlainProgress(console)


#: eval-row fields that are not metrics
_NOT_METRICS = ("event", "step", "epoch", "lr", "seconds", "metric")


def metric_spec(name: str) -> str:
    """How a metric is shown: accuracies (``acc``, ``top5``, with any split prefix) as percentages,
    everything else as a plain number."""
    from nncli.training.metrics import kind, top_k

    k = kind(name)
    return ".2%" if k == "acc" or top_k(k) is not None else ".4f"


def scalar_keys(*records: dict) -> list[str]:
    """The metric fields of ``records`` holding numbers (or nulls), in first-seen order; not matrices."""
    keys: dict[str, None] = {}
    for rec in records:
        for k, v in rec.items():
            if k not in _NOT_METRICS and not isinstance(v, (list, dict, str, bool)):
                keys.setdefault(k)
    return list(keys)


def results_table(summary: dict, run_dir) -> Any:
    """A small rich table of a finished run's results: every scalar metric of the last and the best
    evaluation, then of the test split (for the final weights, and the best checkpoint's)."""
    from rich.table import Table

    table = Table(title=f"run {summary.get('status', '')}", title_justify="left")
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_column("best", justify="right")
    final, best = summary.get("final") or {}, summary.get("best") or {}
    for key in scalar_keys(final, best):
        spec = metric_spec(key)
        table.add_row(key, _fmt(final.get(key), spec), _fmt(best.get(key), spec))
    test, test_best = summary.get("test") or {}, summary.get("test_best") or {}
    for key in scalar_keys(test):
        # "best" column: the best checkpoint's weights, when they differ from the final ones
        spec = metric_spec(key)
        table.add_row(
            f"test_{key}", _fmt(test.get(key), spec), _fmt(test_best.get(key), spec) if test_best else ""
        )
    table.add_row("steps", str(summary.get("steps")), f"step {best.get('step', '–')}")
    table.add_row("wall time", _duration(summary.get("wall_time", math.nan)), "")
    return table
