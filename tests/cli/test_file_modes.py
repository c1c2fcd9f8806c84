"""Run files follow the process umask like every other file: the atomically written ones (config.yaml,
run.json, summary.json, written through a mkstemp temp file, which is 0600) included."""

from __future__ import annotations

import os
import stat

import pytest
from support import run_main


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_every_run_file_follows_the_umask(tmp_path, tiny_config_file, umask):
    previous = os.umask(umask)
    try:
        res = run_main("train", tiny_config_file, "--runs-dir", tmp_path / "runs", "-q", "--no-curves")
    finally:
        os.umask(previous)
    assert res.code == 0, res
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.yaml", "run.json", "summary.json", "metrics.jsonl"} <= names
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
