"""A run's saved config trains again from any folder, on the same data file or not at all."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml
from support import assert_refused, folder_listing, run_main, run_nncli, write_config

from nncli.core.errors import DataError
from nncli.runs.checkpoint import load_weights, weights_path
from nncli.runs.folder.run_info import read_run
from nncli.runs.session.prepare import prepare
from nncli.runs.session.resume import prepare_resume

CONFIG = """\
name: h
dtype: float64
model: {input_shape: [3], layers: [{type: MM, out: 4}, {type: ReLU}, {type: MM, out: 2}]}
data: {source: data/h.csv, batch_size: 10}
train: {steps: 6, log_every: 2}
"""


@pytest.fixture
def project(tmp_path):
    """tmp_path/project with data/h.csv (60 rows, 3 features, a 0/1 label) and cfg.yaml."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    np.savetxt(
        root / "data" / "h.csv", np.c_[x, x[:, 0] > 0], delimiter=",", header="a,b,c,label", comments=""
    )
    write_config(root, CONFIG)
    return root


def trained(project, *args):
    res = run_main("train", project / "cfg.yaml", "-q", "--no-curves", "--runs-dir", project / "runs", *args)
    assert res.code == 0, res
    return max((project / "runs").iterdir())


def test_the_saved_config_records_the_absolute_path_and_the_fingerprint(project):
    run = trained(project)
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    csv = project / "data" / "h.csv"
    assert data["source"] == str(csv.resolve())
    assert data["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert read_run(run)["data"]["file_sha256"] == data["sha256"]
    # a built-in source is not a file: nothing to pin
    res = run_main("train", project / "cfg.yaml", "--print-config", "--set", "data.source=spirals")
    assert "sha256: null" in res.out


def test_the_saved_config_trains_again_from_another_folder(project, tmp_path):
    run = trained(project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = run_nncli("train", run / "config.yaml", "-q", "--no-curves", "--runs-dir", "again", cwd=elsewhere)
    assert res.code == 0, res
    (again,) = (elsewhere / "again").iterdir()
    assert (again / "config.yaml").read_text().split("\n", 2)[2] == (run / "config.yaml").read_text().split(
        "\n", 2
    )[2]
    # same config, same seed, same bytes of data: the same weights, bit for bit
    a, _ = load_weights(weights_path(run / "checkpoints", "last"))
    b, _ = load_weights(weights_path(again / "checkpoints", "last"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_changed_data_file_is_refused_naming_it_and_how_to_accept(project, tmp_path):
    run = trained(project)
    csv = project / "data" / "h.csv"
    with open(csv, "a") as fh:
        fh.write("1,2,3,1\n")
    again = tmp_path / "again"
    res = run_main("train", run / "config.yaml", "--runs-dir", again)
    assert_refused(
        res,
        f"data.sha256: {csv.resolve()}: the data file changed since its fingerprint was recorded",
        "--set data.sha256=null",
        runs_dir=again,
        place=f"{run / 'config.yaml'}:",
    )
    res = run_main(
        "train", run / "config.yaml", "-q", "--no-curves", "--runs-dir", again, "--set", "data.sha256=null"
    )
    assert res.code == 0, res
    (new,) = again.iterdir()  # the new run pins the new bytes
    assert (
        yaml.safe_load((new / "config.yaml").read_text())["data"]["sha256"]
        == hashlib.sha256(csv.read_bytes()).hexdigest()
    )


def test_a_resume_on_changed_data_is_refused_before_anything_is_written(project):
    session = prepare(project / "cfg.yaml", [])
    session.trainer.callbacks.append(
        type("Stop", (), {"on_step": lambda self, t: t.request_stop("SIGINT")})()
    )
    from nncli.runs.train_run import run_session

    assert run_session(session, project / "runs").status == "interrupted"
    before = folder_listing(session.folder)
    (project / "data" / "h.csv").write_text((project / "data" / "h.csv").read_text().replace("1.", "2.", 1))
    with pytest.raises(DataError, match="the data file changed") as info:
        prepare_resume(session.folder, None, [])
    assert info.value.field == "data.sha256" and str(info.value).startswith(
        str(session.folder / "config.yaml")
    )
    assert folder_listing(session.folder) == before
    res = run_main("train", "--resume", session.folder)
    assert_refused(res, "the data file changed", "a resumed run continues on the data it started with")


def test_a_malformed_or_pointless_fingerprint_is_a_placed_error(project):
    path = write_config(project, CONFIG.replace("batch_size: 10", "batch_size: 10, sha256: abc"), "bad.yaml")
    res = run_main("train", path, "--runs-dir", project / "runs")
    assert_refused(
        res, "data.sha256", "64 lowercase hex digits", runs_dir=project / "runs", place=f"{path}:4:"
    )
    pinned = CONFIG.replace("batch_size: 10", f"batch_size: 10, sha256: {'ab' * 32}")
    path = write_config(project, pinned.replace("data/h.csv", "spirals"), "builtin.yaml")
    res = run_main("train", path, "--runs-dir", project / "runs")
    assert_refused(res, "is a built-in dataset, not a file", runs_dir=project / "runs", place=f"{path}:4:")


def test_a_moved_data_file_can_be_named_again_and_is_still_checked(project, tmp_path):
    run = trained(project)
    moved = tmp_path / "moved"
    moved.mkdir()
    (project / "data" / "h.csv").rename(moved / "h.csv")
    again = tmp_path / "again"
    res = run_main("train", run / "config.yaml", "--runs-dir", again)
    assert_refused(
        res, "no such file; this config pins its data by SHA-256", "--set data.source=", runs_dir=again
    )
    assert res.err.startswith(f"error: {run / 'config.yaml'}:") and "data.source:" in res.err
    res = run_main(
        "train",
        run / "config.yaml",
        "-q",
        "--no-curves",
        "--runs-dir",
        again,
        "--set",
        f"data.source={moved / 'h.csv'}",
    )
    assert res.code == 0, res
    (moved / "h.csv").write_text((moved / "h.csv").read_text() + "0,0,0,1\n")
    res = run_main(
        "train", run / "config.yaml", "--runs-dir", again, "--set", f"data.source={moved / 'h.csv'}"
    )
    assert_refused(res, "the data file changed since its fingerprint was recorded")


def test_eval_and_trace_refuse_held_out_rows_from_a_changed_file(project):
    # the held-out rows are rebuilt from the file with the run's seed: other bytes, other rows
    run = trained(project)
    assert run_main("eval", run).code == 0
    csv = project / "data" / "h.csv"
    csv.write_text(csv.read_text() + "0.5,0.5,0.5,1\n")
    assert_refused(run_main("eval", run), "changed since run", "cannot evaluate", "--data", place=str(csv))
    assert_refused(run_main("inspect", "--run", run, "--trace"), "cannot trace", place=str(csv))
    labelled = project / "other.csv"
    labelled.write_text(csv.read_text())
    assert run_main("eval", run, "--data", labelled).code == 0  # a file named by the user is fine
