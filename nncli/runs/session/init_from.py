"""A new run that starts from another run's weights (fine-tuning): ``--init-from RUN[:best|last]``.

    nncli train configs/houses_small_lr.yaml --init-from runs/houses-20260101-120000:best

Only the weights (parameters and buffers such as BatchNorm's running statistics) are taken; the
optimiser, the schedule and the step count start afresh, and the new run standardises its inputs
with the statistics of its own training split. Every parameter of the new model must exist in the
source checkpoint with the same shape (the dtype may differ: values are cast), and the source may
hold nothing more; the first mismatch is refused with an error placed at the layer of the config
that makes it (``cfg.yaml:9:7: model.layers[2]: ... weight has shape (3, 8) in RUN, this layer
makes (4, 8)``). The new run's run.json records the source run, the checkpoint, the step it was
written at and the SHA-256 of the weights file, which a resume before the first checkpoint checks
again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import CheckpointError, UserError
from nncli.runs.checkpoint import load_weights, weights_path
from nncli.runs.folder.run_dir import require_run
from nncli.runs.loaded_run import CHECKPOINTS, pick_checkpoint
from nncli.runs.session.datafile import file_sha256


@dataclass
class InitFrom:
    """A source run's checkpoint, read and verified."""

    run: Path
    checkpoint: str  # "best" or "last"
    step: int
    sha256: str  # of the weights file's bytes
    weights: dict[str, np.ndarray]

    @property
    def label(self) -> str:
        return f"{self.run}:{self.checkpoint}"

    def record(self) -> dict[str, Any]:
        """What run.json keeps of it."""
        return {
            "run": str(self.run.resolve()),
            "checkpoint": self.checkpoint,
            "step": self.step,
            "weights_sha256": self.sha256,
        }


def split_spec(spec: str | Path) -> tuple[Path, str | None]:
    """``RUN``, ``RUN:best`` or ``RUN:last`` → (run folder, checkpoint or None). A folder whose own
    name has a colon is taken whole."""
    text = str(spec)
    if Path(text).is_dir() or ":" not in text:
        return Path(text), None
    run, _, which = text.rpartition(":")
    if which not in CHECKPOINTS:
        raise UserError(
            f"--init-from {text}: unknown checkpoint '{which}'; expected RUN, RUN:best or RUN:last"
        )
    return Path(run), which


def read_init(run_path: str | Path, which: str | None = None, expect_sha256: str | None = None) -> InitFrom:
    """The weights of checkpoint ``which`` (None: best, else last) of the run at ``run_path``,
    checksum verified (``split_spec`` reads ``RUN[:best|last]``). With ``expect_sha256`` the
    weights file must still have those bytes."""
    try:
        run = require_run(run_path)
    except UserError as exc:  # RunError: "RUN: no such run folder", "RUN: not a run folder ..."
        raise type(exc)(f"--init-from {exc.message}") from None
    which = pick_checkpoint(run, which)
    path = weights_path(run / "checkpoints", which)
    sha = file_sha256(path)
    if sha is None:
        raise CheckpointError(
            f"--init-from {run}:{which}: {path} not found (that checkpoint was never written)"
        )
    if expect_sha256 is not None and sha != expect_sha256:
        raise CheckpointError(
            f"--init-from {run}:{which}: {path} changed since this run started from it "
            f"(sha256 {expect_sha256[:12]}…, now {sha[:12]}…); start a new run instead"
        )
    weights, meta = load_weights(path)
    step = int(meta["step"]) if str(meta.get("step", "")).isdigit() else 0
    return InitFrom(run, which, step, sha, weights)


def apply_init(chain, init: InitFrom, loaded) -> None:
    """Copy ``init``'s weights into ``chain`` (built from the config ``loaded``), cast to its dtype.
    A missing, extra or differently shaped array: CheckpointError placed at the config's layer."""
    own = chain.state_arrays()
    kinds = {name: type(m).__name__ for name, m in chain.named_modules()}
    for key, p in own.items():
        module, _, param = key.rpartition(".")
        got = init.weights.get(key)
        where = f"--init-from {init.label}: layer {module} ({kinds.get(module, '?')}) {param}"
        if got is None:
            raise loaded.locate(
                CheckpointError(f"{where}: the checkpoint has no such array (its model differs here)"),
                _layer_field(module),
            )
        if got.shape != p.shape:
            raise loaded.locate(
                CheckpointError(
                    f"{where} has shape {tuple(got.shape)} in the checkpoint, but this layer makes "
                    f"{tuple(p.shape)}"
                ),
                _layer_field(module),
            )
    extra = sorted(k for k in init.weights if k not in own)
    if extra:
        raise loaded.locate(
            CheckpointError(
                f"--init-from {init.label}: the checkpoint has {extra[0]}"
                f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}, which this model "
                f"does not have; the models must have the same layers"
            ),
            "model.layers",
        )
    for key, p in own.items():
        p[...] = init.weights[key]


def _layer_field(module: str) -> str:
    """The config field of a module's state-dict name: ``3`` → ``model.layers[3]``,
    ``3.body.0`` → ``model.layers[3].layers[0]`` (a Residual's body)."""
    field = "model"
    for index in re.findall(r"(?:^|\.)(\d+)", module):
        field += f".layers[{index}]"
    return field
