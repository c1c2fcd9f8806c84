"""Loss and accuracy curves of one or several runs: a PNG via matplotlib (optional) or a terminal chart.

Two panels share the step axis: losses (train and validation, log scale) and one metric (``val_acc``
by default). Several runs go on the same figure. Runs whose configs differ only in their seed (or name)
are one *configuration*: drawn as the mean over the seeds with a ± one standard deviation band. Each
configuration has one colour and a short label made of the config keys that tell the configurations
apart (``lr=0.03 out=64``), never the folders' timestamps.

Arguments may be run folders, sweep folders or runs folders (every run inside), and glob patterns
(``runs/sweep-*/t0*``); files a shell glob brings along (``sweep.json``) are skipped.

``write_curves(run_dir)`` is what ``train`` calls when a run ends: it writes ``<run>/curves.png`` and
returns its path, or does nothing and returns None when matplotlib is not installed.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nncli.core.errors import UserError, did_you_mean
from nncli.runs.folder.metrics_log import read_metrics
from nncli.runs.folder.run_dir import RunError, is_run_dir
from nncli.runs.folder.safe_read import read_config
from nncli.runs.listing import find_runs, flatten, metric_names, series
from nncli.runs.sweeps.trial import short_key

LOSS_KEYS = ("train_loss", "val_loss")
#: default PNG size in pixels (width, height) and its resolution
DEFAULT_SIZE = (1200, 450)
DPI = 100
#: config keys that never make two runs different configurations
SAME_CONFIGURATION = ("seed", "name")

#: [(label, steps, values, group index, spread, key)]: spread is the std over seeds (None for one run)
Series = list[tuple[str, list[float], list[float], int, list[float] | None, str]]


class PlotError(UserError):
    """Nothing to plot, or plotting asked of a missing optional dependency."""


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# -- which runs ------------------------------------------------------------------------------------
def _quiet(msg: str) -> None:
    pass


def expand_runs(paths: Sequence[Path | str], warn=None) -> list[Path]:
    """Run folders named by ``paths``: runs, folders of runs (sweeps), glob patterns; in order, once each.

    With ``warn`` and several paths, one that names no run is skipped with a warning (the others are
    still drawn); otherwise it is a RunError.
    """
    out: dict[Path, None] = {}
    skipped: list[str] = []
    for arg in paths:
        try:
            _expand_one(arg, out, skipped)
        except RunError as exc:
            if warn is None or len(paths) == 1:
                raise
            warn(f"{exc.message}; skipped")
    if not out:
        raise RunError(f"{', '.join(skipped) or 'nothing'}: not a run folder")
    return list(out)


def _expand_one(arg: Path | str, out: dict[Path, None], skipped: list[str]) -> None:
    text = str(arg)
    hits = (
        [Path(text)]
        if Path(text).exists() or not glob.has_magic(text)
        else sorted(map(Path, glob.glob(text)))
    )
    if not hits:
        raise RunError(f"{text}: no run folder matches")
    for p in hits:
        if is_run_dir(p):
            out.setdefault(p)
        elif p.is_dir():
            inside = find_runs(p)
            if not inside:
                raise RunError(f"{p}: no run folders inside")
            out.update(dict.fromkeys(inside))
        elif p.exists():
            skipped.append(p.name)  # sweep.json, a PNG: what a shell glob of a sweep folder gives
        else:
            raise RunError(f"{p}: no such run folder")


@dataclass
class Group:
    """Runs of one configuration (same config but for the seed)."""

    label: str
    runs: list[Path] = field(default_factory=list)


def group_runs(runs: Sequence[Path]) -> list[Group]:
    """Runs grouped by configuration; labels from the config keys whose values differ between groups."""
    configs = {}
    for run in runs:
        flat = flatten(read_config(run))
        configs[run] = {k: v for k, v in flat.items() if k not in SAME_CONFIGURATION}
    keyed: dict[str, list[Path]] = {}
    for run in runs:
        keyed.setdefault(repr(sorted(configs[run].items(), key=lambda kv: kv[0])), []).append(run)
    members = list(keyed.values())
    firsts = [configs[g[0]] for g in members]
    keys = [
        k for k in dict.fromkeys(k for c in firsts for k in c) if len({repr(c.get(k)) for c in firsts}) > 1
    ]
    shorts = [short_key(k) for k in keys]
    groups = []
    for g, cfg in zip(members, firsts):
        parts = [f"{s if shorts.count(s) == 1 else k}={cfg.get(k, '—')}" for k, s in zip(keys, shorts)]
        label = " ".join(parts) if parts else _plain_name(g[0])
        if len(members) == 1 and len(g) == 1:
            label = ""
        groups.append(Group(label=label[:60], runs=list(g)))
    return groups


def _plain_name(run: Path) -> str:
    """A run's name without its ``-YYYYmmdd-HHMMSS`` stamp."""
    parts = run.name.split("-")
    return (
        "-".join(parts[:-2]) if len(parts) > 2 and parts[-2].isdigit() and parts[-1].isdigit() else run.name
    )


def mean_band(
    curves: list[tuple[list[float], list[float]]],
) -> tuple[list[float], list[float], list[float] | None]:
    """Mean and standard deviation over the curves at the steps every one of them logged."""
    if len(curves) == 1:
        return curves[0][0], curves[0][1], None
    maps = [dict(zip(xs, ys)) for xs, ys in curves]
    steps = sorted(set.intersection(*(set(m) for m in maps)))
    mean, std = [], []
    for s in steps:
        vals = [m[s] for m in maps]
        mu = sum(vals) / len(vals)
        mean.append(mu)
        std.append(math.sqrt(sum((v - mu) ** 2 for v in vals) / len(vals)))
    return steps, mean, std


