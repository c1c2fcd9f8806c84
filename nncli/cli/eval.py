"""``nncli eval RUN_DIR``: a run's checkpoint on its test split, or on a data file of your own.

A file given with ``--data`` is read with the run's data settings (``x_key``/``y_key``, CSV target
column) and standardised with the statistics saved in the run's run.json, the training split's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

from nncli.cli import app, err_console
from nncli.core.errors import DataError, UserError


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder made by nncli train."),
    data: Path | None = typer.Option(None, "--data", help="Evaluate on this .npz / .csv instead."),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help="best or last (default: best, or last when the run has "
        "no best yet, e.g. it was killed before its first evaluation).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON to stdout."),
) -> None:
    """Evaluate a run's best (or last) checkpoint: mean loss and, for classifiers, accuracy."""
    result = evaluate_run(run_dir, data, checkpoint)
    if json_out:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    from rich.table import Table

    err_console.print(
        f"{result['run']}: {result['checkpoint']} checkpoint (step {result['step']}) on {result['split']}",
        markup=False,
        soft_wrap=True,
    )
    table = Table()
    table.add_column("examples", justify="right")
    table.add_column("loss", justify="right")
    row = [str(result["examples"]), f"{result['loss']:.4f}"]
    if "acc" in result:
        table.add_column("accuracy", justify="right")
        row.append(f"{result['acc']:.2%}")
    table.add_row(*row)
    err_console.print(table)


def evaluate_run(run_dir: Path, data: Path | None, which: str | None = None) -> dict:
    """Metrics of checkpoint ``which`` of ``run_dir`` on ``data`` (or the run's test / val split).

    Read-only, so it can run beside a training process; a run killed mid-save is read through
    the weights its last complete save left.
    """
    from nncli.config.build import build_chain
    from nncli.config.load import load_config
    from nncli.runs.checkpoint import apply_weights, load_weights, weights_path
    from nncli.runs.folder import read_run
    from nncli.runs.session import check_split
    from nncli.training.data import apply_standardization, load_arrays, load_dataset
    from nncli.training.loop import evaluate
    from nncli.training.userdata import coerce_targets

    if which not in ("best", "last", None):
        raise UserError(f"--checkpoint must be 'best' or 'last', got {which!r}")
    run_dir = Path(run_dir)
    info = read_run(run_dir)
    if which is None:
        which = "best" if weights_path(run_dir / "checkpoints", "best").exists() else "last"
    loaded = load_config(run_dir / "config.yaml", [])
    cfg = loaded.config
    chain = build_chain(loaded, dtype=cfg.dtype, seed=cfg.seed)
    path = weights_path(run_dir / "checkpoints", which)
    weights, meta = load_weights(path)
    apply_weights(chain, weights, path)
    classifier = getattr(chain.loss, "target_kind", "real") in ("class", "binary")
    if data is not None:
        x, y = load_arrays(data, cfg.data)
        y = coerce_targets(y, getattr(chain.loss, "target_kind", "real"), str(data))
        x = apply_standardization(x, info.get("data") or {})
        x = _fit(x, chain.input_shape, data)
        split_name = str(data)
    else:
        if cfg.data is None:
            raise DataError(f"{run_dir}: the run's config has no data section; pass --data")
        ds = load_dataset(
            cfg.data,
            input_shape=tuple(cfg.model.input_shape),
            loss=chain.loss,
            seed=cfg.seed,
            base_dir=Path(info.get("data_base_dir", run_dir)),
        )
        split_name, part = ("test", ds.test) if ds.test is not None and len(ds.test.x) else ("val", ds.val)
        if part is None or not len(part.x):
            raise DataError(f"{run_dir}: the run's data has no test or validation split; pass --data")
        x, y = part.x, part.y
    part = type("Part", (), {"x": x, "y": np.asarray(y)})
    check_split(part, split_name, chain)
    x = np.ascontiguousarray(x, dtype=chain.dtype)
    y = np.asarray(y)
    if y.dtype.kind not in "iub":
        y = y.astype(chain.dtype)
    m = evaluate(chain, chain.loss, x, y, classifier)
    out = {
        "run": run_dir.name,
        "checkpoint": which,
        "step": int(meta.get("step", 0)),
        "split": split_name,
        "examples": int(len(x)),
        "loss": m["loss"],
    }
    if classifier:
        out["acc"] = m["acc"]
    return out


def _fit(x: np.ndarray, input_shape, where) -> np.ndarray:
    """Reshape flat rows to the model's per-example shape when the sizes agree."""
    want = tuple(input_shape)
    if tuple(x.shape[1:]) == want:
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(want)):
        return x.reshape((len(x),) + want)
    raise DataError(
        f"{where}: inputs have shape {tuple(x.shape[1:])} per example, the model takes {list(want)}"
    )
