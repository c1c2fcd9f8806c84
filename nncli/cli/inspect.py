"""`nncli inspect CONFIG`: every layer's shapes, parameters, multiply-adds and saved activations;
with ``--trace`` one batch forward and backward, with ``--time`` per-module milliseconds.
`nncli inspect --run RUN_DIR --trace [--checkpoint best|last] [--split val|train]`: the same for a
trained run, traced with its checkpoint's weights on a batch of its own data.

Needs no data: shapes come from the config. ``--json`` writes one JSON object to stdout and nothing else.
"""

from __future__ import annotations

import json
import sys

import typer
from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from nncli.cli import app, console
from nncli.diagnostics.inspection import REPEATS, WARMUP, inspect
from nncli.diagnostics.summary import human_bytes, human_count


def _shape(s) -> str:
    return "(" + ", ".join(map(str, s)) + ")"


@app.command("inspect")
def inspect_cmd(
    config: str | None = typer.Argument(None, help="YAML config (or --run RUN_DIR).", show_default=False),
    run: str | None = typer.Option(
        None, "--run", help="A trained run folder: its config, and with --trace its weights and data."
    ),
    checkpoint: str | None = typer.Option(
        None, "--checkpoint", help="With --run: best or last \\[default: best, else last]."
    ),
    split: str = typer.Option(
        "val", "--split", help="With --run --trace: the batch comes from the run's val or train split."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config value: --set model.layers[0].out=8"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout, nothing else."),
    batch: int | None = typer.Option(
        None, "--batch", min=1, help="Batch size for memory totals \\[default: data.batch_size or 64]."
    ),
    dtype: str | None = typer.Option(None, "--dtype", help="float32 or float64 \\[default: the config's]."),
    trace: bool = typer.Option(False, "--trace", help="Run one batch forward and backward (float64)."),
    order: str = typer.Option(
        "forward",
        "--order",
        help="Trace rows in forward order (modules, then the loss) or backward (the loss first, as "
        "backprop computes them, §7.4.2).",
    ),
    timing: bool = typer.Option(False, "--time", help="Per-module forward/backward milliseconds."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random batch for --trace and --time."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="BLAS threads for --time \\[default: BLAS's own setting]."
    ),
) -> None:
    """Show every module: shapes, parameters (with the notes' formulas), MACs and memory."""
    report = inspect(
        config,
        run=run,
        checkpoint=checkpoint,
        split=split,
        overrides=overrides,
        batch=batch,
        dtype=dtype,
        trace=trace,
        order=order,
        timing=timing,
        seed=seed,
        threads=threads,
    )
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
        return
    human = _console(sys.stdout)
    human.print(summary_table(report.summary, width=human.width))
    human.print(summary_totals(report.summary))
    if report.trace is not None:
        tr = report.trace
        human.print(
            trace_table(
                tr.rows,
                f"trace: one batch ({tr.batch}), float64"
                + (f", J = {tr.loss:.6g}" if tr.loss is not None else ""),
                width=human.width,
            )
        )
    if report.time is not None:
        tm = report.time
        human.print(
            time_table(
                tm.rows,
                tm.total_ms,
                f"time: median of {REPEATS} steps after {WARMUP} warm-up "
                f"({tm.batch}, {tm.dtype}, {tm.blas_threads} BLAS "
                f"thread{'s' if tm.blas_threads != 1 else ''})",
            )
        )


def summary_table(s, width: int | None = None):
    """The per-module table. Counts are never cut: their columns do not wrap. When the table would be
    wider than ``width``, the formulas move below it (one line per module) and shapes fold."""
    table = _summary_table(s, with_formula=True)
    if width is None or _fits(table, width):
        return table
    formulas = [f"  {r.name} {r.type}: {r.formula}" for r in s.rows if r.formula]
    return Group(
        _summary_table(s, with_formula=False, compact=True),
        *([Text("parameter formulas:")] + [Text(f) for f in formulas] if formulas else []),
    )


def _summary_table(s, with_formula: bool, compact: bool = False) -> Table:
    title = f"{s.source or 'model'}: input {_shape(s.input_shape)} → output {_shape(s.output_shape)}" + (
        f", loss {s.loss}" if s.loss else ""
    )
    if compact:  # no outer frame, one space between columns: room for the counts at 80 columns
        t = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
    else:
        t = Table(title=title, title_justify="left")
    rows = [
        (
            ("  " * r.depth) + r.name,
            escape("  " * r.depth + r.type),
            str(r.line or ""),
            _shape(r.input_shape),
            _shape(r.output_shape),
            f"{r.weight:,}",
            f"{r.bias:,}",
            escape(r.formula),
            f"{r.macs_forward:,}",
            f"{r.macs_backward:,}",
            f"{r.saved:,}",
        )
        for r in s.rows
    ]
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "left"),
        ("type", "left"),
        ("line", "right"),
        ("input", "left"),
        ("output", "left"),
        ("weight", "right"),
        ("bias", "right"),
        ("formula", "left"),
        ("MACs fwd", "right"),
        ("MACs bwd", "right"),
        ("saved", "right"),
    )
    keep = [i for i, (name, _) in enumerate(columns) if with_formula or name != "formula"]
    for i in keep:
        name, just = columns[i]
        if just == "right" or name == "#":  # counts and names: whole, never folded or cut
            longest = max([len(row[i]) for row in rows] + [max(map(len, name.split()))])
            t.add_column(name, justify=just, no_wrap=True, min_width=longest)
        else:
            longest = max([len(row[i]) for row in rows] + [len(name)])
            t.add_column(name, justify=just, overflow="fold", min_width=min(longest, 8))
    for row in rows:
        t.add_row(*(row[i] for i in keep))
    return t


