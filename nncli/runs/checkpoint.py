"""Checkpoints: weights in safetensors under the chain's ``torch.nn.Sequential`` names, plus a sidecar.

``<name>.safetensors`` holds only the parameters and buffers (BatchNorm's running statistics), keyed and shaped like ``chain.state_dict()``
(``0.weight``, ``0.bias``, …), so that

    torch.nn.Sequential(...).load_state_dict(safetensors.torch.load_file(path), strict=True)

works. ``<name>.state.safetensors`` holds what a resume needs besides the weights: the optimiser's
arrays (keys ``optimizer/<key>``), the early-stopping best weights (``es_best/<name>``) and, as JSON in the metadata, the step, epoch, best-metric and
early-stopping state, the running train-loss sums, the RNG states of any module that draws random
numbers (dropout) and the hash of the resolved config the run was made with.

Both files carry the same random ``token`` and a SHA-256 over every byte a load uses: the tensors
(names, dtypes, shapes, data) and all the metadata (format, token, step, the training state with
the RNG states). The sidecar also records the SHA-256 of its weights file. So a truncated, damaged
or edited file (one changed digit of the step), or a weights file paired with the sidecar of
another save, is refused with a clear error instead of silently resuming from something else.
The checksum detects damage and edits; it is not a signature: whoever can write the folder can
also write a new, consistent checkpoint.

A save is a small two-file transaction, so that a kill -9, a full disk or a second Ctrl-C at any
instant leaves a checkpoint that loads:

1. stage: write both new files in full under hidden names ``.<file>.pending`` (fsync each); a
   failure here removes them and leaves the previous pair untouched;
2. commit: ``os.replace`` the sidecar, then the weights. Between the two renames the sidecar is
   new and the weights old, but the new weights wait, complete, in their pending file with the
   sidecar's token: ``recover`` (run by every load and save) finishes the rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.errors import CheckpointError
from nncli.runs.atomic import fsync_dir, write_staged

# re-exported: readers of a checkpoint apply what they load with these
from nncli.training.state import apply_weights, group, grouped, rng_states, set_rng_states  # noqa: F401

FORMAT = "nncli-checkpoint-2"
#: the first format, whose checksum covered the tensors only: its weights still load (eval,
#: export), its training state is not trusted for a resume
FORMAT_1 = "nncli-checkpoint-1"


@dataclass
class Checkpoint:
    weights: dict[str, np.ndarray]
    arrays: dict[str, np.ndarray]  # the sidecar's tensors, keys "<group>/<name>"
    state: dict[str, Any]
    path: Path


def weights_path(folder: Path | str, name: str) -> Path:
    return Path(folder) / f"{name}.safetensors"


def state_path(folder: Path | str, name: str) -> Path:
    return Path(folder) / f"{name}.state.safetensors"


def digest(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in sorted-name order, then over every
    metadata entry but ``sha256`` itself (lengths included, so no two inputs hash alike)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        a = np.asarray(tensors[k], order="C")  # ascontiguousarray would make 0-d arrays 1-d
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    meta = metadata or {}
    for k in sorted(meta):
        if k != "sha256":
            key, value = str(k).encode(), str(meta[k]).encode()
            h.update(b"meta|%d|%s|%d|%s" % (len(key), key, len(value), value))
    return h.hexdigest()


def _encode(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> tuple[bytes, str]:
    """The safetensors bytes of ``tensors`` with ``metadata`` and their checksum; and the checksum."""
    from safetensors.numpy import save

    arrays = {k: np.asarray(v, order="C") for k, v in tensors.items()}
    sha = digest(arrays, metadata)
    return save(arrays, metadata={**metadata, "sha256": sha}), sha


def pending_path(path: Path) -> Path:
    """Where the next version of ``path`` is staged before it is renamed into place."""
    return path.with_name(f".{path.name}.pending")


def save_checkpoint(
    folder: Path | str,
    name: str,
    weights: dict[str, np.ndarray],
    arrays: dict[str, Any],
    state: dict[str, Any],
) -> Path:
    """Save checkpoint ``name`` (weights + sidecar) as one transaction; return the weights path.

    On any error (OSError such as ENOSPC, KeyboardInterrupt) the previous checkpoint still loads
    and no staged file is left behind, unless the error came between the two renames, in which
    case the next load completes the new checkpoint instead.
    """
    token = uuid.uuid4().hex
    meta = {"format": FORMAT, "token": token, "step": str(int(state.get("step", 0)))}
    main, main_sha = _encode(weights, meta)
    side, _ = _encode(
        {k: np.asarray(v) for k, v in arrays.items()},
        {**meta, "weights_sha256": main_sha, "state": json.dumps(state, allow_nan=True)},
    )
    wpath, spath = weights_path(folder, name), state_path(folder, name)
    recover(folder, name)  # a commit left half done must be finished before restaging
    wpend, spend = pending_path(wpath), pending_path(spath)
    try:
        write_staged(spend, side)
        write_staged(wpend, main)
    except BaseException:
        for p in (spend, wpend):
            p.unlink(missing_ok=True)
        raise
    fsync_dir(wpath.parent)  # both staged files are durable before the first rename
    os.replace(spend, spath)  # the commit point
    os.replace(wpend, wpath)
    fsync_dir(wpath.parent)
    return wpath


def _token(path: Path) -> str | None:
    """The ``token`` in the header of a safetensors file (unverified), or None if unreadable."""
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100_000_000:
                return None
            return (json.loads(fh.read(n)).get("__metadata__") or {}).get("token")
    except (OSError, ValueError, struct.error):
        return None


def has_checkpoint(folder: Path | str, name: str) -> bool:
    """Whether checkpoint ``name`` was ever committed (staged files alone do not count)."""
    return weights_path(folder, name).exists() or state_path(folder, name).exists()


def committed_weights(folder: Path | str, name: str) -> Path:
    """The file holding the weights that belong with checkpoint ``name``'s sidecar (read-only).

    Normally ``<name>.safetensors``; the staged weights when a save stopped between its two
    renames (the sidecar's token then matches the staged file, not the old weights).
    """
    wpath, spath = weights_path(folder, name), state_path(folder, name)
    wpend = pending_path(wpath)
    if wpend.exists():
        side_token = _token(spath)
        if side_token is not None and _token(wpend) == side_token != _token(wpath):
            return wpend
    return wpath


def recover(folder: Path | str, name: str) -> None:
    """Finish a save of ``name`` that stopped between its renames, and drop stale staged files.

    Only the process writing the run calls this (a reader renaming files under a live writer
    would break that writer's next rename).
    """
    wpath, spath = weights_path(folder, name), state_path(folder, name)
    wpend, spend = pending_path(wpath), pending_path(spath)
    if not os.path.lexists(wpend) and not os.path.lexists(spend):
        return
    if committed_weights(folder, name) == wpend:
        os.replace(wpend, wpath)
        fsync_dir(wpath.parent)
    for p in (wpend, spend):  # what is left never reached its commit point
        p.unlink(missing_ok=True)


def _read(path: Path, resume: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of one safetensors file, with its SHA-256 verified."""
    from safetensors.numpy import load

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror})") from None
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        tensors = load(raw)
    except Exception as exc:  # safetensors raises its own error type for every malformed header
        raise CheckpointError(
            f"{path}: not a readable safetensors file, truncated or damaged ({exc})"
        ) from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    fmt = meta.get("format")
    if fmt == FORMAT_1 and not resume:
        expected = digest(tensors)
    elif fmt == FORMAT_1:
        raise CheckpointError(
            f"{path}: written by an older nncli whose checksum does not cover the "
            f"training state; it cannot be resumed (eval and export still read it)"
        )
    elif fmt == FORMAT:
        expected = digest(tensors, meta)
    else:
        raise CheckpointError(f"{path}: not an nncli checkpoint (no '{FORMAT}' marker)")
    if meta.get("sha256") != expected:
        raise CheckpointError(f"{path}: checksum mismatch, the file was modified or damaged")
    return tensors, meta


