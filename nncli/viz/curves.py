"""Loss and accuracy curves of one or several runs: a PNG via matplotlib (optional) or a terminal chart.

Two panels share the step axis: losses (train and validation, log scale) and one metric (``val_acc``
by default). Several runs go on the same figure, each labelled with its run folder name.

``write_curves(run_dir)`` is what ``train`` calls when a run ends: it writes ``<run>/curves.png`` and
returns its path, or does nothing and returns None when matplotlib is not installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nncli.core.errors import UserError
from nncli.runs.folder import read_metrics, require_run
from nncli.runs.listing import series

LOSS_KEYS = ("train_loss", "val_loss")
#: default PNG size in pixels (width, height) and its resolution
DEFAULT_SIZE = (1200, 450)
DPI = 100

#: [(label, steps, values, run index)]: the run index keeps one colour per run across panels
Series = list[tuple[str, list[float], list[float], int]]


class PlotError(UserError):
    """Nothing to plot, or plotting asked of a missing optional dependency."""


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def panels(run_dirs: Sequence[Path | str], metric: str = "val_acc") -> dict[str, Series]:
    """{"loss": [(label, steps, values, run index)], metric: [...]}: the curves, empty panels dropped."""
    runs = [require_run(r) for r in run_dirs]
    several = len(runs) > 1
    out: dict[str, Series] = {"loss": [], metric: []}
    for i, run in enumerate(runs):
        records = read_metrics(run)
        for key in LOSS_KEYS:
            xs, ys = series(records, key)
            if xs:
                out["loss"].append((f"{run.name}: {key}" if several else key, xs, ys, i))
        xs, ys = series(records, metric)
        if xs:
            out[metric].append((run.name if several else metric, xs, ys, i))
    out = {k: v for k, v in out.items() if v}
    if not out:
        names = ", ".join(r.name for r in runs)
        raise PlotError(f"nothing to plot: no {', '.join(LOSS_KEYS)} or {metric} in metrics.jsonl of {names}")
    return out


def plot_png(
    run_dirs: Sequence[Path | str],
    out: Path | str,
    metric: str = "val_acc",
    size: tuple[int, int] = DEFAULT_SIZE,
) -> Path:
    """Write the curves of ``run_dirs`` to the PNG ``out`` of exactly ``size`` pixels; return its path."""
    if not have_matplotlib():
        raise PlotError("PNG plots need matplotlib: pip install 'nncli[plot]' (or use --terminal)")
    # the object API with the Agg canvas: no pyplot global state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = panels(run_dirs, metric)
    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(data), squeeze=False)[0]
    colours = [f"C{i % 10}" for i in range(len(run_dirs))]
    for ax, (name, curves) in zip(axes, data.items()):
        for label, xs, ys, run in curves:
            # one colour per run; training loss solid, evaluations dashed with a dot per evaluation
            evals = not label.endswith("train_loss")
            ax.plot(
                xs,
                ys,
                label=label,
                color=colours[run] if len(run_dirs) > 1 else None,
                linestyle="--" if evals and name == "loss" else "-",
                marker="o" if evals and len(xs) < 40 else None,
                markersize=3,
            )
        if name == "loss" and all(min(c[2]) > 0 for c in curves):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")  # no bbox_inches="tight": keep the asked pixel size
    return out


def write_curves(run_dir: Path | str, metric: str = "val_acc") -> Path | None:
    """``<run_dir>/curves.png``, or None without matplotlib or without anything logged yet."""
    if not have_matplotlib():
        return None
    try:
        return plot_png([run_dir], Path(run_dir) / "curves.png", metric)
    except PlotError:
        return None


def terminal_charts(
    run_dirs: Sequence[Path | str], metric: str = "val_acc", width: int = 64, height: int = 12
) -> list:
    """One rich Text chart per panel, for terminals and machines without matplotlib."""
    from nncli.viz.terminal_chart import line_chart

    charts = []
    for name, curves in panels(run_dirs, metric).items():
        log_y = name == "loss" and all(min(c[2]) > 0 for c in curves)
        title = f"{name} (log scale)" if log_y else name
        charts.append(
            line_chart([c[:3] for c in curves], title=title, width=width, height=height, log_y=log_y)
        )
    return charts
