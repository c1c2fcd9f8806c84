"""``nncli plot RUN --watch``: the records of ``train.watch`` (watch.jsonl) per layer over the steps.

Six panels share the step axis, one line per module (coloured from the first module, dark, to the
last, light, so vanishing or exploding gradients show as a fan that spreads with depth):

    ‖u‖/√N (output)      √N‖∂J/∂u‖ (gradient at the output)   ‖∂J/∂W‖ (weight gradients)
    ‖ΔW‖/‖W‖ (updates)   dead / saturated units (σ)            σ̂ of a normalisation's input

‖u‖/√N and √N‖∂J/∂u‖ are the root mean squares over the batch's N examples of ‖u_n‖ and of
‖∂ℓ_n/∂u_n‖ (J is the mean of the losses ℓ_n), so a smaller last batch of an epoch does not show
as a dip. The norm panels show the modules with parameters (the MMs and convolutions, whose
outputs are the pre-activations; normalisations have the last panel) and use a log scale; a panel
without data says so. ``weight`` stands for every parameter that is not a bias. As a PNG
(matplotlib) or as terminal charts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.runs.folder.run_dir import require_run
from nncli.runs.folder.watch_log import WATCH_FILE, read_watch
from nncli.viz.curves import DPI, PlotError, have_matplotlib, save

#: default PNG size in pixels (width, height): two rows of three panels
WATCH_SIZE = (1500, 800)
#: (label, steps, values)
Line = tuple[str, list[float], list[float]]


@dataclass
class Panel:
    title: str
    log: bool
    lines: list[Line]
    empty: str  # what a panel without lines says
    share: bool = False  # values in [0, 1]


def _dict(v: Any) -> dict[str, Any]:
    """``v`` when it is a JSON object, else {} (a record edited by hand)."""
    return v if isinstance(v, dict) else {}


def _value(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _series(records: list[dict], pick: Callable[[dict, float], dict[str, Any]], keep: set[str]) -> list[Line]:
    """One line per module (in the order of the first record) of ``pick(module record, N)``'s values,
    N the record's batch size (1 when a record lacks it)."""
    order: dict[str, str] = {}
    points: dict[str, tuple[list[float], list[float]]] = {}
    for rec in records:
        n = _value(rec.get("batch"))
        n = n if math.isfinite(n) and n > 0 else 1.0
        for m in rec.get("modules", []) if isinstance(rec.get("modules"), list) else []:
            if not isinstance(m, dict) or str(m.get("name")) not in keep:
                continue
            for suffix, value in pick(m, n).items():
                key = f"{m['name']}{suffix}"
                order.setdefault(key, f"{m['name']} {m.get('type', '')}{suffix}")
                xs, ys = points.setdefault(key, ([], []))
                xs.append(float(rec["step"]))
                ys.append(_value(value))
    return [(order[k], *points[k]) for k in order]


def _params(m: dict, field: str) -> dict[str, Any]:
    """``field`` of every non-bias parameter of a module record, keyed ``.key`` (``""`` for weight)."""
    return {
        ("" if key == "weight" else f".{key}"): _dict(p).get(field)
        for key, p in _dict(m.get("params")).items()
        if "bias" not in key and "beta" not in key
    }


def watch_panels(run: Path | str, warn=None) -> list[Panel]:
    """The six panels of a run's watch.jsonl; PlotError when the run recorded none."""
    run = require_run(run)
    records = read_watch(run, warn)
    if not records:
        raise PlotError(
            f"{run / WATCH_FILE}: no watch records; train with train.watch: {{every: N}} "
            f"(e.g. --set train.watch.every=50)"
        )
    first = [_dict(m) for m in records[0].get("modules", []) if isinstance(m, dict)]
    every = {str(m.get("name")) for m in first}
    # the layers: modules with parameters, normalisations aside (their σ̂ has a panel of its own)
    with_params = {str(m.get("name")) for m in first if m.get("params")}
    trained = {n for n in with_params if not any(m.get("stats") for m in first if m.get("name") == n)}
    trained = trained or with_params or every

    def activity(m: dict, _n: float) -> dict[str, Any]:
        a = _dict(m.get("activity"))
        return {f" {k.replace('_', ' ')}": v for k, v in a.items() if k in ("dead_units", "saturated")}

    def stats(m: dict, _n: float) -> dict[str, Any]:
        s = _dict(m.get("stats"))
        return {"": s["input_std"]} if "input_std" in s else {}

    return [
        Panel(
            "‖u‖/√N, module output (RMS over examples)",
            True,
            _series(records, lambda m, n: {"": _value(m.get("u")) / math.sqrt(n)}, trained),
            "no data",
        ),
        Panel(
            "√N‖∂J/∂u‖, gradient at the output (RMS of ‖∂ℓₙ/∂uₙ‖)",
            True,
            _series(records, lambda m, n: {"": _value(m.get("v")) * math.sqrt(n)}, trained),
            "no data",
        ),
        Panel(
            "‖∂J/∂W‖, weight gradient",
            True,
            _series(records, lambda m, _n: _params(m, "grad"), trained),
            "no parameters",
        ),
        Panel(
            "‖ΔW‖/‖W‖, update ratio",
            True,
            _series(records, lambda m, _n: _params(m, "update"), trained),
            "no parameters",
        ),
        Panel(
            "share of dead ReLU / saturated σ units",
            False,
            _series(records, activity, every),
            "no ReLU, sigmoid or tanh",
            share=True,
        ),
        Panel(
            "σ̂ of the normalised input", True, _series(records, stats, every), "no LN, BatchNorm or GroupNorm"
        ),
    ]


def plot_watch_png(run: Path | str, out: Path | str, size: tuple[int, int] = WATCH_SIZE, warn=None) -> Path:
    """Write the watch panels of ``run`` to the PNG ``out`` (``size`` pixels); return its path."""
    if not have_matplotlib():
        raise PlotError("PNG plots need matplotlib: pip install 'nncli[plot]' (or use --terminal)")
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = watch_panels(run, warn)
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{Path(run).name}: train.watch")
    cmap = colormaps["viridis"]
    for ax, panel in zip(fig.subplots(2, 3).reshape(-1), panels):
        ax.set_title(panel.title, fontsize="medium")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        n = len(panel.lines)
        for i, (label, xs, ys) in enumerate(panel.lines):
            ax.plot(xs, ys, label=label, color=cmap(0.9 * i / max(n - 1, 1)), linewidth=1.4)
        positive = [y for _, _, ys in panel.lines for y in ys if math.isfinite(y) and y > 0]
        if panel.log and positive:
            ax.set_yscale("log")
        if panel.share:
            ax.set_ylim(-0.03, 1.03)
        if not panel.lines:
            ax.text(0.5, 0.5, panel.empty, ha="center", va="center", transform=ax.transAxes, alpha=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.legend(fontsize="x-small", ncol=2 if n > 6 else 1, frameon=False)
    return save(fig, out)


def watch_charts(run: Path | str, width: int = 64, height: int = 10, warn=None) -> list:
    """The watch panels of ``run`` as rich Text charts for the terminal."""
    from rich.text import Text

    from nncli.viz.terminal_chart import line_chart

    charts = []
    for panel in watch_panels(run, warn):
        if not panel.lines:
            charts.append(Text(f"{panel.title}: {panel.empty}\n", style="dim"))
            continue
        log = panel.log and any(y > 0 for _, _, ys in panel.lines for y in ys if math.isfinite(y))
        title = panel.title + (" (log scale)" if log else "")
        charts.append(line_chart(panel.lines, title=title, width=width, height=height, log_y=log))
    return charts