def load_weights(path: Path | str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Weights and metadata of ``path`` (verified)."""
    return _read(Path(path))


def load_checkpoint(folder: Path | str, name: str) -> Checkpoint:
    """Weights, optimiser arrays and training state of checkpoint ``name`` in ``folder`` (verified)."""
    wpath, spath = weights_path(folder, name), state_path(folder, name)
    weights, wmeta = _read(committed_weights(folder, name), resume=True)
    side, smeta = _read(spath, resume=True)
    if wmeta.get("token") != smeta.get("token") or wmeta.get("sha256") != smeta.get("weights_sha256"):
        raise CheckpointError(
            f"{wpath}: weights and {spath.name} come from different saves "
            f"(the process probably stopped between the two writes)"
        )
    try:
        state = json.loads(smeta["state"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{spath}: training state is missing or unreadable") from None
    check_state(state, spath)
    if state["step"] != _int(wmeta.get("step")):
        raise CheckpointError(
            f"{spath}: the training state's step {state['step']} is not the step "
            f"{wmeta.get('step')} of its weights"
        )
    return Checkpoint(weights, side, state, wpath)


def _int(text: Any) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _counts(v: Any) -> bool:
    """A confusion matrix as an evaluation record holds it: a list of rows of counts."""
    return isinstance(v, list) and all(
        isinstance(row, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in row)
        for row in v
    )


#: the training state's fields and the JSON types each may hold ("count": an int ≥ 0)
STATE_FIELDS = {
    "step": "count",
    "es_bad": "count?",
    "log_n": "count?",
    "eval_n": "count?",
    "skipped": "count?",
    "best_step": "count?",
    "best": "number?",
    "es_best": "number?",
    "log_sum": "number?",
    "eval_sum": "number?",
    "seconds": "number?",
    "last_eval": "object?",
    "best_eval": "object?",
    "rng": "object?",
    "config_sha256": "string?",
}


def check_state(state: Any, where: Path) -> None:
    """CheckpointError naming ``where`` unless ``state`` has the training state's fields and types."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: training state is not a JSON object")
    for key, kind in STATE_FIELDS.items():
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        if key not in state:
            if optional:
                continue
            raise CheckpointError(f"{where}: training state has no '{key}'")
        v = state[key]
        if v is None and optional:
            continue
        ok = {
            "count": isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "number": _number(v),
            "object": isinstance(v, dict),
            "string": isinstance(v, str),
        }[kind]
        if not ok:
            want = {
                "count": "a whole number ≥ 0",
                "number": "a number",
                "object": "an object",
                "string": "a string",
            }[kind]
            raise CheckpointError(f"{where}: training state '{key}' must be {want}, got {json.dumps(v)[:40]}")
    for rec in (state.get("last_eval"), state.get("best_eval")):
        if rec is not None and not all(
            isinstance(k, str) and (_number(v) or v is None or isinstance(v, str) or _counts(v))
            for k, v in rec.items()
        ):
            raise CheckpointError(f"{where}: training state holds an evaluation record with odd values")
    for mod, attrs in (state.get("rng") or {}).items():
        if not isinstance(attrs, dict) or not all(isinstance(v, dict) for v in attrs.values()):
            raise CheckpointError(f"{where}: training state has an unreadable random state for module {mod}")
