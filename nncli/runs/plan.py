"""See before you run: ``nncli train CONFIG --print-config`` and ``--dry-run``.

``resolved_config`` is the YAML a new run would save as its config.yaml (defaults filled in,
overrides applied); ``dry_run`` validates the config, reads and splits the data and builds the
model exactly as ``train`` would, then reports what would run — without creating a run folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nncli.config.yaml_positions import dump_yaml
from nncli.runs.session.config_compare import config_dict
from nncli.runs.session.prepare import prepare


def resolved_config(config: Path | str, overrides: Sequence[str] = (), name: str | None = None) -> str:
    """The fully resolved config of ``config`` with ``overrides`` (``path=value``), as YAML text."""
    from nncli.config.load import load_config

    cfg = load_config(Path(config), list(overrides)).config
    if name is not None:
        cfg = cfg.model_copy(update={"name": name})
    return dump_yaml(config_dict(cfg))


def dry_run(
    config: Path | str,
    overrides: Sequence[str] = (),
    name: str | None = None,
    init_from: Path | str | None = None,
) -> dict[str, Any]:
    """What ``train(config, overrides=..., init_from=...)`` would run: examples per split, steps,
    parameters and an upper estimate of memory (parameters, gradients and optimiser state, one
    batch's activations, the data). Raises the same UserErrors as ``train``; writes nothing."""
    from nncli.config.memory import batch_bytes

    session = prepare(Path(config), list(overrides), name, init_from=init_from)
    cfg, chain, tr = session.cfg, session.chain, session.trainer
    itemsize = np.dtype(cfg.dtype).itemsize
    params = int(chain.param_count)
    # parameters, their gradients and up to two optimiser moments (Adam)
    param_bytes = 4 * params * itemsize
    act = int(batch_bytes(chain, cfg.data.batch_size, cfg.dtype))
    data = 0
    for split in ("train", "val", "test"):
        part = getattr(session.dataset, split, None)
        if part is not None:
            data += int(np.asarray(part.x).nbytes + np.asarray(part.y).nbytes)
    return {
        "name": cfg.name,
        "examples": dict(session.data_info["sizes"]),
        "batch_size": cfg.data.batch_size,
        "steps": int(tr.total_steps),
        "steps_per_epoch": int(tr.steps_per_epoch),
        "parameters": params,
        "memory_bytes": {
            "parameters": param_bytes,
            "activations": act,
            "data": data,
            "total": param_bytes + act + data,
        },
    }
