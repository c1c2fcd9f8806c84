"""A crafted run folder name runs no code in an export; no write goes through a link or outside
the run folder; export overwrites no run file, nor any file without ``--force``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from forked_cli import run_forked
from security_runs import copy_run
from support import assert_refused, folder_listing, run_main, run_many, run_nncli

# -- 1. names are data, never code ------------------------------------------------------------------------
#: closes the docstring, a ''' string and a "..." string, escapes, and breaks the line: each is code if pasted
HOSTILE_NAME = 'x"""' + "'''" + '\\"\n__import__("pathlib").Path("MARKER").touch() #{}\n"""'


def test_a_crafted_run_folder_name_never_runs_code_in_the_exported_file(work, tmp_path):
    pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    run = copy_run(work, "done", tmp_path / "runs", as_name=HOSTILE_NAME)
    out = tmp_path / "model.py"
    res = run_nncli("export", run, "-o", out, cwd=tmp_path)
    assert res.code == 0, res
    check = f"import runpy; assert runpy.run_path({str(out)!r})['RUN'] == {HOSTILE_NAME!r}"
    proc = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert not (tmp_path / "MARKER").exists()


# -- 2. no write outside the run folder, no link followed -------------------------------------------------
@pytest.mark.parametrize("resume_refused", [True, False], ids=["refused-resume", "resume"])
def test_resume_never_writes_through_a_lock_symlink(work, tmp_path, resume_refused):
    run = copy_run(work, "stopped", tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(victim)
    if resume_refused:  # refused for another reason too: the lock target must still be untouched
        (run / "config.yaml").write_text((run / "config.yaml").read_text() + "garbage: [\n")
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert_refused(res, ".lock" if not resume_refused else "")
    assert victim.read_text() == "precious\n"
    assert (run / ".lock").is_symlink()


@pytest.mark.parametrize(
    "planted",
    ["metrics.jsonl", "run.json", "summary.json", "checkpoints", "checkpoints/.last.safetensors.pending"],
)
def test_resume_refuses_any_symlink_in_the_run_folder(work, tmp_path, planted):
    run = copy_run(work, "stopped", tmp_path)
    victim = tmp_path / "victim"
    if planted == "checkpoints":
        shutil.copytree(run / "checkpoints", victim)
        shutil.rmtree(run / "checkpoints")
    else:
        victim.write_text("precious\n")
        if (run / planted).exists():
            shutil.copy(run / planted, victim)  # same content: only the link is wrong
            (run / planted).unlink()
    (run / planted).symlink_to(victim)
    before = folder_listing(victim) if victim.is_dir() else victim.read_bytes()
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert_refused(res, planted.split("/")[0], "symbolic link")
    assert (folder_listing(victim) if victim.is_dir() else victim.read_bytes()) == before


# -- 3. export never overwrites a run's files, nor any file without --force ---------------------------------
def test_export_refuses_to_overwrite_files_of_a_run_or_existing_files(work, tmp_path):
    pytest.importorskip("torch", reason="export to PyTorch needs torch (nncli[torch])")
    run = copy_run(work, "done", tmp_path / "runs")
    mine = tmp_path / "mine.py"
    mine.write_text("# mine\n")
    link = tmp_path / "link.py"
    link.symlink_to(run / "config.yaml")
    escape = tmp_path / "elsewhere"
    escape.mkdir()
    before = folder_listing(run)
    results = run_many(
        {
            "config.yaml": {"args": ["export", run, "-o", run / "config.yaml", "--force"]},
            "best checkpoint": {
                "args": ["export", run, "-o", run / "checkpoints/best.safetensors", "--force"]
            },
            "new file in the run": {"args": ["export", run, "-o", run / "model.py"]},
            "link into the run": {"args": ["export", run, "-o", link, "--force"]},
            "existing file": {"args": ["export", run, "-o", mine]},
        },
        run=run_forked,
    )
    for name, res in results.items():
        assert_refused(res, "pass --force" if name == "existing file" else "inside the run folder")
    assert folder_listing(run) == before and mine.read_text() == "# mine\n"
    # the default <run>/export/model.py: written once, then refused without --force, replaced with it
    # (the exports that succeed run in this process, where torch is imported once, not per process)
    assert run_main("export", run).code == 0
    assert_refused(run_forked("export", run), "already exists; pass --force")
    assert run_main("export", run, "--force").code == 0
    # an export/ folder that is a link out of the run is never written through
    shutil.rmtree(run / "export")
    (run / "export").symlink_to(escape)
    assert_refused(run_forked("export", run), "symbolic link")
    assert list(escape.iterdir()) == []
    assert run_main("export", run, "-o", mine, "--force").code == 0 and "load_model" in mine.read_text()
