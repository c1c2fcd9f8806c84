"""A trained run, loaded for use: its config, the chain with a checkpoint's weights, its preprocessing.

    run = nncli.load_run("runs/mnist1d_cnn-20260101-120000")        # best checkpoint (else last)
    run.predict(x)                 # standardised as in training; class ids for classifiers
    run.scores(x)                  # the model's raw outputs (logits, regression values)
    run.predict(run.encode({"size": [150], "city": ["north"]}))   # a run trained on a table

For a run trained on a table (.csv, .parquet), ``x`` holds the encoded inputs (numbers, one-hot
columns, missing cells filled: ``encode``), before standardisation, which ``predict`` applies.

Weights are read through ``nncli.runs.checkpoint.load_weights`` (format marker and checksum
verified) and applied with the architecture check of ``apply_weights``; loading only reads, so it
can run beside the process still training the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import UserError
from nncli.core.kernels.denormals import flushing
from nncli.runs.checkpoint import apply_weights, load_weights, weights_path
from nncli.runs.folder.run_dir import require_run
from nncli.runs.folder.run_info import read_run
from nncli.training.tables.spec import FORMAT

CHECKPOINTS = ("best", "last")
EVAL_BATCH = 1024


def check_checkpoint_name(which: str | None) -> None:
    if which not in (*CHECKPOINTS, None):
        raise UserError(f"--checkpoint must be 'best' or 'last', got {which!r}")


def pick_checkpoint(run: Path, which: str | None) -> str:
    """``which``, checked; None means ``best``, or ``last`` when the run has no best yet."""
    check_checkpoint_name(which)
    if which is None:
        return "best" if weights_path(run / "checkpoints", "best").exists() else "last"
    return which


@dataclass
class LoadedRun:
    """A run folder's model, ready to predict. Built by ``load_run``."""

    path: Path
    loaded: Any  # nncli.config.load.LoadedConfig: the config with the place of every key
    chain: Any  # nncli.core.chain.Chain in eval mode, with the checkpoint's weights and the loss
    checkpoint: str  # "best" or "last"
    step: int  # the training step the checkpoint was written at
    weights_file: Path
    info: dict[str, Any] = field(default_factory=dict)  # run.json

    @property
    def config(self):
        """The run's resolved config (``nncli.config.schema.Config``)."""
        return self.loaded.config

    @property
    def standardization(self) -> dict[str, np.ndarray] | None:
        """The training split's per-feature ``mean`` and ``std``, or None when the run did not standardise."""
        stats = (self.info.get("data") or {}).get("standardization")
        if not isinstance(stats, dict) or "mean" not in stats or "std" not in stats:
            return None
        return {"mean": np.asarray(stats["mean"]), "std": np.asarray(stats["std"])}

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        """How raw table columns become the model's inputs (run.json ``data.preprocessing``, the
        format of ``nncli.training.tables.spec``), or None for a run trained on arrays."""
        spec = (self.info.get("data") or {}).get("preprocessing")
        return spec if isinstance(spec, dict) and spec.get("format") == FORMAT else None

    def encode(self, columns) -> np.ndarray:
        """Raw table columns → the inputs ``predict`` takes (N, n_inputs), with the run's
        preprocessing: ``columns`` maps each input column's name (its 0-based index when the
        training file had no header) to its N raw values — numbers (NaN: missing) or texts.

            run.predict(run.encode({"size": [150, 80], "age": [20, None], "city": ["north", "south"]}))
        """
        from nncli.core.errors import DataError, did_you_mean
        from nncli.training.tables.encode import apply_preprocessing

        spec = self.preprocessing
        if spec is None:
            raise UserError(
                f"{self.path}: the run was trained on arrays, not a table; pass predict() the array"
            )
        values = []
        for entry in spec["inputs"]:
            key = entry["column"] if entry["column"] is not None else entry["index"]
            if key not in columns:
                raise DataError(f"no column {key!r} (an input of the run){did_you_mean(str(key), columns)}")
            raw = list(columns[key])
            if entry["kind"] == "onehot":
                texts = np.empty(len(raw), dtype=object)
                texts[:] = [None if v is None else str(v) for v in raw]
                values.append(texts)
            else:
                values.append(np.array([np.nan if v is None else v for v in raw], dtype=np.float64))
        return apply_preprocessing(spec, values)

    @property
    def class_names(self) -> list[str] | None:
        """The class names the run saved (run.json ``data.class_names``), or None (class ids)."""
        names = (self.info.get("data") or {}).get("class_names")
        return [str(n) for n in names] if isinstance(names, list) and names else None

    @property
    def classifier(self) -> bool:
        return getattr(self.chain.loss, "target_kind", "real") in ("class", "binary")

    def preprocess(self, x: np.ndarray, where: str = "inputs") -> np.ndarray:
        """Raw inputs (N, ...) as the model takes them: standardised with the training statistics,
        reshaped to (N, *input_shape)."""
        from nncli.training.standardization import apply_standardization
        from nncli.training.userdata import fit_input_shape

        x = apply_standardization(x, self.info.get("data") or {})
        return fit_input_shape(x, self.chain.input_shape, where)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The model's raw outputs h (N, *output_shape) for raw inputs ``x``, computed in batches."""
        x = np.ascontiguousarray(self.preprocess(x), dtype=self.chain.dtype)
        self.chain.eval()
        with flushing():  # subnormals as in training (``kernels.denormals``): the same outputs
            parts = [self.chain.forward(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)]
        if not parts:
            return np.empty((0, *self.chain.output_shape()), dtype=self.chain.dtype)
        return np.concatenate(parts)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for raw inputs ``x``: class ids (N,) for classifiers (the loss's ``predict``,
        e.g. the argmax of the logits), else the raw outputs."""
        h = self.scores(x)
        return h if self.chain.loss is None else self.chain.loss.predict(h)


def load_run(
    run: Path | str, checkpoint: str | None = None, *, dtype=None, with_loss: bool = True
) -> LoadedRun:
    """The run at ``run`` with the weights of checkpoint ``checkpoint`` ("best" or "last"; None: best,
    or last when the run has no best yet).

    ``dtype`` defaults to the run's; RunError for a folder that is not a run, CheckpointError for a
    missing, damaged or foreign checkpoint.
    """
    from nncli.config.build import build_chain
    from nncli.config.load import load_config

    check_checkpoint_name(checkpoint)
    run = require_run(run)
    which = pick_checkpoint(run, checkpoint)
    info = read_run(run)
    loaded = load_config(run / "config.yaml", [])
    cfg = loaded.config
    chain = build_chain(
        loaded, dtype=cfg.dtype if dtype is None else dtype, seed=cfg.seed, with_loss=with_loss
    )
    path = weights_path(run / "checkpoints", which)
    weights, meta = load_weights(path)
    apply_weights(chain, weights, path)
    class_weights = (info.get("data") or {}).get("class_weights")
    if chain.loss is not None and class_weights:
        chain.loss.set_class_weights(np.asarray(class_weights, dtype=np.float64))
    return LoadedRun(run, loaded, chain.eval(), which, int(meta.get("step", 0)), path, info)
