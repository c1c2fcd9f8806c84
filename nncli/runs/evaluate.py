"""Scoring a run's checkpoint: the library call under ``nncli eval``.

    nncli.evaluate("runs/mnist1d_cnn-20260101-120000")                 # best checkpoint, test split
    nncli.evaluate(run, data="more.npz", checkpoint="last")            # a file of your own

A file given as ``data`` is read with the run's data settings (``x_key``/``y_key``, CSV target
column) and standardised with the statistics saved in the run's run.json, the training split's.
Read-only, so it can run beside a training process; a run killed mid-save is read through the
weights its last complete save left.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import DataError
from nncli.runs.loaded_run import load_run
from nncli.runs.session.data_checks import check_split
from nncli.runs.session.datafile import check_run_data
from nncli.training.data import load_dataset
from nncli.training.evaluation import evaluate as metrics_of
from nncli.training.metrics import Fit, resolve, run_metrics
from nncli.training.splits import Split
from nncli.training.tables.eval_table import read_for_run
from nncli.training.tables.labels import encode_labels
from nncli.training.tables.table_files import is_table
from nncli.training.userdata import check_data_file, check_inputs, coerce_targets, load_arrays, read_user_file


def evaluate(
    run: Path | str,
    data: Path | str | None = None,
    checkpoint: str | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Mean loss and metrics of checkpoint ``checkpoint`` ("best" or "last"; None: best, or last when
    the run has no best yet) of ``run`` on ``data``, or on the run's test split (its validation split
    when it has no test split).

    ``metrics``: names as a config's ``metrics:`` takes them (``["f1_macro", "confusion_matrix"]``);
    None: the run's own (its ``metrics:``, or accuracy for a classifier, and its best_metric's).
    Returns ``{"run", "checkpoint", "step", "split", "examples", "loss", <metric>: value, ...}``.
    """
    loaded = load_run(run, checkpoint)
    chain, cfg = loaded.chain, loaded.config
    fit = Fit.of(chain.loss, chain.output_shape())
    names = (
        run_metrics(cfg, fit, has_val=True) if metrics is None else resolve(list(metrics), "--metrics", fit)
    )
    kind = getattr(chain.loss, "target_kind", "real")
    if data is not None:
        x, y = _labelled(loaded, Path(data), kind)
        y = coerce_targets(y, kind, str(data))
        part, split_name = Split(loaded.preprocess(x, where=str(data)), y), str(data)
    else:
        part, split_name = _held_out(loaded)
    check_split(part, split_name, chain)
    x = np.ascontiguousarray(part.x, dtype=chain.dtype)
    y = np.asarray(part.y)
    if y.dtype.kind not in "iub":
        y = y.astype(chain.dtype)
    m = metrics_of(chain, chain.loss, x, y, loaded.classifier, names)
    return {
        "run": loaded.path.name,
        "checkpoint": loaded.checkpoint,
        "step": loaded.step,
        "split": split_name,
        "examples": int(len(x)),
        **m,
    }


def _labelled(loaded, path: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A labelled file's raw inputs and labels, read as the run's training file was: a table with
    the run's preprocessing and class names (a label it never saw is an error)."""
    cfg = loaded.config.data
    if is_table(path) and loaded.preprocessing is not None:
        check_data_file(path, str(path))
        return read_for_run(path, loaded.preprocessing, loaded.class_names, cfg, kind, str(path))
    if loaded.class_names is not None and not is_table(path):
        raw = read_user_file(path, cfg, str(path))
        x = check_inputs(raw["x"], raw["y"], str(path))
        lookup = {n: i for i, n in enumerate(loaded.class_names)}
        texts = np.asarray(raw["y"]).astype(str).astype(object)
        y = encode_labels(
            texts,
            lookup,
            loaded.class_names,
            str(path),
            lambda i: f" (example {i})",
            "classes the run was trained on",
        )
        return x, y
    return load_arrays(path, cfg, kind)


def _held_out(loaded) -> tuple[Split, str]:
    """The run's test split (else its validation split), rebuilt from its config and seed."""
    cfg, run = loaded.config, loaded.path
    if cfg.data is None:
        raise DataError(f"{run}: the run's config has no data section; pass --data")
    check_run_data(
        cfg.data,
        Path(loaded.info.get("data_base_dir", run)),
        run,
        "evaluate",
        ", or name a labelled file with --data",
    )
    ds = load_dataset(
        cfg.data,
        input_shape=tuple(cfg.model.input_shape),
        loss=loaded.chain.loss,
        seed=cfg.seed,
        base_dir=Path(loaded.info.get("data_base_dir", run)),
    )
    split_name, part = ("test", ds.test) if ds.test is not None and len(ds.test.x) else ("val", ds.val)
    if part is None or not len(part.x):
        raise DataError(f"{run}: the run's data has no test or validation split; pass --data")
    return Split(part.x, np.asarray(part.y)), split_name
