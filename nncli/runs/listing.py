"""Reading finished (or running) run folders: the runs table, the best metric, and run-to-run diffs.

Only reads; never writes a run. Tolerates folders that are half written (a run still going, or one that
crashed): a missing summary.json or a torn last line of metrics.jsonl gives blanks, not an error.

    runs/
      mlp-20260101-120000/          config.yaml, run.json, metrics.jsonl, summary.json, checkpoints/
      sweep-mlp-20260101-130000/    sweep.json and one run folder per combination
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

from nncli.runs.folder.metrics_log import read_metrics
from nncli.runs.folder.run_dir import CREATING, RunError, is_run_dir, require_run
from nncli.runs.folder.run_info import check_run_info
from nncli.runs.folder.safe_read import read_config, read_json, read_json_object
from nncli.training.metrics import EVAL_FIELDS, higher_is_better, kind

#: receives one line per thing a listing skipped (``warning: …`` on stderr in the CLI)
Warn = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


def _subfolders(folder: Path, warn: Warn) -> list[Path]:
    """The visible sub-folders of ``folder``, sorted; a hidden ``.*.creating`` one is reported."""
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError as exc:
        warn(f"{folder}: skipped, cannot list it ({exc.strerror})")
        return []
    for p in children:
        if p.name.startswith(".") and p.name.endswith(CREATING):
            warn(f"{p}: a run folder killed while it was being created (nothing was trained); safe to delete")
    return [p for p in children if not p.name.startswith(".")]


def find_runs(root: Path | str, warn: Warn = _quiet) -> list[Path]:
    """Run folders in ``root`` and one level below (sweep folders), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root}: no such folder")
    if is_run_dir(root):
        return [root]
    found: list[Path] = []
    for child in _subfolders(root, warn):
        if is_run_dir(child):
            found.append(child)
        else:
            found.extend(g for g in _subfolders(child, warn) if is_run_dir(g))
    return found


