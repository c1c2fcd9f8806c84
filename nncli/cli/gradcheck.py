"""`nncli gradcheck [CONFIG]`: central differences against every backward function.

With a config: each module at the input it sees in the chain, the loss, then the chain end to end.
Without: every registered module type at each of its example settings, and every loss.
Exit 0 when every tensor passes, 1 when any fails (2 for a config or command-line error).
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from nncli.cli import app, console
from nncli.diagnostics.gradcheck_config import gradcheck


@app.command("gradcheck")
def gradcheck_cmd(
    config: str | None = typer.Argument(None, help="YAML config; without one, check every registered type."),
    module: str | None = typer.Option(None, "--module", "-m", help="Only this layer or loss type."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config value: --set model.layers[0].out=8"
    ),
    eps: float = typer.Option(1e-6, "--eps", help="Central-difference step."),
    rtol: float = typer.Option(1e-5, "--rtol", help="Relative tolerance."),
    atol: float = typer.Option(1e-8, "--atol", help="Absolute tolerance."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random batch, G and the sampled coordinates."),
    samples: int | None = typer.Option(
        None,
        "--samples",
        min=1,
        help="Random coordinates per tensor \\[default: all for tensors of ≤ 2000 elements, else 200].",
    ),
    data: str | None = typer.Option(None, "--data", help="Check at a real batch from this .npz/.csv file."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report on stdout."),
) -> None:
    """Check every backward function against central differences (float64)."""
    result = gradcheck(
        config,
        overrides=overrides,
        module=module,
        data=data,
        eps=eps,
        rtol=rtol,
        atol=atol,
        seed=seed,
        samples=samples if samples is not None else "auto",
    )
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        console = _console()
        console.print(report_table(result.reports, title=f"gradcheck: {result.target}"))
        console.print(f"[bold {'green' if result.passed else 'red'}]{result.verdict}[/]")
    if not result.passed:
        sys.exit(1)


def _fmt(x: float) -> str:
    return f"{x:.2e}"


def report_table(reports, title: str = "gradcheck") -> Table:
    """One row per tensor: where, what, how many coordinates, the worst error and the verdict."""
    t = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("module", "left"),
        ("setting", "left"),
        ("tensor", "left"),
        ("checked", "right"),
        ("skipped", "right"),
        ("max abs", "right"),
        ("max rel", "right"),
        ("worst at", "left"),
        ("analytic", "right"),
        ("numeric", "right"),
        ("", "left"),
    )
    for col, just in columns:
        t.add_column(col, justify=just)
    for r in reports:
        status = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        worst = "(" + ", ".join(map(str, r.worst_index)) + ")" if r.checked else "-"
        t.add_row(
            escape(r.module),
            escape(r.setting),
            escape(r.tensor),
            str(r.checked),
            str(r.skipped),
            _fmt(r.max_abs),
            _fmt(r.max_rel),
            worst,
            f"{r.analytic:.6g}",
            f"{r.numeric:.6g}",
            status + ("  " + escape("; ".join(r.notes)) if r.notes else ""),
        )
    return t


def _console() -> Console:
    # wide tables stay whole when piped to a file
    return console()
