"""A run's confusion matrix, drawn: a PNG via matplotlib, or a table in the terminal.

The matrix comes from the run's summary.json when the run listed ``confusion_matrix`` in its
``metrics:`` (the test split with the final weights, else the best evaluation's validation split);
otherwise it is computed now from the best checkpoint on the run's test split (``nncli eval``'s
split), so any classifier run can be drawn. Rows are true classes, columns predictions; cells are
shaded by the fraction of their row (the class's recall on the diagonal).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nncli.runs.folder.run_dir import require_run
from nncli.runs.folder.run_info import read_run
from nncli.runs.folder.safe_read import read_config, read_json
from nncli.viz.curves import PlotError, have_matplotlib, new_figure, save

#: above this many classes the PNG shows no numbers in the cells (they would not fit)
MAX_ANNOTATED = 30


@dataclass
class Confusion:
    """A confusion matrix (C, C) of counts, its class labels and where it came from."""

    matrix: np.ndarray
    labels: list[str]
    source: str  # e.g. "test split, final weights"
    run: str

    @property
    def title(self) -> str:
        return f"{self.run}: {self.source}"


def find_confusion(run: Path | str, recompute: Any = None) -> Confusion:
    """The confusion matrix of ``run`` (see the module's docstring). ``recompute(run)`` → the dict of
    ``nncli.runs.evaluate.evaluate`` with ``confusion_matrix`` (default: that function)."""
    folder = require_run(run)
    summary = read_json(folder / "summary.json")
    found = None
    test, best = summary.get("test") or {}, summary.get("best") or {}
    if isinstance(test, dict) and "confusion_matrix" in test:
        found = test["confusion_matrix"], "test split, final weights"
    elif isinstance(best, dict) and "val_confusion_matrix" in best:
        found = best["val_confusion_matrix"], f"validation split, best evaluation (step {best.get('step')})"
    if found is None:
        _check_classifier(folder)
        if recompute is None:
            from nncli.runs.evaluate import evaluate as recompute
        result = recompute(folder, metrics=["confusion_matrix"])
        found = result["confusion_matrix"], f"{result['split']} split, {result['checkpoint']} checkpoint"
    matrix = _matrix(found[0], folder)
    return Confusion(matrix, class_labels(folder, len(matrix)), found[1], folder.name)


def _check_classifier(folder: Path) -> None:
    """PlotError unless the run's loss is a classifier's (cross_entropy, logistic)."""
    from nncli.core.errors import UserError
    from nncli.core.registry import losses

    loss = read_config(folder).get("loss", "cross_entropy")
    name = loss.get("type", "cross_entropy") if isinstance(loss, dict) else loss
    try:
        kind = losses.lookup(name).target_kind
    except (UserError, AttributeError):
        kind = None
    if kind not in ("class", "binary"):
        raise PlotError(f"{folder}: a confusion matrix needs a classifier run; this run's loss is {name}")


def _matrix(value: Any, folder: Path) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.int64)
    except (TypeError, ValueError):
        m = np.empty(0, dtype=np.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2 or np.any(m < 0):
        raise PlotError(
            f"{folder / 'summary.json'}: the confusion matrix is damaged (not a square of counts)"
        )
    return m


def class_labels(folder: Path, classes: int) -> list[str]:
    """The run's class names (run.json ``data.class_names``, from string labels), else 0…C−1."""
    names = (read_run(folder).get("data") or {}).get("class_names")
    if isinstance(names, list) and len(names) == classes:
        return [str(n) for n in names]
    return [str(i) for i in range(classes)]


def row_fractions(m: np.ndarray) -> np.ndarray:
    """Each row divided by its total (a class with no example: a row of zeros)."""
    totals = m.sum(axis=1, keepdims=True)
    return np.divide(m, totals, out=np.zeros(m.shape), where=totals > 0)


def confusion_table(c: Confusion):
    """A title line and a rich Table: counts, shaded by row fraction (green diagonal, red errors), each class's recall
    in the last column and precision in the last row."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    m, frac = c.matrix, row_fractions(c.matrix)
    table = Table(caption="rows: true class · columns: predicted", caption_justify="left")
    table.add_column("true \\ pred", style="bold")
    for label in c.labels:
        table.add_column(escape(label), justify="right")
    table.add_column("recall", justify="right", style="dim")
    predicted = m.sum(axis=0)
    for i, label in enumerate(c.labels):
        cells = []
        for j in range(len(m)):
            level = int(round(40 + 160 * frac[i, j])) if m[i, j] else 0
            colour = f"rgb(0,{level},0)" if i == j else f"rgb({level},0,0)"
            cells.append(f"[on {colour}]{m[i, j]}[/]" if m[i, j] else "[dim]0[/]")
        total = m[i].sum()
        cells.append(f"{m[i, i] / total:.0%}" if total else "–")
        table.add_row(escape(label), *cells)
    table.add_row(
        "precision", *[f"{m[j, j] / p:.0%}" if p else "–" for j, p in enumerate(predicted)], "", style="dim"
    )
    return Group(Text(c.title, style="bold"), table)


def plot_confusion_png(c: Confusion, out: Path | str, size: tuple[int, int] = (700, 600)) -> Path:
    """The matrix as a heat map (row fractions) with the counts written in, saved as the PNG ``out``."""
    if not have_matplotlib():
        raise PlotError("PNG plots need matplotlib: pip install 'nncli[plot]' (or use --terminal)")
    m, frac = c.matrix, row_fractions(c.matrix)
    fig, (ax,) = new_figure(size, 1)
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    ticks = np.arange(len(m))
    ax.set_xticks(ticks, c.labels, rotation=45 if max(map(len, c.labels)) > 3 else 0, ha="right")
    ax.set_yticks(ticks, c.labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(c.title, fontsize=9)
    if len(m) <= MAX_ANNOTATED:
        for i in range(len(m)):
            for j in range(len(m)):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=max(6, min(14, 60 // len(m))),
                        color="white" if frac[i, j] > 0.5 else "black")  # fmt: skip
    return save(fig, out)
