"""Runs reused: ``--init-from RUN[:best|last]`` (fine-tuning) and ``--resume RUN --set train.steps=N``
(a completed run extended, bit for bit as if it had been given N steps from the start)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from support import assert_refused, folder_listing, run_main, write_config

import nncli
from nncli.core.errors import CheckpointError, UserError
from nncli.runs.checkpoint import load_checkpoint, load_weights, weights_path
from nncli.runs.folder.metrics_log import read_metrics
from nncli.runs.folder.run_info import read_run
from nncli.runs.session.resume import prepare_resume

# float64; dropout (its generator state), Adam, a warm-up then step decay, clipping, shuffling, an
# evaluation every 4 steps (so a 10-step run ends with an off-schedule one), early stopping armed
CONFIG = {
    "name": "ext",
    "seed": 5,
    "dtype": "float64",
    "model": {
        "input_shape": [2],
        "layers": [
            {"type": "MM", "out": 10},
            {"type": "ReLU"},
            {"type": "Dropout", "p": 0.2},
            {"type": "MM", "out": 3},
        ],
    },
    "data": {"source": "spirals", "n_samples": 90, "batch_size": 16, "val_split": 0.2},
    "optimizer": {"type": "adam", "lr": 0.01},
    "schedule": {"type": "step", "warmup_steps": 3, "step_size": 7, "gamma": 0.5},
    "train": {
        "steps": 10,
        "log_every": 3,
        "eval_every": 4,
        "clip_grad_norm": 1.0,
        "early_stopping": {"patience": 50},
    },
}


def train(cfg_path, runs, *args) -> Path:
    res = run_main("train", cfg_path, "-q", "--no-curves", "--runs-dir", runs, *args)
    assert res.code == 0, res
    return max(Path(runs).iterdir())


def same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def timeless(records, steps=None):
    return [
        {k: v for k, v in r.items() if k != "seconds"}
        for r in records
        if steps is None or (r["event"], r["step"]) in steps
    ]


# -- extending a completed run ----------------------------------------------------------------------
@pytest.mark.parametrize("budget", ["train.steps=22", "train.epochs=6"])  # 72 examples: 5 steps per epoch
def test_an_extended_run_equals_one_given_the_larger_budget_bit_for_bit(tmp_path, budget):
    cfg = write_config(tmp_path, CONFIG)
    run = train(cfg, tmp_path / "ext")
    assert read_run(run)["status"] == "completed"
    if budget == "train.steps=22":  # the config file may be given too; it must match the run's
        (tmp_path / "other").mkdir()
        with pytest.raises(UserError, match="differs from the config.*seed: 5 → 6"):
            prepare_resume(run, write_config(tmp_path / "other", {**CONFIG, "seed": 6}), [budget])
        assert prepare_resume(run, cfg, [budget]).trainer.total_steps == 22
    res = run_main("train", "--resume", run, "--set", budget, "-q", "--no-curves", "--json")
    assert res.code == 0, res
    straight = train(cfg, tmp_path / "straight", "--set", budget)

    n = json.loads(res.out)["steps"]
    assert n == {"train.steps=22": 22, "train.epochs=6": 30}[budget]
    a, b = load_checkpoint(run / "checkpoints", "last"), load_checkpoint(straight / "checkpoints", "last")
    assert a.state["step"] == b.state["step"] == n
    assert same_arrays(a.weights, b.weights) and same_arrays(a.arrays, b.arrays)  # weights, Adam's moments
    assert a.state["rng"] == b.state["rng"]  # the dropout generators
    # every evaluation and log line of the straight run, identical; the extended one also keeps the
    # evaluation made when it first ended at step 10
    ext, one = read_metrics(run / "metrics.jsonl"), read_metrics(straight / "metrics.jsonl")
    shared = {(r["event"], r["step"]) for r in one}
    assert timeless(ext, shared) == timeless(one)
    assert {(r["event"], r["step"]) for r in ext} - shared == {("eval", 10)}
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["final"]["val_loss"]
        == json.loads((straight / "summary.json").read_text())["final"]["val_loss"]
    )

    info = read_run(run)
    assert info["status"] == "completed" and info["steps"] == n
    (ext_record,) = info["extensions"]
    assert (ext_record["from_steps"], ext_record["to_steps"], ext_record["set"]) == (10, n, [budget])
    assert ext_record["previous_status"] == "completed"
    saved = (run / "config.yaml").read_text()
    assert f"# Extended from 10 to {n} steps by {budget}" in saved
    # the saved config now trains the extended run from scratch
    again = train(run / "config.yaml", tmp_path / "again")
    assert same_arrays(load_weights(weights_path(again / "checkpoints", "last"))[0], b.weights)


def test_an_extension_stopped_before_its_first_checkpoint_resumes_to_the_new_budget(tmp_path):
    cfg = write_config(tmp_path, CONFIG)
    run = train(cfg, tmp_path / "ext")
    session = prepare_resume(run, None, ["train.steps=14"])
    session.open(run)  # run.json and config.yaml say 14 steps; the newest checkpoint is still step 10's
    session.fail(KeyboardInterrupt())
    session.release()
    resumed = prepare_resume(run, None, [])
    assert resumed.trainer.total_steps == 14 and resumed.trainer.state.step == 10
    nncli.train(resume=run)
    straight = train(cfg, tmp_path / "straight", "--set", "train.steps=14")
    assert same_arrays(
        load_weights(weights_path(run / "checkpoints", "last"))[0],
        load_weights(weights_path(straight / "checkpoints", "last"))[0],
    )


def test_extensions_that_cannot_continue_exactly_are_refused(tmp_path):
    cfg = write_config(tmp_path, CONFIG)
    run = train(cfg, tmp_path / "ext")
    before = folder_listing(run)
    cases = [
        ([], "this run already completed; to train it further give it a larger budget"),
        (["--set", "train.steps=10"], "gives 10 steps, but the run already has a budget of 10"),
        (["--set", "train.epochs=1"], "gives 5 steps, but the run already has a budget of 10"),
        (
            ["--set", "train.steps=20", "--set", "optimizer.lr=0.5"],
            "optimizer.lr: 0.01 → 0.5); only its budget",
        ),
        (["--set", "train.steps=20", "--init-from", run], "cannot be combined with --resume"),
    ]
    for extra, text in cases:
        assert_refused(run_main("train", "--resume", run, *extra), text)
    assert folder_listing(run) == before

    cosine = write_config(tmp_path, {**CONFIG, "schedule": {"type": "cosine"}}, "cos.yaml")
    run = train(cosine, tmp_path / "cos")
    assert_refused(
        run_main("train", "--resume", run, "--set", "train.steps=20"),
        "schedule 'cosine' depends on the budget: with 20 steps the learning rate of step 1",
    )
    early = {**CONFIG, "train": {**CONFIG["train"], "steps": 40, "early_stopping": {"patience": 1}}}
    run = train(write_config(tmp_path, early, "early.yaml"), tmp_path / "early")
    assert json.loads((run / "summary.json").read_text())["reason"] == "early stopping"
    with pytest.raises(UserError, match="stopped early"):
        nncli.train(resume=run, overrides=["train.steps=80"])


# -- starting from another run's weights ------------------------------------------------------------
def test_init_from_starts_from_the_checkpoint_and_records_it(tmp_path):
    source = train(write_config(tmp_path, CONFIG), tmp_path / "src")
    fine = {**CONFIG, "optimizer": {"type": "sgd", "lr": 0.001}, "train": {"steps": 2, "log_every": 1}}
    cfg = write_config(tmp_path, fine, "fine.yaml")
    session_probe = []

    class First:  # the weights the first step starts from
        def on_begin(self, trainer):
            session_probe.append(trainer.chain.state_dict())

    out = nncli.train(cfg, runs_dir=tmp_path / "fine", init_from=f"{source}:best", callbacks=[First()])
    assert out.status == "completed"
    best = weights_path(source / "checkpoints", "best")
    assert same_arrays(session_probe[0], load_weights(best)[0])
    record = read_run(out.run_dir)["init_from"]
    assert record == {
        "run": str(source.resolve()),
        "checkpoint": "best",
        "step": load_checkpoint(source / "checkpoints", "best").state["step"],
        "weights_sha256": hashlib.sha256(best.read_bytes()).hexdigest(),
    }
    # through the command line, RUN alone takes the best checkpoint, :last the last one
    run = train(cfg, tmp_path / "cli", "--init-from", source)
    assert read_run(run)["init_from"]["checkpoint"] == "best"
    run = train(cfg, tmp_path / "cli", "--init-from", f"{source}:last")
    assert read_run(run)["init_from"]["step"] == 10
    # float32 from float64 weights: cast
    run = train(cfg, tmp_path / "cli", "--init-from", source, "--set", "dtype=float32")
    assert load_weights(weights_path(run / "checkpoints", "last"))[0]["0.weight"].dtype == np.float32


def test_init_from_bad_inputs_are_located_and_write_nothing(tmp_path):
    source = train(write_config(tmp_path, CONFIG), tmp_path / "src")
    cfg = write_config(tmp_path, CONFIG, "fine.yaml")
    runs = tmp_path / "fine"
    wider = ["--set", "model.layers[0].out=12"]
    cases = [
        (["--init-from", tmp_path / "nope"], f"--init-from {tmp_path / 'nope'}: no such run folder", None),
        (["--init-from", tmp_path], "not a run folder", None),
        (
            ["--init-from", f"{source}:bset"],
            "unknown checkpoint 'bset'; expected RUN, RUN:best or RUN:last",
            None,
        ),
        (
            ["--init-from", source, *wider],
            "model.layers[0]: --init-from "
            f"{source}:best: layer 0 (MM) weight has shape (10, 2) in the checkpoint, but this layer makes (12, 2)",
            f"{cfg}:",
        ),
        (
            ["--init-from", source, "--set", "model.layers[3].out=4"],
            "layer 3 (MM) weight has shape (3, 10) in the checkpoint, but this layer makes (4, 10)",
            f"{cfg}:",
        ),
        (
            ["--init-from", source, "--set", "model.layers[4]={type: MM, out: 3}"],
            "layer 4 (MM) weight: the checkpoint has no such array",
            "<command line>",
        ),
        (
            ["--init-from", source, "--set", "model.layers[3]={type: ReLU}"],
            "the checkpoint has 3.bias (and 1 more), which this model does not have",
            None,
        ),
    ]
    for extra, text, place in cases:
        assert_refused(run_main("train", cfg, "--runs-dir", runs, *extra), text, runs_dir=runs, place=place)
    # the library raises the same errors, placed the same way
    with pytest.raises(CheckpointError) as info:
        nncli.train(cfg, runs_dir=runs, init_from=source, overrides=["model.layers[0].out=12"])
    assert info.value.field == "model.layers[0]" and str(info.value).startswith(f"{cfg}:")
    # a checkpoint never written
    (source / "checkpoints" / "best.safetensors").unlink()
    (source / "checkpoints" / "best.state.safetensors").unlink()
    assert_refused(
        run_main("train", cfg, "--runs-dir", runs, "--init-from", f"{source}:best"),
        "best.safetensors not found",
        runs_dir=runs,
    )


def test_a_fine_tuning_run_resumed_before_its_first_checkpoint_starts_from_the_same_weights(tmp_path):
    source = train(write_config(tmp_path, CONFIG), tmp_path / "src")
    cfg = write_config(tmp_path, {**CONFIG, "train": {"steps": 3, "log_every": 1}}, "fine.yaml")
    from nncli.runs.session.prepare import prepare

    session = prepare(cfg, [], init_from=f"{source}:last")
    session.open(tmp_path / "fine")  # killed before any step
    session.fail(KeyboardInterrupt())
    session.release()
    resumed = prepare_resume(session.folder, None, [])
    assert same_arrays(
        resumed.chain.state_dict(), load_weights(weights_path(source / "checkpoints", "last"))[0]
    )
    # the source changed since: refused rather than started from other weights
    last = load_checkpoint(source / "checkpoints", "last")
    from nncli.runs.checkpoint import save_checkpoint

    save_checkpoint(
        source / "checkpoints", "last", {k: v + 1 for k, v in last.weights.items()}, last.arrays, last.state
    )
    with pytest.raises(CheckpointError, match="changed since this run started from it"):
        prepare_resume(session.folder, None, [])


def test_dry_run_checks_init_from_and_writes_nothing(tmp_path):
    source = train(write_config(tmp_path, CONFIG), tmp_path / "src")
    cfg = write_config(tmp_path, CONFIG, "fine.yaml")
    runs = tmp_path / "fine"
    res = run_main("train", cfg, "--dry-run", "--runs-dir", runs, "--init-from", f"{source}:last")
    assert res.code == 0 and "valid; nothing was written" in res.err, res
    res = run_main(
        "train", cfg, "--dry-run", "--runs-dir", runs, "--init-from", source, "--set", "model.layers[0].out=4"
    )
    assert_refused(res, "layer 0 (MM) weight has shape (10, 2)", runs_dir=runs, place=f"{cfg}:")
