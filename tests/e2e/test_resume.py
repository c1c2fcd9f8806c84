"""Resume: an interrupted run continued with --resume ends bit for bit where an uninterrupted one does."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from support import run_nncli, start_nncli, write_config

from nncli.core.errors import UserError
from nncli.runs.checkpoint import load_weights, weights_path
from nncli.runs.folder.metrics_log import read_metrics
from nncli.runs.session.prepare import prepare
from nncli.runs.session.resume import prepare_resume
from nncli.runs.train_run import run_session

pytestmark = pytest.mark.slow  # runs stopped part way, then resumed

# float64, dropout (its generator state must survive), Adam, cosine schedule, clipping, shuffling
CONFIG = {
    "name": "res",
    "seed": 11,
    "dtype": "float64",
    "model": {
        "input_shape": [2],
        "layers": [
            {"type": "MM", "out": 12},
            {"type": "ReLU"},
            {"type": "Dropout", "p": 0.3},
            {"type": "MM", "out": 3},
        ],
    },
    "data": {"source": "spirals", "n_samples": 150, "batch_size": 20, "val_split": 0.2},
    "optimizer": {"type": "adam", "lr": 0.01},
    "schedule": {"type": "cosine", "warmup_steps": 3},
    "train": {"epochs": 2, "log_every": 2, "clip_grad_norm": 1.0},
}
STEPS_PER_EPOCH = 6  # 120 training examples in batches of 20


class StopAt:
    """Asks the trainer to stop after ``step``, as the SIGINT handler does."""

    def __init__(self, step):
        self.step = step

    def on_step(self, trainer):
        if trainer.state.step == self.step:
            trainer.request_stop("SIGINT")


def run(cfg_path, runs, stop_at=None) -> tuple[int, Path]:
    s = prepare(cfg_path, [])
    if stop_at:
        s.trainer.callbacks.append(StopAt(stop_at))
    code = run_session(s, runs).exit_code
    return code, s.folder


def weights(run_dir: Path, which="last"):
    return load_weights(weights_path(run_dir / "checkpoints", which))[0]


def no_times(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("stop_at", [STEPS_PER_EPOCH, 4])  # at an epoch boundary, and mid-epoch
def test_resume_equals_uninterrupted_bit_for_bit(tmp_path, stop_at):
    cfg = write_config(tmp_path, CONFIG, "res.yaml")
    code, straight = run(cfg, tmp_path / "a")
    assert code == 0
    code, cut = run(cfg, tmp_path / "b", stop_at=stop_at)
    assert code == 130
    info = json.loads((cut / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert not np.array_equal(weights(cut)["0.weight"], weights(straight)["0.weight"])

    s = prepare_resume(cut, None, [])
    assert s.trainer.state.step == stop_at
    assert run_session(s, tmp_path / "b").exit_code == 0
    a, b = weights(straight), weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == np.float64 and np.array_equal(a[k], b[k]), k
    assert no_times(read_metrics(cut / "metrics.jsonl")) == no_times(read_metrics(straight / "metrics.jsonl"))
    info = json.loads((cut / "run.json").read_text())
    assert info["status"] == "completed" and info["resumes"][0]["step"] == stop_at


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path):
    code, cut = run(write_config(tmp_path, CONFIG, "res.yaml"), tmp_path / "r", stop_at=3)
    with open(cut / "metrics.jsonl", "a") as fh:
        fh.write('{"event": "train", "step": 99, "train_loss": 1.0}\n{"step": 100, "tr')
    s = prepare_resume(cut, None, [])
    run_session(s, tmp_path / "r")
    steps = [r["step"] for r in read_metrics(cut / "metrics.jsonl")]
    assert 99 not in steps and steps == sorted(steps) and steps[-1] == 2 * STEPS_PER_EPOCH


def test_resume_refusals(tmp_path):
    cfg = write_config(tmp_path, CONFIG, "res.yaml")
    _, cut = run(cfg, tmp_path / "r", stop_at=2)
    with pytest.raises(UserError, match="not a run folder"):
        prepare_resume(tmp_path, None, [])
    with pytest.raises(UserError, match=r"--set cannot change.*optimizer.lr: 0.01 → 0.5"):
        prepare_resume(cut, None, ["optimizer.lr=0.5"])
    prepare_resume(cut, None, ["optimizer.lr=0.01"])  # an override that changes nothing is fine
    changed = write_config(tmp_path, {**CONFIG, "seed": 12}, "changed.yaml")
    with pytest.raises(UserError, match="differs from the config.*seed: 11 → 12"):
        prepare_resume(cut, changed, [])
    text = (cut / "config.yaml").read_text().replace("lr: 0.01", "lr: 0.02")
    (cut / "config.yaml").write_text(text)
    with pytest.raises(UserError, match="config was changed after the checkpoint"):
        prepare_resume(cut, None, [])


def test_completed_run_cannot_be_resumed(tmp_path):
    _, done = run(write_config(tmp_path, CONFIG, "res.yaml"), tmp_path / "r")
    with pytest.raises(UserError, match="already completed"):
        prepare_resume(done, None, [])


def test_sigint_to_a_real_train_process_then_resume(tmp_path):
    cfg = {
        **CONFIG,
        "dtype": "float32",
        "data": {**CONFIG["data"], "n_samples": 400, "batch_size": 8},
        "train": {"steps": 20000, "log_every": 20, "eval_every": 100000},
    }
    path = write_config(tmp_path, cfg, "res.yaml")
    runs = tmp_path / "runs"
    proc = start_nncli("train", path, "--runs-dir", runs, "--no-curves")
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until training is under way
        found = list(runs.glob("*/metrics.jsonl"))
        if found and found[0].stat().st_size > 0:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("training did not start")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    (run_dir,) = runs.iterdir()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert "--resume" in err.decode()
    state_step = prepare_resume(run_dir, None, []).trainer.state.step
    assert 0 < state_step < 20000
    # finish quickly: the remaining steps of this tiny model take a few seconds at most
    done = run_nncli("train", "--resume", run_dir, "--quiet", "--json", "--no-curves", timeout=240)
    assert done.code == 0, done.err
    summary = json.loads(done.out)
    assert summary["status"] == "completed" and summary["steps"] == 20000


def _as_older_nncli_left_it(run_dir: Path, added_keys: dict[str, list[str]]) -> None:
    """Make ``run_dir`` look as an nncli without the ``added_keys`` settings left it: config.yaml
    without them, and the checkpoint's config hash computed the old way (every value of the file)."""
    import hashlib

    import yaml

    from nncli.runs.checkpoint import load_checkpoint, save_checkpoint

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    for section, keys in added_keys.items():
        for key in keys:
            (saved[section] if section else saved).pop(key)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    old_hash = hashlib.sha256(json.dumps(saved, sort_keys=True).encode()).hexdigest()
    ckpt = load_checkpoint(run_dir / "checkpoints", "last")
    save_checkpoint(
        run_dir / "checkpoints", "last", ckpt.weights, ckpt.arrays, {**ckpt.state, "config_sha256": old_hash}
    )


