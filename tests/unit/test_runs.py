"""Run folders, atomic writes, metrics.jsonl and safetensors checkpoints."""

from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import pytest

from nncli.config.build import build_chain
from nncli.config.load import config_from_dict
from nncli.runs.atomic import atomic_write_json
from nncli.runs.checkpoint import (
    CheckpointError,
    apply_weights,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    state_path,
    weights_path,
)
from nncli.runs.folder.metrics_log import MetricsLog, read_metrics, trim_metrics
from nncli.runs.folder.run_dir import RunError, create_run_dir
from nncli.runs.folder.run_info import read_run

MODEL = {
    "input_shape": [1, 6],
    "layers": [
        {"type": "Conv1D", "out": 2, "kernel": 3},
        {"type": "ReLU"},
        {"type": "Flatten"},
        {"type": "MM", "out": 3},
    ],
}


def chain(layers=MODEL, dtype="float64", seed=0):
    return build_chain(config_from_dict({"model": layers, "dtype": dtype, "seed": seed}))


def test_run_dirs_never_collide(tmp_path):
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    a = create_run_dir(tmp_path, "mlp", now)
    b = create_run_dir(tmp_path, "mlp", now)
    c = create_run_dir(tmp_path, "mlp", now)
    assert [p.name for p in (a, b, c)] == [
        "mlp-20260102-030405",
        "mlp-20260102-030405-1",
        "mlp-20260102-030405-2",
    ]
    assert (a / "checkpoints").is_dir()


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "s.json"
    atomic_write_json(p, {"a": 1, "nan": float("nan"), "arr": np.arange(2)})
    atomic_write_json(p, {"a": 2, "inf": np.float32("inf")})
    assert json.loads(p.read_text()) == {"a": 2, "inf": None}
    assert os.listdir(tmp_path) == ["s.json"]


def test_metrics_non_finite_as_null_and_partial_line_trimmed(tmp_path):
    p = tmp_path / "metrics.jsonl"
    log = MetricsLog(p)
    for step, loss in [(1, 0.5), (2, float("nan")), (3, 0.25)]:
        log.write({"step": step, "train_loss": loss})
    log.close()
    assert '"train_loss": null' in p.read_text()
    with open(p, "a") as fh:
        fh.write('{"step": 4, "train_lo')  # the process died mid-line
    assert [r["step"] for r in read_metrics(p)] == [1, 2, 3]
    trim_metrics(p, last_step=2)  # resume from a checkpoint at step 2
    assert p.read_text().endswith("\n")
    assert [r["step"] for r in read_metrics(p)] == [1, 2]


def test_read_run_refuses_other_folders(tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        read_run(tmp_path)
    with pytest.raises(RunError, match="no such run folder"):
        read_run(tmp_path / "missing")


def _save(tmp_path, ch, name="last"):
    state = {"step": 7, "rng": {}, "best": float("nan")}
    opt = {"optimizer/adam.step": np.array(7, dtype=np.int64), "optimizer/adam.m.0.weight": np.ones(3)}
    save_checkpoint(tmp_path, name, ch.state_dict(), opt, state)


def test_checkpoint_round_trip(tmp_path):
    ch = chain()
    _save(tmp_path, ch)
    ck = load_checkpoint(tmp_path, "last")
    assert ck.state["step"] == 7 and np.isnan(ck.state["best"])
    assert ck.arrays["optimizer/adam.step"].shape == ()  # 0-d arrays stay 0-d
    other = chain(seed=1)
    apply_weights(other, ck.weights, ck.path)
    for k, v in ch.state_dict().items():
        assert np.array_equal(other.state_dict()[k], v)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage):
    _save(tmp_path, chain())
    p = weights_path(tmp_path, "last")
    raw = bytearray(p.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 10]
    elif damage == "flip":
        raw[-3] ^= 0xFF  # one weight's bytes changed, header intact
    else:
        raw = bytearray(b"not a checkpoint")
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=str(p.name)):
        load_checkpoint(tmp_path, "last")


def test_sidecar_from_another_save_is_refused(tmp_path):
    ch = chain()
    _save(tmp_path, ch, "last")
    old_side = state_path(tmp_path, "last").read_bytes()
    _save(tmp_path, ch, "last")
    state_path(tmp_path, "last").write_bytes(old_side)
    with pytest.raises(CheckpointError, match="different saves"):
        load_checkpoint(tmp_path, "last")


def test_other_architecture_is_refused(tmp_path):
    _save(tmp_path, chain())
    wider = {**MODEL, "layers": [*MODEL["layers"][:3], {"type": "MM", "out": 4}]}
    weights, _ = load_weights(weights_path(tmp_path, "last"))
    with pytest.raises(CheckpointError, match="architecture.*3.weight"):
        apply_weights(chain(wider), weights, "ckpt")
    deeper = {**MODEL, "layers": [*MODEL["layers"], {"type": "ReLU"}, {"type": "MM", "out": 3}]}
    with pytest.raises(CheckpointError, match="missing 5.bias, 5.weight"):
        apply_weights(chain(deeper), weights, "ckpt")


def test_checkpoint_loads_into_torch_sequential_strict(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is needed for the PyTorch cross-check")
    from safetensors.torch import load_file

    ch = chain(dtype="float32")
    _save(tmp_path, ch)
    seq = torch.nn.Sequential(
        torch.nn.Conv1d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(12, 3)
    )
    seq.load_state_dict(load_file(weights_path(tmp_path, "last")), strict=True)
    x = np.random.default_rng(3).standard_normal((5, 1, 6)).astype(np.float32)
    with torch.no_grad():
        expect = seq(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ch.forward(x), expect, rtol=1e-5, atol=1e-6)
