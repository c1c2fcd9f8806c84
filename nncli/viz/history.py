"""The optimisation history of a search: each trial's best metric by trial number, and the best so far.

Read from the sweep folder's ``sweep.json`` alone (no Optuna needed to draw it). Completed trials are
dots, pruned ones crosses (their value when they were stopped), the line is the best completed value so
far; ``nncli plot SWEEP_DIR`` draws it for a search, ``nncli plot SWEEP_DIR/t*`` the trials' curves.
"""

from __future__ import annotations

from pathlib import Path

from nncli.runs.sweeps.record import load_sweep
from nncli.training.metrics import higher_is_better


def is_search(path: Path | str) -> bool:
    """Whether ``path`` is the folder of a search sweep (its sweep.json has a "search")."""
    from nncli.runs.folder.safe_read import read_json

    return Path(path).is_dir() and bool(read_json(Path(path) / "sweep.json").get("search"))


def history(sweep_dir: Path | str) -> dict:
    """{"metric", "completed": [(n, v)], "pruned": [(n, v)], "best": [(n, best so far)]}"""
    sweep = load_sweep(sweep_dir)
    up = higher_is_better(sweep.metric)
    done, pruned, best = [], [], []
    current = None
    for t in sorted(sweep.trials, key=lambda t: t.index):
        if not t.best or t.status == "requeued":
            continue
        v = t.best["value"]
        if t.status == "pruned":
            pruned.append((t.index, v))
            continue
        if t.status != "completed":
            continue
        done.append((t.index, v))
        current = v if current is None else (max(current, v) if up else min(current, v))
        best.append((t.index, current))
    last = max((n for n, _ in done + pruned), default=None)
    if best and last is not None and last > best[-1][0]:
        best.append((last, best[-1][1]))  # the line runs to the last trial
    return {"metric": sweep.metric, "study": (sweep.search or {}).get("study"), "completed": done,
            "pruned": pruned, "best": best}  # fmt: skip


def plot_history_png(sweep_dir: Path | str, out: Path | str, size: tuple[int, int] = (900, 450)) -> Path:
    from nncli.viz.curves import PlotError, have_matplotlib, new_figure, save

    if not have_matplotlib():
        raise PlotError("PNG plots need matplotlib: pip install 'nncli[plot]' (or use --terminal)")
    h = history(sweep_dir)
    if not h["completed"] and not h["pruned"]:
        raise PlotError(f"{sweep_dir}: no trial of this search has reported {h['metric']} yet")
    fig, (ax,) = new_figure(size, 1)
    if h["completed"]:
        ax.plot(*zip(*h["completed"]), "o", color="C0", label="completed trial")
    if h["pruned"]:
        ax.plot(*zip(*h["pruned"]), "x", color="0.5", label="pruned (value when stopped)")
    if h["best"]:
        xs, ys = zip(*h["best"])
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(h["metric"])
    ax.set_title(f"optimisation history of {h['study']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save(fig, out)


def history_chart(sweep_dir: Path | str, width: int = 64, height: int = 12):
    from nncli.viz.terminal_chart import line_chart

    h = history(sweep_dir)
    curves = [
        ("completed", [float(n) for n, _ in h["completed"]], [v for _, v in h["completed"]]),
        ("best so far", [float(n) for n, _ in h["best"]], [v for _, v in h["best"]]),
    ]
    return line_chart(curves, title=f"optimisation history ({h['metric']})", width=width, height=height)