def _finite(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# -- metrics ---------------------------------------------------------------------------------------
def series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` over the records that have a finite value for it.

    ``train_loss`` comes from train rows only: logs written before eval rows had their own
    ``train_loss_since_eval`` used the same name there for a mean over a different window.
    """
    xs, ys = [], []
    for i, rec in enumerate(records):
        if key == "train_loss" and rec.get("event") == "eval":
            continue
        v, step = rec.get(key), rec.get("step", i)
        if _finite(v) and _finite(step):
            xs.append(float(step))
            ys.append(float(v))
    return xs, ys


def metric_names(records: list[dict[str, Any]]) -> list[str]:
    """Every numeric field logged in ``records`` (besides step, epoch, lr and seconds), in first-seen order."""
    names: dict[str, None] = {}
    for rec in records:
        for k, v in rec.items():
            # numbers and nulls (a NaN written as null); not a confusion matrix's list of rows
            if k not in ("step", "epoch", "lr", "seconds", "event") and not isinstance(v, (str, bool, list)):
                names.setdefault(k)
    return list(names)


def best_of(records: list[dict[str, Any]], metric: str) -> tuple[float, float] | None:
    """(value, step) of the best finite ``metric`` in ``records``, or None when it was never logged.

    A metric that eval rows log under another name (``train_loss`` → ``train_loss_since_eval``) is read
    there, as the training loop did when it picked the ``best`` checkpoint; older logs fall back to it.
    """
    steps, vals = series(records, EVAL_FIELDS.get(metric, metric))
    if not vals:
        steps, vals = series(records, metric)
    if not vals:
        return None
    pick = max if higher_is_better(metric) else min
    i = pick(range(len(vals)), key=vals.__getitem__)
    return vals[i], steps[i]


def best_metric(records: list[dict[str, Any]], metric: str | None = None) -> tuple[str, float, float] | None:
    """(name, value, step) of the best validation metric: ``metric`` if given, else val_acc, then val_loss."""
    for name in [metric] if metric else ["val_acc", "val_loss", "train_loss"]:
        hit = best_of(records, name)
        if hit is not None:
            return name, hit[0], hit[1]
    return None


def own_metric(config: dict[str, Any]) -> str | None:
    """The metric a run chose its ``best`` checkpoint by (``train.best_metric`` of its config.yaml)."""
    train = config.get("train")
    name = train.get("best_metric") if isinstance(train, dict) else None
    return name if isinstance(name, str) and name else None


def lookup(summary: dict[str, Any], key: str) -> Any:
    """``summary[key]``, also found as ``summary[a][b]`` for key ``a_b`` or in a final/best/test group."""
    if key in summary:
        return summary[key]
    head, _, tail = key.partition("_")
    for group, name in ((head, tail), (head, key), ("final", key), ("test", key)):
        sub = summary.get(group)
        if isinstance(sub, dict) and name in sub:
            return sub[name]
    return None


# -- the table -------------------------------------------------------------------------------------
def _status(run: Path, status: str) -> str:
    """run.json's status, except that a "running" run no process is training any more (killed,
    or the machine went down) shows as "stopped": ``nncli train --resume`` continues it."""
    from nncli.runs.session.preflight import is_training

    return "stopped" if status == "running" and not is_training(run) else status


def run_row(run: Path, metric: str | None = None, warn: Warn = _quiet) -> dict[str, Any] | None:
    """One line of ``nncli runs``: identity, status, best metric, steps, wall time, test accuracy.

    None (with a warning) when the folder's run.json cannot be read: the row would be a guess.
    """
    try:
        info = check_run_info(read_json_object(run / "run.json"), run / "run.json")
    except FileNotFoundError:
        info = {}
    except RunError as exc:
        warn(f"{exc.message}; run skipped")
        return None
    summary, config = read_json(run / "summary.json", warn), read_config(run, warn)
    records = read_metrics(run, warn)
    # each run by its own best_metric (the one its best checkpoint was chosen by), unless one is asked
    best = best_metric(records, metric or own_metric(config))
    if best is None and metric is None:
        best = best_metric(records)
    steps = lookup(summary, "steps")
    if steps is None and records:
        steps = records[-1].get("step")
    name = config.get("name")
    group = summary.get("test")
    test = {k: _plain(v) for k, v in (group if isinstance(group, dict) else {}).items()}
    test = {k: v for k, v in test.items() if k != "confusion_matrix"}
    shown = test_shown(test, best[0] if best else None)
    return {
        "run": run.name,
        "path": str(run),
        "config": name if isinstance(name, str) else None,
        "status": _status(run, info.get("status", "unknown")),
        "best_metric": best[0] if best else None,
        "best_value": best[1] if best else None,
        "best_step": best[2] if best else None,
        "steps": _plain(steps),
        "wall_time": _plain(lookup(summary, "wall_time")),
        "test_acc": _plain(lookup(summary, "test_acc")),
        "test_loss": _plain(lookup(summary, "test_loss")),
        # the test value of the best column's metric (val_f1_macro → f1_macro), else accuracy, else loss
        "test_metric": shown,
        "test_value": test.get(shown) if shown else None,
        "test": test,  # every scalar test metric of summary.json
    }


def test_shown(test: dict[str, Any], best: str | None) -> str | None:
    """Which test metric the runs table shows beside the best column's ``best`` (a ``val_`` name)."""
    wanted = [kind(best)] if best and best.startswith("val_") else []
    for name in [*wanted, "acc", "loss"]:
        if test.get(name) is not None:
            return name
    return None


def _plain(v: Any) -> Any:
    """A number from summary.json as it is; anything else (a damaged file) as None."""
    return v if _finite(v) else None


def list_runs(root: Path | str, metric: str | None = None, warn: Warn = _quiet) -> list[dict[str, Any]]:
    rows = (run_row(r, metric, warn) for r in find_runs(root, warn))
    return [r for r in rows if r is not None]


# -- diff ------------------------------------------------------------------------------------------
def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as dotted keys: ``{"model.layers[0].out": 64, ...}`` (as ``--set`` takes)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        if not obj and prefix:
            out[prefix] = []
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


_MISSING = "—"


def diff_runs(*runs: Path | str, all_keys: bool = False) -> dict[str, Any]:
    """What differs between runs: config keys and metrics, with each value's change from the first run.

    Rows whose values are equal in every run are left out (``all_keys`` keeps them). Metrics are the
    summary's scalars and each run's best of its own ``best_metric``.
    """
    if len(runs) < 2:
        raise RunError("runs diff needs at least two run folders")
    paths = [require_run(r) for r in runs]
    configs = [flatten(read_config(p)) for p in paths]
    metrics = []
    for p in paths:
        flat = _scalars(read_json(p / "summary.json"))
        name = own_metric(read_config(p))
        best = best_metric(read_metrics(p), name)
        if best is not None:
            flat.setdefault(f"best_{best[0]}", best[1])
        metrics.append(flat)

    def rows(dicts: list[dict[str, Any]], missing: Any, deltas: bool) -> list[dict[str, Any]]:
        out = []
        for k in _ordered_union(*dicts):
            values = [d.get(k, missing) for d in dicts]
            if not all_keys and all(v == values[0] for v in values[1:]):
                continue
            row: dict[str, Any] = {"key": k, "values": values}
            if deltas:
                row["deltas"] = [_delta(v, values[0]) for v in values]
            out.append(row)
        return out

    return {
        "runs": [str(p) for p in paths],
        "config": rows(configs, _MISSING, False),
        "metrics": rows(metrics, None, True),
    }


def _delta(value: Any, base: Any) -> float | None:
    """``value - base`` for two numbers (not booleans), else None."""
    nums = [v for v in (value, base) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return value - base if len(nums) == 2 else None


def _scalars(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's single values as dotted keys; matrices (a confusion matrix) left out."""
    return {
        k: v for k, v in flatten(_no_lists(summary)).items() if isinstance(v, (int, float, str, type(None)))
    }


def _no_lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _no_lists(v) for k, v in obj.items() if not isinstance(v, list)}
    return obj


def _ordered_union(*dicts: dict) -> Iterator[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(d))
    return iter(seen)


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant figures, None as a dash."""
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
