"""Reading finished (or running) run folders: the runs table, the best metric, and run-to-run diffs.

Only reads; never writes a run. Tolerates folders that are half written (a run still going, or one that
crashed): a missing summary.json or a torn last line of metrics.jsonl gives blanks, not an error.

    runs/
      mlp-20260101-120000/          config.yaml, run.json, metrics.jsonl, summary.json, checkpoints/
      sweep-mlp-20260101-130000/    sweep.json and one run folder per combination
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

from nncli.runs.folder import RunError, is_run_dir, read_config, read_json, read_metrics, require_run
from nncli.training.metrics import higher_is_better


def find_runs(root: Path | str) -> list[Path]:
    """Run folders in ``root`` and one level below (sweep folders), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root}: no such folder")
    if is_run_dir(root):
        return [root]
    found: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_run_dir(child):
            found.append(child)
        else:
            found.extend(sorted(g for g in child.iterdir() if is_run_dir(g)))
    return found


# -- metrics ---------------------------------------------------------------------------------------
def series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` over the records that have a finite value for it."""
    xs, ys = [], []
    for i, rec in enumerate(records):
        v = rec.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(float(rec.get("step", i)))
            ys.append(float(v))
    return xs, ys


def best_of(records: list[dict[str, Any]], metric: str) -> tuple[float, float] | None:
    """(value, step) of the best finite ``metric`` in ``records``, or None when it was never logged."""
    steps, vals = series(records, metric)
    if not vals:
        return None
    pick = max if higher_is_better(metric) else min
    i = pick(range(len(vals)), key=vals.__getitem__)
    return vals[i], steps[i]


def best_metric(records: list[dict[str, Any]], metric: str | None = None) -> tuple[str, float, float] | None:
    """(name, value, step) of the best validation metric: ``metric`` if given, else val_acc, then val_loss."""
    for name in ([metric] if metric else ["val_acc", "val_loss", "train_loss"]):
        hit = best_of(records, name)
        if hit is not None:
            return name, hit[0], hit[1]
    return None


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
    from nncli.runs.preflight import is_training

    return "stopped" if status == "running" and not is_training(run) else status


def run_row(run: Path, metric: str | None = None) -> dict[str, Any]:
    """One line of ``nncli runs``: identity, status, best metric, steps, wall time, test accuracy."""
    info, summary, config = read_json(run / "run.json"), read_json(run / "summary.json"), read_config(run)
    records = read_metrics(run)
    best = best_metric(records, metric)
    steps = lookup(summary, "steps")
    if steps is None and records:
        steps = records[-1].get("step")
    return {
        "run": run.name,
        "path": str(run),
        "config": config.get("name"),
        "status": _status(run, info.get("status", "unknown")),
        "best_metric": best[0] if best else None,
        "best_value": best[1] if best else None,
        "best_step": best[2] if best else None,
        "steps": steps,
        "wall_time": lookup(summary, "wall_time"),
        "test_acc": lookup(summary, "test_acc"),
        "test_loss": lookup(summary, "test_loss"),
    }


def list_runs(root: Path | str, metric: str | None = None) -> list[dict[str, Any]]:
    return [run_row(r, metric) for r in find_runs(root)]


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


def diff_runs(a: Path | str, b: Path | str) -> dict[str, Any]:
    """Config keys whose values differ (or exist in one run only), and final metrics side by side."""
    a, b = require_run(a), require_run(b)
    ca, cb = flatten(read_config(a)), flatten(read_config(b))
    config = [{"key": k, "a": ca.get(k, _MISSING), "b": cb.get(k, _MISSING)}
              for k in _ordered_union(ca, cb) if ca.get(k, _MISSING) != cb.get(k, _MISSING)]
    sa, sb = _scalars(read_json(a / "summary.json")), _scalars(read_json(b / "summary.json"))
    for run, flat in ((a, sa), (b, sb)):
        best = best_metric(read_metrics(run))
        if best is not None:
            flat.setdefault(f"best_{best[0]}", best[1])
    metrics = [{"key": k, "a": sa.get(k), "b": sb.get(k)} for k in _ordered_union(sa, sb)]
    return {"a": str(a), "b": str(b), "config": config, "metrics": metrics}


def _scalars(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flatten(summary).items() if isinstance(v, (int, float, str, type(None)))}


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