def check_metric(runs: Sequence[Path], metric: str, records: list[list[dict]]) -> None:
    """PlotError with a did-you-mean when no run logged ``metric``."""
    known = list(dict.fromkeys(n for recs in records for n in metric_names(recs)))
    if metric in known:
        return
    names = ", ".join(known) or "none"
    raise PlotError(
        f"--metric {metric}: no run logged it{did_you_mean(metric, known)}; metrics in these runs: {names}"
    )


def panels(run_dirs: Sequence[Path | str], metric: str | None = None, warn=None) -> dict[str, Series]:
    """{"loss": [(label, steps, values, group index, spread, key)], metric: [...]}: empty panels dropped.

    An asked ``metric`` that no run logged is an error; without one, ``val_acc`` is drawn if logged.
    """
    runs = expand_runs(run_dirs, warn)
    records = {run: read_metrics(run, warn or _quiet) for run in runs}
    if metric is not None:
        check_metric(runs, metric, list(records.values()))
    metric = metric or "val_acc"
    groups = group_runs(runs)
    out: dict[str, Series] = {"loss": [], metric: []}
    for gi, group in enumerate(groups):
        for panel, keys in (("loss", LOSS_KEYS), (metric, (metric,))):
            for key in keys:
                curves = [series(records[r], key) for r in group.runs]
                curves = [c for c in curves if c[0]]
                if not curves:
                    continue
                xs, ys, spread = mean_band(curves)
                n = len(curves)
                name = key if panel == "loss" or not group.label else ""
                label = ": ".join(p for p in (group.label, name) if p) or key
                if n > 1:
                    label += f" ({n} seeds)"
                out[panel].append((label, xs, ys, gi, spread, key))
    out = {k: v for k, v in out.items() if v}
    if not out:
        names = ", ".join(r.name for r in runs)
        raise PlotError(f"nothing to plot: no {', '.join(LOSS_KEYS)} or {metric} in metrics.jsonl of {names}")
    return out


def plot_png(
    run_dirs: Sequence[Path | str],
    out: Path | str,
    metric: str | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    warn=None,
) -> Path:
    """Write the curves of ``run_dirs`` to the PNG ``out`` of exactly ``size`` pixels; return its path."""
    if not have_matplotlib():
        raise PlotError("PNG plots need matplotlib: pip install 'nncli[plot]' (or use --terminal)")
    data = panels(run_dirs, metric, warn)
    fig, axes = new_figure(size, len(data))
    n_groups = 1 + max(c[3] for curves in data.values() for c in curves)
    for ax, (name, curves) in zip(axes, data.items()):
        for label, xs, ys, gi, spread, key in curves:
            # one colour per configuration; training loss solid, evaluations dashed with a dot each
            evals = key != "train_loss"
            colour = f"C{gi % 10}" if n_groups > 1 else None
            (line,) = ax.plot(
                xs,
                ys,
                label=label,
                color=colour,
                linestyle="--" if evals and name == "loss" else "-",
                marker="o" if evals and len(xs) < 40 else None,
                markersize=3,
            )
            if spread is not None:
                lo = [y - s for y, s in zip(ys, spread)]
                hi = [y + s for y, s in zip(ys, spread)]
                if name == "loss":
                    lo = [max(v, 1e-12) for v in lo]
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        if name == "loss" and all(min(c[2]) > 0 for c in curves):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        # many curves: the legend goes beside the panel, in a small font, so it hides none of them
        if len(curves) > 4:
            ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        else:
            ax.legend(fontsize="small")
    return save(fig, out)


def new_figure(size: tuple[int, int], panels: int):
    """A matplotlib Figure on the Agg canvas (no pyplot state, no display) and its row of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def save(fig, out: Path | str) -> Path:
    """Write ``fig`` as the PNG ``out``: atomically, never through a link; inside a run folder only
    as a PNG beside its files, never over one of them."""
    import io

    from nncli.runs.atomic import atomic_write_bytes
    from nncli.runs.folder.own_files import check_output

    out = Path(out)
    target = check_output(
        out, force=True, allowed=_png_beside_the_run, allowed_text="a .png file at its top level"
    )
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")  # no bbox_inches="tight": keep the asked pixel size
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, buf.getvalue())
    return out


def _png_beside_the_run(rel: Path) -> bool:
    return len(rel.parts) == 1 and rel.suffix.lower() == ".png"


def write_curves(run_dir: Path | str, metric: str | None = None) -> Path | None:
    """``<run_dir>/curves.png``, or None without matplotlib or without anything logged yet."""
    if not have_matplotlib():
        return None
    try:
        return plot_png([run_dir], Path(run_dir) / "curves.png", metric)
    except UserError:  # nothing logged yet, or a curves.png that is not nncli's (a link)
        return None


def terminal_charts(
    run_dirs: Sequence[Path | str],
    metric: str | None = None,
    width: int = 64,
    height: int = 12,
    warn=None,
) -> list:
    """One rich Text chart per panel, for terminals and machines without matplotlib."""
    from nncli.viz.terminal_chart import line_chart

    charts = []
    for name, curves in panels(run_dirs, metric, warn).items():
        log_y = name == "loss" and all(min(c[2]) > 0 for c in curves)
        title = f"{name} (log scale)" if log_y else name
        charts.append(
            line_chart([c[:3] for c in curves], title=title, width=width, height=height, log_y=log_y)
        )
    return charts
