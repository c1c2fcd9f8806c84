"""train.watch: the records in watch.jsonl against values recomputed independently in torch from the
checkpoints saved at the watched steps, and watch.jsonl across a cut-short and resumed run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from support import merge, run_nncli, write_config

from nncli.core import hooks
from nncli.runs.checkpoint import load_weights, weights_path
from nncli.runs.folder.watch_log import read_watch
from nncli.runs.session.prepare import prepare
from nncli.runs.session.resume import prepare_resume
from nncli.runs.train_run import run_session

torch = pytest.importorskip("torch", reason="the watch records are checked against torch autograd")

STEPS, EVERY = 5, 2
# full batch (48 training examples), so the batch of every step is the whole training split
CONFIG = {
    "name": "w",
    "seed": 3,
    "dtype": "float64",
    "model": {
        "input_shape": [2],
        "layers": [
            {"type": "MM", "out": 16},
            {"type": "Sigmoid"},
            {"type": "LN", "affine": "per_feature"},
            {"type": "MM", "out": 16},
            {"type": "BatchNorm1d"},
            {"type": "ReLU"},
            {"type": "MM", "out": 3},
        ],
    },
    "data": {"source": "spirals", "n_samples": 60, "batch_size": 48, "val_split": 0.2},
    "optimizer": {"type": "adam", "lr": 0.05, "weight_decay": 0.01},
    "train": {"steps": STEPS, "checkpoint_every": 1, "eval_every": 100, "watch": {"every": EVERY}},
}


class KeepCheckpoints:
    """Keeps the weights of every checkpoint the run writes (``last`` is overwritten each step)."""

    def __init__(self):
        self.by_step: dict[int, dict[str, np.ndarray]] = {}

    def on_checkpoint(self, trainer, best):
        folder = trainer.callbacks[0].ckpt_dir  # the run recorder, which has just saved
        self.by_step[trainer.state.step] = load_weights(weights_path(folder, "last"))[0]


def torch_model():
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(2, 16),
        nn.Sigmoid(),
        nn.LayerNorm(16),
        nn.Linear(16, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Linear(16, 3),
    ).double()


def recompute(weights, x, y):
    """Every module's ‖u‖, ‖∂J/∂u‖, input and parameter gradients for one training step in torch."""
    model = torch_model()
    model.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()}, strict=True)
    model.train()
    z = torch.as_tensor(x)
    inputs, outputs = [], []
    for m in model:
        inputs.append(z.detach().numpy())
        z = m(z)
        z.retain_grad()
        outputs.append(z)
    loss = torch.nn.functional.cross_entropy(z, torch.as_tensor(y))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in model.named_parameters()}
    after = {k: v.numpy() for k, v in model.state_dict().items()}  # running stats updated
    return inputs, [u.detach().numpy() for u in outputs], [u.grad.numpy() for u in outputs], grads, after


def norm(a):
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64).reshape(-1)))


def close(a, b):
    assert a == pytest.approx(b, rel=1e-9, abs=1e-13)


def test_watch_records_equal_torch_recomputed_from_checkpoints(tmp_path):
    keep = KeepCheckpoints()
    s = prepare(write_config(tmp_path, CONFIG), [])
    s.trainer.callbacks.append(keep)
    assert run_session(s, tmp_path / "runs").exit_code == 0
    assert not hooks.any_registered()  # hooked only during the watched steps
    x, y = s.dataset.train.x, s.dataset.train.y
    records = read_watch(s.folder)
    assert [r["step"] for r in records] == [1, 2, 4]
    compared = 0
    for rec in records:
        step = rec["step"]
        if step - 1 not in keep.by_step:
            continue  # step 1 starts from the initial weights, which no checkpoint holds
        before, after_ckpt = keep.by_step[step - 1], keep.by_step[step]
        inputs, us, vs, grads, after = recompute(before, x, y)
        compared += 1
        mods = rec["modules"]
        assert rec["batch"] == len(x) == 48
        assert [m["name"] for m in mods] == [str(i) for i in range(7)]
        total = 0.0
        for i, m in enumerate(mods):
            close(m["u"], norm(us[i]))
            close(m["v"], norm(vs[i]))  # ∂J/∂u: the gradient reaching the module's output
            for key, p in m.get("params", {}).items():
                name = f"{i}.{key}"
                close(p["norm"], norm(before[name]))
                close(p["grad"], norm(grads[name]))
                close(p["update"], norm(after_ckpt[name] - before[name]) / norm(before[name]))
                total += norm(grads[name]) ** 2
        close(rec["grad_norm"], np.sqrt(total))
        sig = inputs[2]  # the sigmoid's output is LN's input
        close(mods[1]["activity"]["saturated"], float(np.mean((sig < 0.01) | (sig > 0.99))))
        close(mods[5]["activity"]["dead_units"], float(np.mean(np.all(inputs[5] <= 0, axis=0))))
        ln_in, bn_in = inputs[2], inputs[4]
        close(mods[2]["stats"]["input_mean"], ln_in.mean(axis=1).mean())
        close(mods[2]["stats"]["input_std"], ln_in.std(axis=1).mean())
        close(mods[4]["stats"]["input_mean"], bn_in.mean(axis=0).mean())
        close(mods[4]["stats"]["input_std"], bn_in.std(axis=0).mean())
        for buf in ("running_mean", "running_var"):  # after the step's update: the checkpoint's
            close(mods[4]["stats"][buf], after["4." + buf].mean())
            close(mods[4]["stats"][buf], after_ckpt["4." + buf].mean())
    assert compared == 2


def lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "watch.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_watch_log_survives_a_cut_and_a_resume(tmp_path):
    cfg = merge(
        CONFIG,
        {
            "data": {"batch_size": 10},
            "train": {"steps": 12, "checkpoint_every": 4, "watch": {"every": 3}},
        },
    )
    path = write_config(tmp_path, cfg)
    straight = prepare(path, [])
    assert run_session(straight, tmp_path / "a").exit_code == 0
    cut = prepare(path, [])
    # asked to stop after step 7, as SIGINT does: checkpointed at 7
    stop = SimpleNamespace(on_step=lambda t: t.state.step == 7 and t.request_stop("SIGINT"))
    cut.trainer.callbacks.append(stop)
    assert run_session(cut, tmp_path / "b").exit_code == 130
    folder = cut.folder
    assert [r["step"] for r in lines(folder)] == [1, 3, 6]
    # a kill after a record and before the next checkpoint: records past step 7, a torn line
    with open(folder / "watch.jsonl", "a") as fh:
        fh.write(json.dumps({**lines(folder)[-1], "step": 9}) + "\n" + '{"step": 12, "mod')
    resumed = prepare_resume(folder, None, [])
    assert run_session(resumed, tmp_path / "b").exit_code == 0
    assert lines(folder) == lines(straight.folder)
    assert [r["step"] for r in lines(folder)] == [1, 3, 6, 9, 12]


def test_watch_every_must_be_positive_through_the_cli(tmp_path):
    path = write_config(tmp_path, CONFIG)
    r = run_nncli("train", path, "--runs-dir", tmp_path / "runs", "--set", "train.watch.every=0")
    assert r.code == 2, r
    assert "train.watch.every" in r.err and len(r.err.strip().splitlines()) == 1, r
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
