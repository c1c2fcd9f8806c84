"""Updates that overflow float32: training stops before a NaN checkpoint is written, and finite
gradients whose norm overflows are not divergence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from bad_inputs import GOOD
from support import run_many, run_nncli


def checkpoint_arrays(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out = {}
    for f in sorted((run / "checkpoints").glob("*.safetensors")):
        out.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    return out


def test_an_overflowing_update_stops_before_a_nan_checkpoint_is_written(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(GOOD)
    every = ("--set", "train.eval_every=1", "--set", "train.steps=6")
    res = run_many(
        {
            # lr 0.1 for two steps, then 1e39: Adam's update overflows float32 at step 3
            "adam lr 1e39": dict(
                args=[
                    "train",
                    cfg,
                    "--runs-dir",
                    tmp_path / "a",
                    "--json",
                    *every,
                    "--set",
                    "optimizer.type=adam",
                    "--set",
                    "schedule={type: step, step_size: 2, gamma: 1e40}",
                ]
            ),
            "weight decay 1e39": dict(
                args=[
                    "train",
                    cfg,
                    "--runs-dir",
                    tmp_path / "b",
                    "--json",
                    *every,
                    "--set",
                    "optimizer.weight_decay=1e39",
                ]
            ),
            "ignore": dict(
                args=[
                    "train",
                    cfg,
                    "--runs-dir",
                    tmp_path / "c",
                    "--json",
                    *every,
                    "--set",
                    "optimizer.weight_decay=1e39",
                    "--set",
                    "train.on_nonfinite=ignore",
                ]
            ),
        }
    )
    adam, wd, ignore = res["adam lr 1e39"], res["weight decay 1e39"], res["ignore"]
    assert adam.code == 3, adam
    assert "the update of step 3 made parameter" in adam.err and "overflowed float32" in adam.err, adam
    assert "the last good checkpoint (step 2) is kept" in adam.err, adam
    assert json.loads(adam.out)["steps"] == 2
    assert (
        wd.code == 3 and "no checkpoint had been written yet" in wd.err and "weight decay 1e+39" in wd.err
    ), wd
    assert ignore.code == 0, ignore
    for r in (adam, wd, ignore):
        run = Path(json.loads(r.out)["run_dir"])
        arrays = checkpoint_arrays(run)
        assert all(np.all(np.isfinite(a)) for a in arrays.values() if a.dtype.kind == "f"), (
            r,
            sorted(arrays),
        )
    assert checkpoint_arrays(Path(json.loads(adam.out)["run_dir"]))  # step 2's checkpoint is there


def test_finite_float32_gradients_whose_norm_overflows_do_not_diverge(tmp_path):
    # ‖g‖² ≈ 5·(1.5e19)² > 3.4e38 in float32, every gradient entry finite
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", x=rng.standard_normal((40, 4)), y=np.full((40, 1), 1.5e19))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model: {input_shape: [4], layers: [{type: MM, out: 1}]}\nloss: squared\n"
        "data: {source: big.npz, batch_size: 1}\noptimizer: {type: sgd, lr: 1e-45}\n"
        "train: {steps: 2, eval_every: 1}\n"
    )
    for extra in ((), ("--set", "train.clip_grad_norm=1.0")):
        res = run_nncli(
            "train", cfg, "--runs-dir", tmp_path / "runs", "--quiet", "--json", *extra, cwd=tmp_path
        )
        assert res.code == 0 and json.loads(res.out)["status"] == "completed", res
