"""Trackers: a run's metrics, config and checkpoints mirrored to tools people already use.

    nncli train CONFIG --logger tensorboard --logger mlflow

metrics.jsonl stays the source of truth; a tracker is a Trainer callback that copies each train and eval
row as it is written, and at the end (``finish``) what the run left: the summary and, for MLflow, the
config and checkpoints as artifacts. Each tracker is an optional extra, checked before the run folder
is created:

    tensorboard   event files in <run>/tensorboard/ (``tensorboard --logdir runs`` shows every run):
                  scalars (train/…, eval/…, lr), the resolved config as text    pip install 'nncli[tensorboard]'
    mlflow        an MLflow run in the experiment named after the config: params (the flattened config),
                  metrics, config.yaml, summary.json, checkpoints/; tracking URI from MLFLOW_TRACKING_URI,
                  else SQLite at <runs dir>/mlflow.db with artifacts in <runs dir>/mlartifacts
                                                                                  pip install 'nncli[mlflow]'
"""

from __future__ import annotations

from typing import Any

from nncli.core.errors import UserError, did_you_mean

TRACKERS = ("tensorboard", "mlflow")


class TrackerError(UserError):
    """An unknown tracker, or one whose package is not installed."""


def check_trackers(names: list[str]) -> list[str]:
    """The tracker names, lower-cased, once each; TrackerError for an unknown one or a missing package."""
    out = list(dict.fromkeys(n.strip().lower() for n in names))
    for name in out:
        if name not in TRACKERS:
            raise TrackerError(
                f"--logger {name}: unknown tracker{did_you_mean(name, TRACKERS)}; choose from {', '.join(TRACKERS)}"
            )
        if name == "tensorboard":
            from nncli.runs.trackers.tensorboard import import_tensorboard as import_package
        else:
            from nncli.runs.trackers.mlflow import import_mlflow as import_package
        import_package()
    return out


def make_trackers(names: list[str], session, runs_dir) -> list[Any]:
    """One Trainer callback per tracker name, checked first (before the run folder exists)."""
    out: list[Any] = []
    for name in check_trackers(names):
        if name == "tensorboard":
            from nncli.runs.trackers.tensorboard import TensorBoardTracker

            out.append(TensorBoardTracker(session))
        else:
            from nncli.runs.trackers.mlflow import MlflowTracker

            out.append(MlflowTracker(session, runs_dir))
    return out


def finish_trackers(trackers: list[Any], summary: dict[str, Any] | None) -> list[str]:
    """After summary.json is written (None: the run failed): each tracker logs what the run left and
    closes. A tracker that fails here costs the run nothing: its message is returned, one per tracker."""
    problems = []
    for t in trackers:
        try:
            t.finish(summary)
        except Exception as exc:  # a tracking server gone, a full artifact store: the run itself is done
            problems.append(f"{type(t).__name__}: {type(exc).__name__}: {exc}".splitlines()[0])
    return problems


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numeric fields of a metrics row worth a curve (not step, epoch or event)."""
    return {
        k: float(v)
        for k, v in record.items()
        if k not in ("step", "epoch", "event") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
