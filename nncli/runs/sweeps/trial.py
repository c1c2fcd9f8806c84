"""One trial of a sweep: its record, its name, the ``nncli train`` command that runs it, and its
result read back from the process and its run folder."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.runs.folder.metrics_log import read_metrics
from nncli.runs.folder.safe_read import read_json
from nncli.runs.listing import best_of


@dataclass
class Trial:
    """One combination: its grid values, seed, and the overrides that make it."""

    index: int
    params: dict[str, str]
    seed: int | None
    overrides: list[str]
    name: str = ""
    run_dir: str | None = None
    status: str = "pending"  # completed / diverged / failed / interrupted
    returncode: int | None = None
    error: str | None = None
    best: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None


def short_key(key: str) -> str:
    """The last name of a dotted path: ``model.layers[0].out`` → ``out``."""
    return re.split(r"[.\]]", key.rstrip("]"))[-1].split("[")[0] or key


def slug(key: str, value: str) -> str:
    """A part of a trial's name: ``model.layers[0].out``, ``64`` → ``out64`` (letters, digits, ``_.-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{short_key(key)}{value}").strip("_")


#: each trial's output: its summary as JSON, nothing else printed, and no curves.png (matplotlib costs
#: about a second per trial, often more than a small trial's training; `nncli plot SWEEP_DIR` draws
#: all the trials' curves together)
TRIAL_OUTPUT = ("--quiet", "--json", "--no-curves")


def train_args(config: Path, trial: Trial, sweep_dir: Path) -> list[str]:
    """The ``nncli train`` arguments of one trial (the Python executable is added where it runs)."""
    args = ["train", str(config)]
    for o in trial.overrides:
        args += ["--set", o]
    return args + ["--runs-dir", str(sweep_dir), "--name", trial.name, *TRIAL_OUTPUT]


def logger_args(loggers: Sequence[str]) -> list[str]:
    return [a for name in loggers for a in ("--logger", name)]


def collect(trial: Trial, result: tuple[int, str, str], sweep_dir: Path, metric: str) -> None:
    """Fill ``trial`` from its process result and run folder."""
    if result is None:  # never started: the sweep was stopped first
        return
    code, out, err = result
    trial.returncode = code
    summary = None
    for line in reversed(out.strip().splitlines()):
        try:
            summary = json.loads(line)
            break
        except ValueError:
            continue
    run_dir = summary.get("run_dir") if isinstance(summary, dict) else None
    if run_dir is None:  # crashed before printing: find the folder by its unique name
        hits = sorted(sweep_dir.glob(f"{trial.name}-*"))
        run_dir = str(hits[-1]) if hits else None
    trial.run_dir = run_dir
    trial.summary = summary if isinstance(summary, dict) else None
    trial.status = (summary or {}).get("status") or ("completed" if code == 0 else "failed")
    if code != 0 and trial.status == "completed":
        trial.status = "failed"
    if code != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        trial.error = lines[-1] if lines else f"exit code {code}"
    if run_dir:
        hit = best_of(read_metrics(Path(run_dir)), metric)
        if hit is not None:
            trial.best = {"metric": metric, "value": hit[0], "step": hit[1]}


def adopt(trial: Trial, sweep_dir: Path, metric: str) -> None:
    """Fill an unreported trial (a stopped Ray task) from its run folder, if it ever made one."""
    run = Path(trial.run_dir) if trial.run_dir and Path(trial.run_dir).is_dir() else None
    hits = sorted(sweep_dir.glob(f"{trial.name}-*"))
    run = run or (hits[-1] if hits else None)
    if run is None:
        return
    trial.run_dir = str(run)
    trial.status = read_json(run / "run.json").get("status", "unknown")
    hit = best_of(read_metrics(run), metric)
    if hit is not None:
        trial.best = {"metric": metric, "value": hit[0], "step": hit[1]}
