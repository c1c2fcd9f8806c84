"""The forked CLI harness answers what a fresh ``python -m nncli`` answers: exit code, stdout, stderr."""

from __future__ import annotations

from forked_cli import run_forked
from support import run_nncli


def test_forked_and_fresh_processes_give_the_same_result(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  input_shape: [2\n")
    for args in (("--version",), ("train", bad, "--runs-dir", tmp_path / "runs"), ("nosuchcommand",)):
        fresh, forked = run_nncli(*args, cwd=tmp_path), run_forked(*args, cwd=tmp_path)
        assert (forked.code, forked.out, forked.err) == (fresh.code, fresh.out, fresh.err), (fresh, forked)
    assert run_forked("--version").out.startswith("nncli ")


def test_the_child_gets_its_own_directory_and_environment(tmp_path):
    (tmp_path / "cfg.yaml").write_text("model: {input_shape: [2]\n")
    # a relative config path resolves in cwd, and the error names it as given
    res = run_forked("train", "cfg.yaml", "--runs-dir", "runs", cwd=tmp_path, env={"NNCLI_DEBUG": "1"})
    assert res.code != 0 and "cfg.yaml" in res.err
    assert "Traceback" in res.err  # NNCLI_DEBUG reached the child: the traceback is shown
