"""Which files in a run folder are nncli's own, and refusing outputs that would overwrite a run.

A run folder may come from someone else: ``check_own_files`` refuses a link or a FIFO planted in
place of a file nncli writes there, and ``check_output`` keeps an export or a plot from landing on
a run's own files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nncli.runs.folder.run_dir import RUN_FILE, RunError

#: the files nncli writes directly in a run folder (checkpoints/ holds the checkpoint files)
WRITTEN_FILES = (
    "config.yaml",
    RUN_FILE,
    "metrics.jsonl",
    "watch.jsonl",
    "summary.json",
    ".lock",
    "curves.png",
)


def check_own_files(folder: Path | str) -> None:
    """RunError unless every file nncli writes in ``folder`` is a regular file inside it (or absent).

    A run folder may come from someone else: a symbolic link (``metrics.jsonl`` → ``~/.bashrc``,
    ``checkpoints`` → ``/etc``) or a FIFO planted in it must be refused before anything is written,
    not followed. Checked before a resume; the writers open with ``O_NOFOLLOW`` as well.
    """
    import stat

    folder = Path(folder)
    ckpts = folder / "checkpoints"
    paths = [folder / n for n in WRITTEN_FILES] + [ckpts]
    try:
        if stat.S_ISDIR(os.lstat(ckpts).st_mode):
            paths += sorted(ckpts.iterdir())
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise RunError(f"{ckpts}: cannot read the checkpoints folder ({exc.strerror})") from None
    for path in paths:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise RunError(f"{path}: cannot check this file of the run ({exc.strerror})") from None
        if stat.S_ISLNK(mode):
            raise RunError(
                f"{path}: is a symbolic link; a run folder must hold its own files "
                f"(nncli never writes through a link)"
            )
        want_dir = path == ckpts
        if (stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)) is False:
            kind = "a folder" if want_dir else "a regular file"
            raise RunError(
                f"{path}: is not {kind}; this run folder was modified by something other than nncli"
            )


def holding_run(path: Path) -> Path | None:
    """The run folder ``path`` lies in (the nearest ancestor that is one), or None.

    Wider than ``run_dir.is_run_dir`` on purpose: a folder with config.yaml and metrics.jsonl but
    no run.json yet (a run being started, or one whose run.json was lost) is protected too."""
    for folder in path.parents:
        if (folder / "config.yaml").is_file() and (
            (folder / RUN_FILE).is_file() or (folder / "metrics.jsonl").is_file()
        ):
            return folder
    return None


def check_output(out: Path | str, *, force: bool, allowed: Callable[[Path], bool], allowed_text: str) -> Path:
    """``out`` as an absolute path once it is safe to write there; RunError (exit 2) otherwise.

    Refused: a path inside a run folder that ``allowed(path relative to the run)`` rejects (so an
    export or a plot can never overwrite a checkpoint or config.yaml of a run), a path that reaches
    into a run folder through a symbolic link, or that passes a link inside one, and an existing
    file unless ``force``. Checked both as written and with every link resolved.
    """
    target = Path(os.path.abspath(out))
    for path in dict.fromkeys([target, target.resolve()]):
        run = holding_run(path)
        if run is None:
            continue
        rel = path.relative_to(run)
        if not allowed(rel):
            raise RunError(
                f"{out}: inside the run folder {run}; nncli writes there only {allowed_text}; "
                f"choose a path outside the run folder"
            )
        cur = run
        for part in rel.parts:
            cur = cur / part
            if os.path.islink(cur):
                raise RunError(f"{cur}: a symbolic link inside a run folder; nncli does not write through it")
    if os.path.isdir(target):
        raise RunError(f"{out}: is a folder; give a file name")
    if os.path.lexists(target) and not force:
        raise RunError(f"{out}: already exists; pass --force to replace it")
    return target
