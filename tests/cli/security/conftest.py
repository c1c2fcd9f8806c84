"""Run folders, names and signals from someone else: nothing runs, nothing outside is written, nothing crashes.

Every case goes through the real command line on tiny runs: ``python -m nncli`` in a subprocess, or
(batches of refusals) a process forked from one that has imported nncli (``forked_cli``). A
run folder is untrusted input: its name may be crafted, its files may be links, damaged or edited.
The guarantees checked here are listed, with these test names, in docs/reliability.md.

One theme per file: crafted names, links and files an export must not overwrite
(``test_names_links_and_overwrites``), damaged and edited run folders (``test_damaged_run_folders``),
signals at every phase of a run (``test_signal_phases``). What they import by name is in
``tests/security_runs.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from security_runs import CONFIG, StopAt

from nncli.runs.session.prepare import prepare
from nncli.runs.train_run import run_session


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A config, a completed run and a run interrupted at step 4 of 8 (resumable)."""
    work = tmp_path_factory.mktemp("sec")
    cfg = work / "sec.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    for name, stop in (("done", None), ("stopped", 4)):
        s = prepare(cfg, [], name=name)
        run_session(s, work / "runs", callbacks=[StopAt(stop)] if stop else [])
        s.folder.rename(work / name)
    shutil.rmtree(work / "runs")
    return work
