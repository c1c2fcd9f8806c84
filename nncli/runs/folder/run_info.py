"""run.json: the run's facts (status, seed, versions, times, command line, data info), its fields
type-checked when read back (``check_run_info``, ``read_run``) and rewritten atomically (``RunInfo``)."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from nncli.runs.atomic import atomic_write_json
from nncli.runs.folder.run_dir import RUN_FILE, RunError, iso, require_run, utc_now
from nncli.runs.folder.safe_read import read_json_object

STATUSES = ("running", "completed", "failed", "diverged", "interrupted")


def versions() -> dict[str, str]:
    from nncli._version import __version__

    return {"nncli": __version__, "numpy": np.__version__, "python": platform.python_version()}


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]]


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: run.json fields nncli reads back, and what each must be when present
RUN_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "status": ("one of " + ", ".join(STATUSES), lambda v: v in STATUSES),
    "seed": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "name": ("a string", lambda v: isinstance(v, str)),
    "dtype": ("a string", lambda v: isinstance(v, str)),
    "data_base_dir": ("a string", lambda v: isinstance(v, str) and "\0" not in v),
    "config_sha256": ("a string", lambda v: isinstance(v, str)),
    "command": ("a list of strings", _is_str_list),
    "overrides": ("a list of strings", _is_str_list),
    "resumes": ("a list of objects", lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v)),
    "extensions": (
        "a list of objects",
        lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    ),
    "init_from": (
        "an object with the strings run, checkpoint (best or last) and weights_sha256",
        lambda v: (
            isinstance(v, dict)
            and all(
                isinstance(v.get(k), str) and "\0" not in v[k]
                for k in ("run", "checkpoint", "weights_sha256")
            )
            and v["checkpoint"] in ("best", "last")
        ),
    ),
    "data": (
        "an object whose standardization holds 'mean' and 'std', finite arrays of one shape (std > 0)",
        lambda v: isinstance(v, dict) and _standardization_ok(v.get("standardization")),
    ),
}


def _standardization_ok(stats: Any) -> bool:
    if stats is None:
        return True
    if not isinstance(stats, dict):
        return False
    try:
        mean, std = (np.asarray(stats[k], dtype=np.float64) for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError):
        return False
    return mean.shape == std.shape and bool(
        np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()
    )


def check_run_info(data: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """``data`` (run.json's contents) after checking the type of every field nncli reads back."""
    for key, (want, ok) in RUN_FIELDS.items():
        if key in data and not ok(data[key]):
            raise RunError(
                f"{path}: '{key}' must be {want}, got {json.dumps(data[key])[:60]}"
                f"; the run folder was damaged or edited"
            )
    return data


def read_run(path: Path | str) -> dict[str, Any]:
    """run.json of the run at ``path``, its fields type-checked; RunError when ``path`` is not a run
    folder or run.json is unreadable or damaged (the message names the file)."""
    path = require_run(path)
    try:
        return check_run_info(read_json_object(path / RUN_FILE), path / RUN_FILE)
    except FileNotFoundError:
        raise RunError(f"{path}: not a run folder (expected {RUN_FILE} and config.yaml inside)") from None


class RunInfo:
    """run.json, rewritten atomically whenever a field changes (status, end time, resumes)."""

    def __init__(self, folder: Path, data: dict[str, Any]):
        self.folder = Path(folder)
        self.data = data

    @classmethod
    def start(
        cls,
        folder: Path,
        *,
        seed: int,
        argv: Iterable[str],
        overrides: list[str],
        data_info: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> RunInfo:
        info = cls(
            folder,
            {
                "status": "running",
                "seed": seed,
                "versions": versions(),
                "started": iso(utc_now()),
                "ended": None,
                "command": list(argv),
                "overrides": list(overrides),
                "data": data_info,
                "resumes": [],
                **(extra or {}),
            },
        )
        info.save()
        return info

    @classmethod
    def load(cls, folder: Path) -> RunInfo:
        return cls(folder, read_run(folder))

    def save(self) -> None:
        atomic_write_json(self.folder / RUN_FILE, self.data)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def finish(self, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        self.update(status=status, ended=iso(utc_now()), **fields)
