"""A run with BatchNorm: its running statistics are checkpointed under PyTorch's names (the weights
file loads into torch with strict=True and predicts the same), and a resume is bit-exact."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from support import write_config
from test_resume import CONFIG, weights
from test_resume import run as run_config

from nncli.runs.loaded_run import load_run
from nncli.runs.session.resume import prepare_resume
from nncli.runs.train_run import run_session

pytestmark = pytest.mark.slow

BN_CONFIG = copy.deepcopy(CONFIG)
BN_CONFIG["name"] = "bn"
BN_CONFIG["model"]["layers"] = [
    {"type": "MM", "out": 12},
    {"type": "BatchNorm1d"},
    {"type": "ReLU"},
    {"type": "Dropout", "p": 0.3},
    {"type": "MM", "out": 3},
]


def test_resume_with_batchnorm_is_bit_exact(tmp_path):
    cfg = write_config(tmp_path, BN_CONFIG, "bn.yaml")
    code, straight = run_config(cfg, tmp_path / "a")
    assert code == 0
    code, cut = run_config(cfg, tmp_path / "b", stop_at=4)
    assert code == 130
    assert weights(cut)["1.num_batches_tracked"] == 4
    assert run_session(prepare_resume(cut, None, []), tmp_path / "b").exit_code == 0
    a, b = weights(straight), weights(cut)
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= a.keys() == b.keys()
    assert a["1.num_batches_tracked"] == 12  # 2 epochs of 6 batches
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_checkpoint_loads_into_torch_strict(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    cfg = write_config(tmp_path, BN_CONFIG, "bn.yaml")
    code, folder = run_config(cfg, tmp_path / "r")
    assert code == 0
    loaded = load_run(folder, "last")
    model = loaded.chain.to_torch()
    model.load_state_dict(load_file(str(folder / "checkpoints" / "last.safetensors")), strict=True)
    assert model[1].num_batches_tracked.item() == 12
    x = np.random.default_rng(0).normal(size=(7, 2))
    with torch.no_grad():
        want = model.eval()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(loaded.chain.eval().forward(x), want, rtol=1e-12)