def test_a_run_stopped_under_an_older_schema_resumes_and_an_edit_is_still_refused(tmp_path):
    # settings added after a run started (with defaults) must not make it look edited
    cfg = write_config(tmp_path, CONFIG, "res.yaml")
    _, straight = run(cfg, tmp_path / "a")
    _, cut = run(cfg, tmp_path / "b", stop_at=4)
    _as_older_nncli_left_it(cut, {"": ["metrics"], "train": ["watch"]})
    s = prepare_resume(cut, None, [])
    assert s.trainer.state.step == 4
    assert run_session(s, tmp_path / "b").exit_code == 0
    assert all(np.array_equal(v, weights(straight)[k]) for k, v in weights(cut).items())

    _, cut2 = run(cfg, tmp_path / "c", stop_at=4)
    _as_older_nncli_left_it(cut2, {"": ["metrics"]})
    text = (cut2 / "config.yaml").read_text().replace("lr: 0.01", "lr: 0.02")
    (cut2 / "config.yaml").write_text(text)
    with pytest.raises(UserError, match="config was changed after the checkpoint"):
        prepare_resume(cut2, None, [])


def test_resuming_with_subnormals_handled_otherwise_says_so(tmp_path, monkeypatch):
    """A run trained with subnormals flushed and resumed with NNCLI_DENORMALS=keep (or the other way)
    cannot continue bit for bit: the outcome warns, naming the variable; resumed as it was, no word."""
    from nncli.core.kernels import denormals

    if not denormals.available():
        pytest.skip("no known floating-point control register here: subnormals are never flushed")
    cfg = write_config(tmp_path, CONFIG)
    code, run_dir = run(cfg, tmp_path / "runs", stop_at=4)
    assert code == 130 and json.loads((run_dir / "run.json").read_text())["denormals"] == "flushed"
    monkeypatch.setenv(denormals.ENV, "keep")
    out = run_session(prepare_resume(run_dir, None, []), tmp_path / "runs")
    assert out.status == "completed"
    assert [w for w in out.warnings if "subnormal floats flushed and continued with them kept" in w]
    assert denormals.ENV in out.warnings[0]
    assert json.loads((run_dir / "run.json").read_text())["denormals"] == "kept"
    monkeypatch.delenv(denormals.ENV)
    code, again = run(cfg, tmp_path / "runs2", stop_at=4)
    out = run_session(prepare_resume(again, None, []), tmp_path / "runs2")
    assert out.status == "completed" and out.warnings == []
