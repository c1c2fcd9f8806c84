"""Inspecting a config's model: the library call under ``nncli inspect``.

    report = nncli.inspect("configs/mnist1d_cnn.yaml", trace=True)
    report.summary.params, [r.to_dict() for r in report.trace.rows]

    report = nncli.inspect(run="runs/digits_mlp-20260101-120000", trace=True)   # a trained run

Needs no data: shapes come from the config. ``trace`` runs one batch forward and backward in
float64 (the config's data when it loads, else a seeded random batch); ``timing`` times each
module's forward and backward (median of ``REPEATS`` steps after ``WARMUP`` warm-up steps).
With ``run`` the config is the run's own and ``trace`` uses a checkpoint's weights and a batch of
the run's data, rebuilt as training split it (its validation split, or its training split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import UserError
from nncli.diagnostics.summary import Summary, build_from_config, summarize

#: timing: steps timed (their median is shown) after untimed warm-up steps; the median shrugs off
#: the occasional stall of a busy machine
REPEATS, WARMUP = 10, 2


@dataclass
class Trace:
    batch: str  # what the batch was: "N examples of <source>" or "random N=…, seed …"
    loss: float | None
    rows: list  # diagnostics.tracing.TraceRow, one per module and one for the loss

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "loss": self.loss, "modules": [r.to_dict() for r in self.rows]}


@dataclass
class Timing:
    batch: str
    blas_threads: int
    total_ms: float
    dtype: str
    rows: list  # diagnostics.timing.TimeRow, one per module

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "blas_threads": self.blas_threads,
            "total_ms": self.total_ms,
            "modules": [r.to_dict() for r in self.rows],
        }


@dataclass
class Inspection:
    """What ``nncli inspect`` shows. ``to_dict()`` is its ``--json`` output."""

    summary: Summary
    trace: Trace | None = None
    time: Timing | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": self.summary.to_dict()}
        if self.trace is not None:
            out["trace"] = self.trace.to_dict()
        if self.time is not None:
            out["time"] = self.time.to_dict()
        return out


#: the splits ``inspect(run=…, split=…)`` traces a batch of
SPLITS = ("val", "train")


def inspect(
    config: str | Path | None = None,
    *,
    run: str | Path | None = None,
    checkpoint: str | None = None,
    split: str = "val",
    overrides: Sequence[str] = (),
    batch: int | None = None,
    dtype: str | None = None,
    trace: bool = False,
    order: str = "forward",
    timing: bool = False,
    seed: int = 0,
    threads: int | None = None,
) -> Inspection:
    """Every module of ``config``'s model: shapes, parameters, multiply-adds and saved activations for
    a batch of ``batch`` (default: data.batch_size, or 64), in ``dtype`` (default: the config's).

    ``trace`` adds one batch forward and backward (rows in ``order``: "forward", the modules then the
    loss, or "backward", as backprop computes them), ``timing`` per-module milliseconds with ``threads``
    BLAS threads (None: BLAS's own setting); a batch that cannot fit in memory is refused first.

    ``run`` (instead of ``config``): the trained run's model, and ``trace`` with the weights of its
    checkpoint ``checkpoint`` ("best" or "last"; None: best, else last) on the first ``batch``
    examples of its ``split`` ("val", or "train"; "val" falls back to "train" when the run has no
    validation split), in training mode, as a training step would see them.
    """
    from nncli.config.memory import check_batch_fits

    if order not in ("forward", "backward"):
        raise UserError(f"--order: expected forward or backward, got '{order}'")
    if dtype is not None and dtype not in ("float32", "float64"):
        raise UserError(f"--dtype: expected float32 or float64, got '{dtype}'")
    if split not in SPLITS:
        raise UserError(f"--split: expected val or train, got '{split}'")
    if run is not None:
        config = _run_config(run, config, overrides, checkpoint)
    elif config is None:
        raise UserError("give a CONFIG file to inspect, or --run RUN_DIR for a trained run")
    elif checkpoint is not None:
        raise UserError("--checkpoint needs --run RUN_DIR")
    config = str(config)
    loaded, chain = build_from_config(config, list(overrides), dtype=dtype, seed=seed, with_loss=True)
    cfg = loaded.config
    if batch is None:
        batch = cfg.data.batch_size if cfg.data is not None else 64
    if trace or timing:
        check_batch_fits(
            loaded, chain, batch, np.float64, what="the --trace/--time batch", field="model.input_shape"
        )
    out = Inspection(summarize(chain, batch=batch, loaded=loaded, dtype=dtype or cfg.dtype, source=config))
    if trace:
        from nncli.diagnostics.tracing import run_trace

        if run is not None:
            chain64, x, y, where = _run_batch(run, checkpoint, split, batch)
        else:
            _, chain64 = build_from_config(
                config, list(overrides), dtype="float64", seed=seed, with_loss=True
            )
            x, y, where = _batch(loaded, chain64, batch, seed)
        rows, J = run_trace(chain64, x, y, order=order)
        out.trace = Trace(where, J, rows)
    if timing:
        out.time = _time(loaded, chain, batch, seed, threads)
    return out


def _run_config(run, config, overrides, checkpoint) -> Path:
    """The resolved config.yaml of the run folder ``run``; RunError when it is not a run folder."""
    from nncli.runs.folder.run_dir import require_run
    from nncli.runs.loaded_run import check_checkpoint_name

    if config is not None:
        raise UserError("give either a CONFIG file or --run RUN_DIR, not both")
    if overrides:
        raise UserError("--set cannot change a trained run's model; inspect its config file instead")
    check_checkpoint_name(checkpoint)
    return require_run(run) / "config.yaml"


def _run_batch(run, checkpoint: str | None, split: str, n: int):
    """(float64 chain with the checkpoint's weights in training mode, x, y, description): the first
    ``n`` examples of the run's ``split``, split and standardised as its training did."""
    from nncli.core.errors import DataError
    from nncli.runs.loaded_run import load_run
    from nncli.runs.session.datafile import check_run_data
    from nncli.training.data import load_dataset

    lr = load_run(run, checkpoint, dtype="float64")
    cfg, chain = lr.config, lr.chain
    if cfg.data is None:
        raise DataError(f"{lr.path}: the run's config has no data section to take a batch from")
    check_run_data(cfg.data, Path(lr.info.get("data_base_dir", lr.path)), lr.path, "trace")
    ds = load_dataset(
        cfg.data,
        input_shape=tuple(chain.input_shape),
        loss=chain.loss,
        seed=cfg.seed,
        base_dir=Path(lr.info.get("data_base_dir", lr.path)),
        output_shape=tuple(chain.output_shape()),
    )
    part, name = ds.val, "validation"
    if split == "train" or part is None or len(part.x) == 0:
        part, name = ds.train, "training" + (" (the run has no validation split)" if split == "val" else "")
    x, y = np.asarray(part.x[:n], dtype=np.float64), np.asarray(part.y[:n])
    where = (
        f"{len(x)} examples of the {name} split of {cfg.data.source}; run {lr.path.name}, "
        f"{lr.checkpoint} checkpoint (step {lr.step}), training mode"
    )
    return chain.train(), x, y, where


def _time(loaded, chain, batch: int, seed: int, threads: int | None) -> Timing:
    from threadpoolctl import threadpool_info, threadpool_limits

    from nncli.diagnostics.timing import profile_chain

    x, y, where = _batch(loaded, chain, batch, seed, random_only=True)
    with threadpool_limits(limits=threads, user_api="blas"):
        blas = max(
            (p.get("num_threads", 1) for p in threadpool_info() if p.get("user_api") == "blas"), default=1
        )
        rows, total = profile_chain(chain, x.astype(chain.dtype), y, repeats=REPEATS, warmup=WARMUP)
    return Timing(where, blas, total, np.dtype(chain.dtype).name, rows)


def _batch(loaded, chain, batch, seed, random_only=False):
    """(x, y, description): the config's data when it loads, else a seeded random batch."""
    from nncli.diagnostics.gradcheck_config import random_targets

    cfg = loaded.config
    if cfg.data is not None and not random_only:
        try:
            from nncli.diagnostics.gradcheck_config import load_batch

            x, y = load_batch(loaded, chain, batch)
            return x, y, f"{len(x)} examples of {cfg.data.source}"
        except (UserError, OSError):
            pass  # fall back to random: inspect must work with no data present
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *chain.input_shape))
    y = random_targets(chain.loss, chain.output_shape(), batch, rng) if chain.loss is not None else None
    return x, y, f"random N={batch}, seed {seed}"
