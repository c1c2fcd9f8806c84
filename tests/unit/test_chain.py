"""The chain: forward/backward end to end, and state dicts that load into torch.nn.Sequential."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.core import registry
from nncli.core.chain import Chain
from nncli.diagnostics.gradcheck import check_chain

LAYERS = [
    {"type": "Flatten"},
    {"type": "MM", "out": 6},
    {"type": "LN"},
    {"type": "ReLU"},
    {
        "type": "Residual",
        "layers": [{"type": "MM", "out": 6}, {"type": "Tanh"}, {"type": "LN", "affine": "per_feature"}],
    },
    {"type": "Dropout", "p": 0.25},
    {"type": "LayerNorm", "affine": "none"},
    {"type": "Dense", "out": 3},
]


def make_chain(seed=0, layers=LAYERS, input_shape=(2, 3), loss="cross_entropy"):
    modules = [
        registry.modules.create(spec["type"], **{k: v for k, v in spec.items() if k != "type"})
        for spec in layers
    ]
    chain = Chain(modules, loss=registry.losses.create(loss))
    chain.build(input_shape, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 100)
    for _, p, _ in chain.parameters():  # move γ, β off 1, 0 so every parameter matters
        p[...] = p + 0.3 * rng.normal(size=p.shape)
    return chain


def test_named_parameters_and_shapes():
    chain = make_chain()
    got = {k: p.shape for k, p, _ in chain.parameters()}
    assert got == {
        "1.weight": (6, 6),
        "1.bias": (6,),
        "2.weight": (),
        "2.bias": (),
        "4.body.0.weight": (6, 6),
        "4.body.0.bias": (6,),
        "4.body.2.weight": (6,),
        "4.body.2.bias": (6,),
        "7.weight": (3, 6),
        "7.bias": (3,),
    }
    assert chain.output_shape() == (3,)
    assert chain.param_count == sum(int(np.prod(s)) for s in got.values())


def test_state_dict_round_trip():
    a, b = make_chain(0), make_chain(1)
    x = np.random.default_rng(2).normal(size=(4, 2, 3))
    a.eval(), b.eval()
    assert not np.allclose(a.forward(x), b.forward(x))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    with pytest.raises(KeyError, match="4.body.0.bias"):
        b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "4.body.0.bias"})


def test_state_dict_loads_into_torch_sequential():
    torch = pytest.importorskip("torch", reason="PyTorch cross-checks need torch installed")
    ours = make_chain(0)
    seq = torch.nn.Sequential(*[m.to_torch() for m in ours.modules])
    theirs = {k: tuple(v.shape) for k, v in seq.state_dict().items()}
    assert theirs == {k: p.shape for k, p in ours.state_dict().items()}

    # a differently initialised chain's weights, loaded strictly, give that chain's outputs
    other = make_chain(1)
    seq.load_state_dict({k: torch.from_numpy(v) for k, v in other.state_dict().items()}, strict=True)
    other.eval()
    seq.eval()
    x = np.random.default_rng(3).normal(size=(5, 2, 3))
    with torch.no_grad():
        want = seq(torch.from_numpy(x)).numpy()
    got = other.forward(x)
    assert np.max(np.abs(got - want)) <= 1e-10 * np.max(np.abs(want))
    assert not np.allclose(ours.eval().forward(x), got)


def test_training_step_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch cross-checks need torch installed")
    layers = [spec for spec in LAYERS if spec["type"] != "Dropout"]  # torch draws its own masks
    chain = make_chain(0, layers=layers)
    seq = torch.nn.Sequential(*[m.to_torch() for m in chain.modules])
    x = np.random.default_rng(4).normal(size=(5, 2, 3))
    y = np.array([0, 2, 1, 1, 0])
    J, _ = chain.loss_and_grad(x, y)
    Jt = torch.nn.functional.cross_entropy(seq(torch.from_numpy(x)), torch.from_numpy(y))
    Jt.backward()
    assert pytest.approx(Jt.item(), rel=1e-12) == J
    grads = {k: g for k, _, g in chain.parameters()}
    for k, p in seq.named_parameters():
        scale = p.grad.abs().max().item()
        assert np.max(np.abs(grads[k] - p.grad.numpy())) <= 1e-10 * scale, k


@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_check_chain_mlp_with_ln_and_residual(loss):
    layers = LAYERS if loss == "cross_entropy" else LAYERS[:-1] + [{"type": "MM", "out": 2}]
    chain = make_chain(0, layers=layers, loss=loss)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 2, 3))
    y = rng.integers(0, 3, size=4) if loss == "cross_entropy" else rng.normal(size=(4, 2))
    reports = check_chain(chain, x, y)
    assert {r.tensor for r in reports} == {"input", *chain.state_dict()}
    bad = [f"{r.tensor}: {r.max_rel:.2e}" for r in reports if not r.passed]
    assert not bad
    assert all(r.checked > 0 for r in reports)


def test_check_chain_catches_a_wrong_nested_gradient():
    chain = make_chain(0)
    inner = chain.modules[4].body.modules[0]
    original = inner.backward

    def off_by_half(v):
        dz = original(v)
        inner.grads["bias"] *= 0.5  # a bug that only touches a nested parameter
        return dz

    inner.backward = off_by_half
    rng = np.random.default_rng(6)
    reports = {r.tensor: r for r in check_chain(chain, rng.normal(size=(3, 2, 3)), np.array([0, 1, 2]))}
    assert not reports["4.body.0.bias"].passed
    assert reports["4.body.0.weight"].passed and reports["input"].passed


@pytest.mark.parametrize(
    "layers, shape",
    [
        ([("Flatten", {}), ("MM", {"out": 5}), ("ReLU", {}), ("MM", {"out": 3})], (2, 3)),
        (
            [
                ("ReLU", {}),
                ("Conv1D", {"out": 4, "kernel": 3}),
                ("ReLU", {}),
                ("Flatten", {}),
                ("MM", {"out": 3}),
            ],
            (2, 7),
        ),
        ([("Conv2D", {"out": 2, "kernel": 3, "stride": 2}), ("Flatten", {}), ("MM", {"out": 3})], (1, 5, 5)),
        ([("Residual", {"layers": [{"type": "MM", "out": 4}, {"type": "Tanh"}]}), ("MM", {"out": 3})], (4,)),
        ([("ReLU", {}), ("Flatten", {})], (3,)),
    ],
)
def test_training_backward_skips_only_the_unread_input_gradient(layers, shape):
    """loss_and_grad stops at the first trainable module and asks it for ∂J/∂θ only; every
    parameter gradient must equal the full backward pass's."""
    rng = np.random.default_rng(0)
    modules = [registry.modules.create(t, **kw) for t, kw in layers]
    out = 3 if layers[-1][0] == "MM" else int(np.prod(shape))
    chain = Chain(modules, registry.losses.create("cross_entropy")).build(shape, rng)
    x, y = rng.normal(size=(6, *shape)), rng.integers(0, out, size=6)
    J, _ = chain.loss_and_grad(x, y)
    fast = {k: g.copy() for k, _, g in chain.parameters()}
    chain.zero_grads()
    h = chain.forward(x)
    assert chain.loss.forward(h, y) == J
    dx = chain.backward(chain.loss.backward())  # the full pass, ∂J/∂x included
    assert dx.shape == x.shape
    for k, _, g in chain.parameters():
        np.testing.assert_array_equal(fast[k], g, err_msg=k)
