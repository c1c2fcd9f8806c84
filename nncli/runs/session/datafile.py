"""The data file a run trains on: where it is, and whether it is still the same file.

A run's saved config.yaml must train again from any working directory, on the same data. So a new
run saves ``data.source`` as the file's absolute path and adds ``data.sha256``, the SHA-256 of the
file's bytes when training started. Whenever a config with ``data.sha256`` is trained (the saved
config re-run, ``--resume``, or a config whose author pinned the data), the file is hashed again
before it is read, and a different file is refused with one placed line saying how to accept it
(remove the key, or ``--set data.sha256=null``). Built-in and synthetic sources are not files and
are left as they are.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nncli.core.errors import DataError

_CHUNK = 1 << 20


def data_file(data_cfg, base_dir: Path) -> Path | None:
    """The file ``data.source`` names, relative paths joined to ``base_dir``; None for a registered
    data source (mnist1d, spirals, ...) or a path no file can have."""
    import nncli.training.sources  # noqa: F401  (registers the built-in sources)
    from nncli.core.registry import data_sources

    name = data_cfg.source.strip()
    if data_sources.canonical(name) is not None or "\0" in name:
        return None
    path = Path(name).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of ``path``'s bytes, read in 1 MiB pieces; None when it is not a readable
    regular file (the data reader then says what is wrong with it)."""
    h = hashlib.sha256()
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def check_fingerprint(data_cfg, path: Path | None, resuming: bool = False) -> str | None:
    """The SHA-256 of the data file ``path`` (None when there is none); a DataError on
    ``data.sha256`` (the caller places it) when the config records another one. ``resuming``: the
    config is a run's being resumed, which must continue on the data it started with."""
    if path is None:
        if data_cfg.sha256 is not None:
            raise DataError(
                f"data.source '{data_cfg.source}' is a built-in dataset, not a file: there is no file to "
                f"fingerprint; remove data.sha256",
                field="data.sha256",
            )
        return None
    sha = file_sha256(path)
    want = data_cfg.sha256
    if want is not None and not path.exists() and not resuming:
        raise DataError(
            f"{path}: no such file; this config pins its data by SHA-256 ({want[:12]}…): if the "
            f"file moved, give its new place with --set data.source=/absolute/path/{path.name} (the "
            f"file there must have the same bytes)",
            field="data.source",
        )
    if want is not None and sha is not None and sha != want:
        accept = (
            "a resumed run continues on the data it started with: put the file back, or start a new "
            "run from this one's weights (--init-from RUN)"
            if resuming
            else "to train on the file as it is now, remove data.sha256 from the config or add "
            "--set data.sha256=null"
        )
        raise DataError(
            f"{path}: the data file changed since its fingerprint was recorded (sha256 {want[:12]}…, "
            f"now {sha[:12]}…); {accept}",
            field="data.sha256",
        )
    return sha


def check_run_data(data_cfg, base_dir: Path, run: Path, purpose: str, instead: str = "") -> None:
    """DataError unless the data file a run trained on still has the bytes its config pinned
    (``data.sha256``): its held-out rows, rebuilt from the file with the run's seed, would otherwise
    be other rows than training held out. ``purpose`` says what needed them ("evaluate"), ``instead``
    what else the user can do (", or name a labelled file with --data")."""
    path = data_file(data_cfg, base_dir)
    want = data_cfg.sha256
    if path is None or want is None:
        return
    sha = file_sha256(path)
    if sha is not None and sha != want:
        raise DataError(
            f"{path}: the data file changed since run {run.name} trained on it (sha256 {want[:12]}…, now "
            f"{sha[:12]}…); cannot {purpose} on the run's held-out rows: put the file back{instead}"
        )


def pinned(cfg, path: Path | None, sha: str | None):
    """``cfg`` with ``data.source`` as ``path``'s absolute path and ``data.sha256`` = ``sha``:
    the config a run saves, which trains again from any folder on the same bytes."""
    if path is None or sha is None:
        return cfg
    data = cfg.data.model_copy(update={"source": str(path.resolve()), "sha256": sha})
    return cfg.model_copy(update={"data": data})
