"""Damaged and edited run folders: a changed byte, a foreign checkpoint, odd types in run.json, the
metrics or the sidecar are one line naming the file, exit 2, nothing written; listings skip and
warn; a NUL byte in a path is a clean refusal."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
from forked_cli import run_forked
from security_runs import copy_run
from support import assert_refused, folder_listing, run_main, run_many, run_nncli

from nncli.runs.checkpoint import digest, state_path


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def forge_sidecar(run: Path, change) -> None:
    """Rewrite the ``last`` sidecar with its training state changed and a *valid* checksum, as a
    buggy or hostile writer could: only the type checks can refuse it."""
    from safetensors.numpy import load, save

    path = state_path(run / "checkpoints", "last")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    tensors = load(raw)
    state = json.loads(meta["state"])
    change(state)
    meta["state"] = json.dumps(state)
    meta["sha256"] = digest(tensors, meta)
    path.write_bytes(save(tensors, metadata=meta))


# -- 5. the checkpoint checksum covers the training state ---------------------------------------------------
def test_one_changed_byte_of_the_step_in_the_sidecar_is_refused(work, tmp_path):
    run = copy_run(work, "stopped", tmp_path)
    path = state_path(run / "checkpoints", "last")
    raw = path.read_bytes()
    old = b'"state":"{\\"step\\": 4,'  # the training state's step, inside the JSON header
    assert raw.count(old) == 1
    path.write_bytes(raw.replace(old, old.replace(b"4", b"9")))  # same length, one byte changed
    before = folder_listing(run)
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert_refused(res, "last.state.safetensors", "checksum mismatch", place=str(path))
    assert folder_listing(run) == before


def test_a_checkpoint_of_another_run_is_refused(work, tmp_path):
    run = copy_run(work, "stopped", tmp_path)
    other = copy_run(work, "done", tmp_path / "other")
    shutil.copy(state_path(other / "checkpoints", "last"), state_path(run / "checkpoints", "last"))
    res = run_nncli("train", "--resume", run, "-q", "--no-curves")
    assert_refused(res, "come from different saves")


# -- 8. damaged run folders: one line naming the file, exit 2; listings skip and say so -----------------------
def damage_cases():
    """name → (what to damage, the file the error must name, text it must contain)."""
    return {
        "status not a status": (
            lambda r: edit_json(r / "run.json", lambda d: d.update(status=5)),
            "run.json",
            "'status'",
        ),
        "overrides a string": (
            lambda r: edit_json(r / "run.json", lambda d: d.update(overrides="x")),
            "run.json",
            "'overrides'",
        ),
        "data a list": (
            lambda r: edit_json(r / "run.json", lambda d: d.update(data=[1])),
            "run.json",
            "'data'",
        ),
        "base dir a number": (
            lambda r: edit_json(r / "run.json", lambda d: d.update(data_base_dir=3)),
            "run.json",
            "'data_base_dir'",
        ),
        "run.json a list": (
            lambda r: (r / "run.json").write_text("[1, 2]"),
            "run.json",
            "expected a JSON object",
        ),
        "run.json deeply nested": (
            lambda r: (r / "run.json").write_text("[" * 100000 + "]" * 100000),
            "run.json",
            "",
        ),
        "metrics line not an object": (
            lambda r: (r / "metrics.jsonl").write_text("[1, 2]\n" + (r / "metrics.jsonl").read_text()),
            "metrics.jsonl:1",
            "expected a JSON object",
        ),
        "metrics step a string": (
            lambda r: (r / "metrics.jsonl").write_text('{"step": "x"}\n' + (r / "metrics.jsonl").read_text()),
            "metrics.jsonl:1",
            "'step'",
        ),
        "sidecar step a string": (
            lambda r: forge_sidecar(r, lambda s: s.update(step="abc")),
            "last.state.safetensors",
            "'step'",
        ),
        "sidecar step negative": (
            lambda r: forge_sidecar(r, lambda s: s.update(step=-3)),
            "last.state.safetensors",
            "'step'",
        ),
        "sidecar rng garbage": (
            lambda r: forge_sidecar(r, lambda s: s.update(rng=[1])),
            "last.state.safetensors",
            "'rng'",
        ),
        "sidecar state a list": (
            lambda r: forge_sidecar(r, lambda s: (s.clear(), None)),
            "last.state.safetensors",
            "",
        ),
    }


def test_resume_of_a_damaged_run_folder_is_one_line_naming_the_file(work, tmp_path):
    cases, runs = damage_cases(), {}
    for i, (name, (damage, _, _)) in enumerate(cases.items()):
        runs[name] = run = copy_run(work, "stopped", tmp_path / str(i))
        damage(run)
    before = {name: (folder_listing(run), (run / ".lock").read_bytes()) for name, run in runs.items()}
    results = run_many(
        {name: {"args": ["train", "--resume", run, "-q", "--no-curves"]} for name, run in runs.items()},
        run=run_forked,
    )
    for name, res in results.items():
        _, file, text = cases[name]
        assert_refused(res, file, text)
        after = (folder_listing(runs[name]), (runs[name] / ".lock").read_bytes())
        assert after == before[name], name  # nothing written, not even a PID into .lock
    # eval and export read run.json the same way
    bad = runs["data a list"]
    assert_refused(run_nncli("eval", bad), "run.json", "'data'")
    assert_refused(run_nncli("export", bad, "-o", tmp_path / "m.py"), "run.json", "'data'")


def test_runs_and_plot_list_the_rest_with_a_warning(work, tmp_path):
    runs = tmp_path / "runs"
    good = copy_run(work, "done", runs, as_name="good")
    bad_info = copy_run(work, "done", runs, as_name="bad-info")
    (bad_info / "run.json").write_text('{"status": ')
    bad_line = copy_run(work, "done", runs, as_name="bad-line")
    text = (bad_line / "metrics.jsonl").read_text().splitlines()
    text.insert(1, '"just a string"')
    (bad_line / "metrics.jsonl").write_text("\n".join(text) + "\n")
    fifo = copy_run(work, "done", runs, as_name="fifo")
    (fifo / "metrics.jsonl").unlink()
    os.mkfifo(fifo / "metrics.jsonl")  # would block a plain read forever
    summary = copy_run(work, "done", runs, as_name="odd-summary")
    edit_json(summary / "summary.json", lambda d: d.update(steps="many", wall_time=[1], test={"acc": "x"}))
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    results = run_many(
        {
            "runs": {"args": ["runs", runs, "--json"], "timeout": 60},
            "plot": {"args": ["plot", bad_line, good, not_a_run, "--terminal"], "timeout": 60},
        }
    )
    res = results["runs"]
    assert res.code == 0 and "Traceback" not in res.err, res
    rows = {r["run"]: r for r in json.loads(res.out)}
    assert sorted(rows) == ["bad-line", "fifo", "good", "odd-summary"], res
    assert rows["bad-line"]["best_value"] == rows["good"]["best_value"]  # only the bad line is skipped
    assert rows["odd-summary"]["steps"] is None and rows["odd-summary"]["wall_time"] is None
    warnings = res.err.splitlines()
    assert any("bad-info/run.json" in w and "run skipped" in w for w in warnings), res
    assert any("bad-line/metrics.jsonl:2" in w for w in warnings), res
    assert any("fifo/metrics.jsonl" in w and "not a regular file" in w for w in warnings), res
    assert all(w.startswith("warning: ") for w in warnings), res
    res = results["plot"]
    assert res.code == 0 and "Traceback" not in res.err, res
    assert "bad-line/metrics.jsonl:2" in res.err and f"{not_a_run}: no run folders inside" in res.err, res
    assert "train_loss" in res.out


@pytest.mark.parametrize(
    "args",
    [["train"], ["train", "--resume"], ["eval"], ["export"], ["plot"], ["runs"], ["runs", "diff", "x"]],
    ids=" ".join,
)
def test_a_nul_byte_in_a_path_is_a_clean_refusal(args, tmp_path):
    # a shell cannot pass a NUL byte, so this goes through nncli.cli.main in this process
    res = run_main(*args, "a\0b")
    assert res.code == 2 and "Traceback" not in res.err, res
    assert "null byte" in res.err or "no such" in res.err, res
