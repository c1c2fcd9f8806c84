"""BatchNorm's running statistics against PyTorch's over training steps, its train/eval switch and
the buffers in state dicts; GroupNorm's special cases (LN and InstanceNorm)."""

from __future__ import annotations

import numpy as np
import pytest

import nncli  # noqa: F401  (registers every module)
from nncli.core.chain import Chain
from nncli.core.errors import ShapeError
from nncli.core.registry import modules


@pytest.mark.parametrize(
    "name, hp, shape",
    [
        ("BatchNorm1d", {}, (3,)),
        ("BatchNorm1D", {"momentum": None}, (3, 5)),
        ("BatchNorm2d", {"momentum": 0.3, "eps": 1e-3}, (2, 4, 3)),
    ],
)
def test_running_statistics_equal_torch_after_20_steps(name, hp, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    bn = modules.lookup(name)(**hp).build(shape, rng)
    tbn = bn.to_torch().train()
    opt = torch.optim.SGD(tbn.parameters(), lr=0.1)
    for _ in range(20):
        z = rng.normal(1.5, 2.0, size=(6, *shape))
        v = rng.normal(size=z.shape)
        bn.zero_grads()
        bn.forward(z)
        bn.backward(v)
        for k, p in bn.params.items():
            p -= 0.1 * bn.grads[k]  # the same SGD step as torch's
        opt.zero_grad()
        tbn(torch.tensor(z)).backward(torch.tensor(v))
        opt.step()
    state = {k: t.numpy() for k, t in tbn.state_dict().items()}
    assert state["num_batches_tracked"] == 20 == bn.buffers["num_batches_tracked"]
    assert bn.buffers["num_batches_tracked"].dtype == np.int64
    for k in ("running_mean", "running_var", "weight", "bias"):
        np.testing.assert_allclose(Chain([bn]).state_dict()[f"0.{k}"], state[k], rtol=1e-12, err_msg=k)


def test_eval_uses_running_statistics_and_leaves_them_alone():
    rng = np.random.default_rng(1)
    bn = modules.lookup("BatchNorm2d")().build((2, 3, 3), rng)
    z = rng.normal(size=(4, 2, 3, 3))
    bn.forward(z)
    before = {k: b.copy() for k, b in bn.buffers.items()}
    bn.eval()
    u = bn.forward(z[:1])  # one example: eval needs no batch
    mean, var = before["running_mean"].reshape(1, 2, 1, 1), before["running_var"].reshape(1, 2, 1, 1)
    np.testing.assert_allclose(u, (z[:1] - mean) / np.sqrt(var + 1e-5), rtol=1e-14)
    for k, b in bn.buffers.items():
        np.testing.assert_array_equal(b, before[k])


def test_buffers_are_in_the_state_dict_but_not_trained():
    from nncli.training.optimizers import make_optimizer

    chain = Chain([modules.lookup("MM")(out=3), modules.lookup("BatchNorm1d")()]).build(
        (4,), np.random.default_rng(0)
    )
    state = chain.state_dict()
    assert set(state) == {
        "0.weight", "0.bias", "1.weight", "1.bias",
        "1.running_mean", "1.running_var", "1.num_batches_tracked",
    }  # fmt: skip
    assert "1.running_mean" not in {k for k, _, _ in chain.parameters()}
    assert chain.param_count == 4 * 3 + 3 + 2 * 3
    state["1.running_var"][:] = 7.0
    chain.load_state_dict(state)
    assert np.all(chain.modules[1].buffers["running_var"] == 7.0)
    with pytest.raises(KeyError, match="running_mean"):
        chain.load_state_dict({k: v for k, v in state.items() if k != "1.running_mean"})
    # an optimiser holds parameters only
    from nncli.config.schema import OptimizerConfig

    opt = make_optimizer(OptimizerConfig(type="adam", lr=0.1), chain)
    assert len(opt.params) == 4


def test_a_batch_of_one_in_training_is_refused_by_name():
    bn = modules.lookup("BatchNorm1d")().build((3,), np.random.default_rng(0))
    with pytest.raises(ShapeError, match="more than one value per channel"):
        bn.forward(np.ones((1, 3)))
    bn.eval()
    assert bn.forward(np.ones((1, 3))).shape == (1, 3)


@pytest.mark.parametrize("groups, other", [(1, "LayerNorm"), (4, "InstanceNorm1d")])
def test_group_norm_special_cases(groups, other):
    torch = pytest.importorskip("torch")
    z = np.random.default_rng(2).normal(size=(3, 4, 5))
    gn = modules.lookup("GroupNorm")(num_groups=groups, affine=False).build((4, 5), np.random.default_rng(0))
    ref = torch.nn.LayerNorm([4, 5], elementwise_affine=False) if groups == 1 else torch.nn.InstanceNorm1d(4)
    np.testing.assert_allclose(gn.forward(z), ref.double()(torch.tensor(z)).numpy(), rtol=1e-10, atol=1e-12)
