"""Configs, data files, ``--set`` values and ``--resume`` folders that are wrong: each refused in one
line that places it, exit 2, no run folder; a YAML tag or a pickled array runs nothing."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from bad_inputs import FILE_CFG, GOOD, Unpickled, config_cases, edit, line_of
from forked_cli import run_forked
from support import assert_refused, run_many, run_nncli


@pytest.fixture(scope="module")
def results(work):
    calls, meta = {}, {}
    for i, (name, (text, expect, at)) in enumerate(config_cases(work).items()):
        cfg = work / f"cfg{i}.yaml"
        cfg.write_text(text)
        line = f":{line_of(text, at)}:" if at else ":"
        calls[name] = dict(args=["train", cfg, "--runs-dir", work / f"runs{i}", "--quiet"], cwd=work)
        meta[name] = (expect, f"{cfg}{line}", work / f"runs{i}")

    def file_case(name, data, expect, place="data", extra=()):
        """A config reading ``data``; ``place``: "data" (the error points at data.source), or a prefix."""
        i = len(calls)
        cfg = work / f"cfg{i}.yaml"
        cfg.write_text(FILE_CFG.replace("DATA", data))
        calls[name] = dict(args=["train", cfg, "--runs-dir", work / f"runs{i}", "--quiet", *extra], cwd=work)
        at = f"{cfg}:{line_of(FILE_CFG, 'source:')}:" if place == "data" else place
        meta[name] = (expect, at, work / f"runs{i}")

    file_case("missing config file", "data.npz", ("no such file",), place=str(work / "nope.yaml"))
    calls["missing config file"]["args"][1] = work / "nope.yaml"
    file_case("missing data file", "nope.npz", ("nope.npz", "not found"))
    file_case("empty csv", "empty.csv", ("empty.csv", "no data rows"))
    file_case("empty npz", "empty.npz", ("empty.npz", "not a readable .npz"))
    file_case("NaN in inputs", "nan.npz", ("nan.npz", "NaN or Inf", "index 7"))
    file_case("Inf in inputs", "inf.npz", ("inf.npz", "NaN or Inf", "index 3"))
    file_case("string inputs", "strings.npz", ("strings.npz", "inputs must be numeric"))
    file_case("a word in a csv", "words.csv", ("words.csv:3:", "column 2", "'two'", "not a number"))
    file_case("ragged csv rows", "ragged.csv", ("ragged.csv:3:", "expected 5 columns", "got 4"))
    file_case("float labels", "float_labels.npz", ("float_labels.npz", "whole numbers", "1.5 at index 0"))
    file_case("labels out of range", "labels_out_of_range.npz", ("labels_out_of_range.npz", "label"))
    file_case("x and y lengths differ", "lengths.npz", ("lengths.npz", "40 examples", "30"))
    file_case("pickled object array", "pickled.npz", ("pickled.npz", "dtype=object", "unpickling"))
    file_case("data shape not matching the model", "wide.npz", ("wide.npz", "(5,)", "input_shape", "[4]"))
    file_case(
        "misspelled --set path",
        "data.npz",
        ("optimizer.lrr", "did you mean 'optimizer.lr'"),
        place="<command line>: optimizer.lrr",
        extra=("--set", "optimizer.lrr=0.5"),
    )
    file_case(
        "--set value with a control character",
        "data.npz",
        ("seed=1", "not valid YAML", "#x0014"),
        place="<command line>",
        extra=("--set", "seed=1\x14"),
    )
    file_case(
        "--set value of the wrong type",
        "data.npz",
        ("train.steps", "'many'"),
        place="<command line>: train.steps",
        extra=("--set", "train.steps=many"),
    )
    calls["--resume on a folder that is not a run"] = dict(
        args=["train", "--resume", work / "notarun", "--runs-dir", work / "runs_resume", "--quiet"], cwd=work
    )
    meta["--resume on a folder that is not a run"] = (
        ("not a run folder",),
        str(work / "notarun"),
        work / "runs_resume",
    )
    return {name: (res, *meta[name]) for name, res in run_many(calls, run=run_forked).items()}


CASE_NAMES = list(config_cases(Path("/x"))) + [
    "missing config file",
    "missing data file",
    "empty csv",
    "empty npz",
    "NaN in inputs",
    "Inf in inputs",
    "string inputs",
    "a word in a csv",
    "ragged csv rows",
    "float labels",
    "labels out of range",
    "x and y lengths differ",
    "pickled object array",
    "data shape not matching the model",
    "misspelled --set path",
    "--set value with a control character",
    "--set value of the wrong type",
    "--resume on a folder that is not a run",
]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_refused_with_one_line_exit_2_and_no_run_folder(results, name):
    res, expect, place, runs = results[name]
    # a misspelled required key is two problems: the unknown key and the missing one
    problems = 2 if name == "misspelled layer key" else 1
    assert_refused(res, *expect, runs_dir=runs, place=place, problems=problems)
    assert (runs.parent / "notarun").exists()


def test_python_tag_ran_nothing_and_pickled_array_was_never_unpickled(results, work):
    assert results["python tag"][0].code == 2
    assert not (work / "tag-ran").exists()
    assert results["pickled object array"][0].code == 2
    assert not (work / "unpickled").exists()
    # the payload is live: unpickling it really creates the marker (so its absence above means something)
    probe = work / "probe"
    pickle.loads(pickle.dumps(Unpickled(probe))).close()
    assert probe.exists()


def test_messages_stay_on_one_line_however_long(work, tmp_path):
    # a deep path makes the message far wider than the 80 columns rich assumes without a terminal
    deep = tmp_path.joinpath(*["a_long_folder_name"] * 6)
    deep.mkdir(parents=True)
    cfg = deep / "cfg.yaml"
    text = edit(GOOD, "out: 8}", "out: 8, kernal: 3}")
    cfg.write_text(text)
    res = run_nncli("train", cfg, "--runs-dir", tmp_path / "runs", cwd=work)
    assert_refused(res, "model.layers[0].kernal", "allowed keys", place=f"{cfg}:{line_of(text, 'kernal')}:")
