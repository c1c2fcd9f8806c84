"""A sweep's record, ``sweep.json``: the Sweep and its trials, ranked by the metric; its folder made and
read back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nncli.runs.folder.run_dir import new_folder, stamp
from nncli.runs.folder.safe_read import read_json
from nncli.runs.listing import lookup
from nncli.runs.sweeps.checks import SweepError
from nncli.runs.sweeps.trial import Trial
from nncli.training.metrics import higher_is_better


def rank(trials: list[Trial], metric: str) -> list[Trial]:
    """Best first by the metric; pruned trials after the others, trials without it (failed before any
    evaluation, or requeued by a resumed search) last."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    return sorted(
        trials,
        key=lambda t: (
            t.best is None,
            t.status == "pruned",
            sign * t.best["value"] if t.best else 0.0,
            t.index,
        ),
    )


@dataclass
class Sweep:
    config: str
    grid: list[tuple[str, list[str]]]
    seeds: list[int] | None
    metric: str
    backend: str = "local"
    jobs: int = 1
    folder: str = ""
    started: str = ""
    ended: str = ""
    trials: list[Trial] = field(default_factory=list)
    #: a search (``nncli.runs.sweeps.search``): sampler, pruner, budget, params, storage, study, results
    search: dict[str, Any] | None = None
    #: trackers every trial logs to (``nncli train --logger``)
    loggers: list[str] = field(default_factory=list)

    def combinations(self) -> list[dict[str, Any]]:
        """Per grid combination, the mean and spread of the best metric over its seeds, best first."""
        groups: dict[tuple, list[Trial]] = {}
        for t in self.trials:
            groups.setdefault(tuple(t.params.items()), []).append(t)
        out = []
        for key, ts in groups.items():
            vals = [t.best["value"] for t in ts if t.best]
            mean = sum(vals) / len(vals) if vals else None
            std = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5 if vals else None
            out.append(
                {
                    "params": dict(key),
                    "mean": mean,
                    "std": std,
                    "n": len(vals),
                    "trials": len(ts),
                    "indices": [t.index for t in ts],
                }
            )
        sign = -1.0 if higher_is_better(self.metric) else 1.0
        return sorted(out, key=lambda c: (c["mean"] is None, sign * (c["mean"] or 0.0)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        """The Sweep a ``sweep.json`` describes (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        trial_names = {f.name for f in fields(Trial)}
        kw = {k: v for k, v in data.items() if k in names}
        kw["grid"] = [(k, list(v)) for k, v in (data.get("grid") or {}).items()]
        kw["trials"] = [
            Trial(**{k: v for k, v in t.items() if k in trial_names}) for t in data.get("trials", [])
        ]
        return cls(**kw)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["grid"] = {k: v for k, v in self.grid}
        d["ranking"] = [t.index for t in rank(self.trials, self.metric)]
        if self.seeds:
            d["combinations"] = self.combinations()
        for t in d["trials"]:
            t["test_acc"] = lookup(t["summary"] or {}, "test_acc")
        return d


def make_sweep_dir(runs_dir: Path, name: str) -> Path:
    """A new ``runs_dir/sweep-<name>-<stamp>[-n]`` folder (never an existing one)."""
    return new_folder(runs_dir, f"sweep-{name}-{stamp()}", what="sweep")


def load_sweep(sweep_dir: Path | str) -> Sweep:
    folder = Path(sweep_dir)
    data = read_json(folder / "sweep.json")
    if not data:
        raise SweepError(f"{folder}: not a sweep folder (no readable sweep.json)")
    sweep = Sweep.from_json(data)
    sweep.folder = str(folder.resolve())
    return sweep