def _fits(renderable, width: int) -> bool:
    from rich.console import Console
    from rich.measure import Measurement

    probe = Console(width=10_000)
    return Measurement.get(probe, probe.options, renderable).maximum <= width


def summary_totals(s) -> str:
    return (
        f"parameters: {s.params:,} ({human_bytes(s.param_bytes)} in {s.dtype})\n"
        f"multiply-adds per example: forward {human_count(s.macs_forward)}, backward "
        f"{human_count(s.macs_backward)}\n"
        f"activations kept for backward: {s.saved:,} floats = {human_bytes(s.saved_bytes)} per example, "
        f"{human_bytes(s.saved_bytes_batch)} per batch of {s.batch}"
    )


def _norm(d: dict) -> str:
    return f"{_shape(d['shape'])} ‖{d['norm']:.3g}‖" if d else ""


def trace_table(rows, title: str, width: int | None = None):
    """One row per module with its equations and the norms it saw; where that table would be wider
    than ``width``, one block per module instead, the equations on lines of their own."""
    t = Table(title=title, title_justify="left", show_lines=True)
    for col in ("#", "type", "forward / backward", "z", "u", "v = ∂J/∂u", "∂J/∂z", "∂J/∂θ", "units"):
        t.add_column(col)
    for r in rows:
        pad = "  " * r.depth
        t.add_row(
            pad + r.name,
            escape(pad + r.type),
            escape(f"{r.forward_eq}\n{r.backward_eq}"),
            _norm(r.z),
            _norm(r.u),
            _norm(r.v),
            _norm(r.dz),
            _grads(r, "\n"),
            _activity(r),
        )
    if width is None or _fits(t, width):
        return t
    blocks: list[RenderableType] = [Text(title)]
    for r in rows:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        for label, value in (
            ("forward", r.forward_eq),
            ("backward", r.backward_eq),
            ("z", _norm(r.z)),
            ("u", _norm(r.u)),
            ("v = ∂J/∂u", _norm(r.v)),
            ("∂J/∂z", _norm(r.dz)),
            ("∂J/∂θ", _grads(r, "; ")),
            ("units", _activity(r)),
        ):
            if value:
                grid.add_row(label, escape(value))
        blocks += [
            Text(f"{'  ' * r.depth}{r.name} {r.type}", style="bold"),
            Padding(grid, (0, 0, 0, 2 + 2 * r.depth)),
        ]
    return Group(*blocks)


def _grads(r, sep: str) -> str:
    return sep.join(f"{k}: {_norm(g)}" for k, g in r.grads.items())


def _activity(r) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for k, v in r.activity.items())


def time_table(rows, total: float, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "left"),
        ("type", "left"),
        ("forward ms", "right"),
        ("backward ms", "right"),
        ("share", "right"),
    )
    for col, just in columns:
        t.add_column(col, justify=just)
    for r in rows:
        pad = "  " * r.depth
        t.add_row(
            pad + r.name,
            escape(pad + r.type),
            f"{r.forward_ms:.3f}",
            f"{r.backward_ms:.3f}",
            f"{r.share:.1%}",
        )
    top = [r for r in rows if r.depth == 0]
    t.add_section()
    t.add_row(
        "total",
        "",
        f"{sum(r.forward_ms for r in top):.3f}",
        f"{sum(r.backward_ms for r in top):.3f}",
        "100.0%",
    )
    return t


def _console(file) -> Console:
    # wide tables stay whole when piped to a file
    return console(file=file)
