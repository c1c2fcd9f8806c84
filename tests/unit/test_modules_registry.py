"""Every registered module and loss, at each of its examples: gradient checks and PyTorch cross-checks.

The cases are read from the registries when the tests are collected, so a module registered later
(conv, pooling, ...) is checked the day it is added, with the settings its ``examples()`` lists.
"""

from __future__ import annotations

import numpy as np
import pytest

import nncli  # noqa: F401  (registers every module and loss)
from nncli.core import registry
from nncli.core.chain import Chain
from nncli.diagnostics.gradcheck import check_chain, check_loss, check_module

N = 3  # examples per batch: small, but more than one so batch sums are exercised

CASES = [
    pytest.param(cls, hp, shape, id=f"{name}-{i}")
    for name, cls in registry.modules.canonical_classes().items()
    for i, (hp, shape) in enumerate(cls.examples())
]


def _has_buffers(cls, hp, shape) -> bool:
    return bool(cls(**hp).build(shape, np.random.default_rng(0)).buffers)


#: modules whose eval mode computes something else (running statistics): checked in both modes
MODE_CASES = [
    pytest.param(*case.values, mode, id=f"{case.id}-{mode}")
    for case in CASES
    for mode in (("train", "eval") if _has_buffers(*case.values) else ("train",))
]


def build(cls, hp, shape, dtype=np.float64, seed=0, mode="train"):
    """A built module whose parameters and float buffers (running statistics) are moved off their
    init (γ = 1 would hide a missing γ), in training or eval ``mode``."""
    rng = np.random.default_rng(seed)
    module = cls(**hp).build(shape, rng, dtype)
    for _, p, _ in Chain([module]).parameters():
        p[...] = p + 0.3 * rng.normal(size=p.shape)
    for _, b in Chain([module]).named_buffers():
        if np.issubdtype(b.dtype, np.floating):
            b[...] = b + 0.3 * np.abs(rng.normal(size=b.shape))  # a variance stays positive
    z = rng.normal(size=(N, *shape)).astype(dtype)
    module.train(mode == "train")
    return module, z


def all_grads(module) -> dict[str, np.ndarray]:
    """Parameter gradients by torch state-dict key (own and nested, e.g. ``body.0.weight``)."""
    return {k.split(".", 1)[1]: g for k, _, g in Chain([module]).parameters()}


class _Dot:
    """J = Σ h ⊙ G: lets check_chain reach the parameters of a module's children."""

    def __init__(self, G):
        self.G = G

    def forward(self, h, y):
        return float(np.sum(h * self.G))

    def backward(self):
        return self.G.copy()


def assert_all_passed(reports):
    bad = [r for r in reports if not r.passed]
    assert not bad, "\n".join(
        f"{r.module}.{r.tensor}: max_rel={r.max_rel:.2e} at {r.worst_index} "
        f"analytic={r.analytic:.6g} numeric={r.numeric:.6g} {r.notes}"
        for r in bad
    )
    for r in reports:
        if int(np.prod(r.shape)) > 0:
            assert r.checked >= 1, f"{r.module}.{r.tensor}: no coordinate checked ({r.skipped} skipped)"


def test_registry_lists_the_core_modules():
    names = set(registry.modules.canonical_classes())
    assert {"MM", "sigma", "LN", "Flatten", "Reshape", "Dropout", "Residual"} <= names
    assert len(CASES) >= 2 * len(names)


@pytest.mark.parametrize("cls, hp, shape, mode", MODE_CASES)
def test_gradcheck_every_module(cls, hp, shape, mode):
    module, z = build(cls, hp, shape, mode=mode)
    reports = check_module(module, z)
    tensors = {r.tensor for r in reports}
    assert {"input", *module.params} <= tensors
    assert_all_passed(reports)
    # parameters of children (a Residual's body) are reached through a chain with J = Σ u ⊙ G
    if module.children():
        G = np.random.default_rng(1).normal(size=module.forward(z).shape)
        chain = Chain([module], loss=_Dot(G), input_shape=shape)
        reports = check_chain(chain, z, None)
        assert len(reports) == 1 + len(all_grads(module))
        assert_all_passed(reports)


@pytest.mark.parametrize("cls, hp, shape", CASES)
def test_shapes_dtype_and_protocol(cls, hp, shape):
    module, z = build(cls, hp, shape, dtype=np.float32)
    u = module.forward(z)
    assert u.shape == (N, *module.output_shape(shape))
    assert u.dtype == np.float32, f"float32 input gave {u.dtype} output"
    v = np.random.default_rng(2).normal(size=u.shape).astype(np.float32)
    v_before = v.copy()
    dz = module.backward(v)
    assert dz.shape == z.shape and dz.dtype == np.float32
    assert np.array_equal(v, v_before), "backward mutated v"
    for g in all_grads(module).values():
        assert g.dtype == np.float32
    facts = module.describe()
    assert {"formula", "macs_forward", "macs_backward", "saved"} <= set(facts)
    assert module.param_count == 0 or str(module.param_count) in facts["formula"]


@pytest.mark.parametrize("cls, hp, shape", CASES)
def test_backward_accumulates(cls, hp, shape):
    """Two passes add up ∂J/∂θ (never assign it) and return the same ∂J/∂z each time; a module
    without parameters has no gradients to accumulate."""
    module, z = build(cls, hp, shape)
    v = np.random.default_rng(3).normal(size=(N, *module.output_shape(shape)))
    Chain([module]).zero_grads()
    dz = []
    for _ in range(2):
        if hasattr(module, "rng"):
            module.rng = np.random.default_rng(7)  # the same dropout mask both times
        module.forward(z)
        dz.append(module.backward(v))
    np.testing.assert_array_equal(dz[0], dz[1], err_msg="∂J/∂z depends on the gradients already accumulated")
    assert np.any(dz[0] != 0), "∂J/∂z is zero for a random upstream gradient"
    twice = {k: g.copy() for k, g in all_grads(module).items()}
    if Chain([module]).param_count == 0:  # own and nested parameters
        assert twice == {}, "a module without parameters has gradients"
        return
    Chain([module]).zero_grads()
    module.forward(z)
    module.backward(v)
    once = all_grads(module)
    assert any(np.any(g != 0) for g in once.values()), "no parameter received a gradient"
    for k, g in once.items():
        np.testing.assert_allclose(twice[k], 2 * g, rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("cls, hp, shape, mode", MODE_CASES)
def test_matches_torch(cls, hp, shape, mode):
    torch = pytest.importorskip("torch", reason="PyTorch cross-checks need torch installed")
    module, z = build(cls, hp, shape, mode=mode)
    tmod = module.to_torch()
    if hasattr(module, "rng"):
        # torch draws its own masks: compare stochastic modules at eval time
        module.eval()
    tmod.train(module.training)
    assert set(tmod.state_dict()) == {k.split(".", 1)[1] for k in Chain([module]).state_dict()}
    v = np.random.default_rng(4).normal(size=(N, *module.output_shape(shape)))
    u = module.forward(z)
    dz = module.backward(v)
    zt = torch.tensor(z, requires_grad=True)
    ut = tmod(zt)
    ut.backward(torch.tensor(v))
    close(u, ut.detach().numpy(), "output")
    close(dz, zt.grad.numpy(), "input gradient")
    ours = all_grads(module)
    for k, p in tmod.named_parameters():
        assert tuple(p.shape) == ours[k].shape, k
        close(ours[k], p.grad.numpy(), k)
    for k, b in tmod.named_buffers():  # running statistics after the batch
        close(module.buffers[k], b.numpy(), k)


def close(a, b, what, rtol=1e-10):
    """max |a − b| ≤ rtol · max |b| (relative to the tensor's scale, as entries may be ~0)."""
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
    err = float(np.max(np.abs(a - b), initial=0.0))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3e}, relative {err / scale:.3e}"


# -- losses ----------------------------------------------------------------------------------------

LOSSES = [pytest.param(cls, id=name) for name, cls in registry.losses.canonical_classes().items()]


def loss_case(cls, scale=1.0, seed=0, c=4):
    """Outputs h and targets y fitting the loss's target kind."""
    rng = np.random.default_rng(seed)
    kind = cls.target_kind
    if kind == "class":
        return scale * rng.normal(size=(5, c)), rng.integers(0, c, size=5)
    if kind == "binary":
        return scale * rng.normal(size=(5, 1)), rng.integers(0, 2, size=5)
    return scale * rng.normal(size=(5, 2)), rng.normal(size=(5, 2))


def torch_loss(name, h, y):
    """The PyTorch reference value of each registered loss (mean over the batch)."""
    import torch
    import torch.nn.functional as F

    refs = {
        "cross_entropy": lambda: F.cross_entropy(h, y.long()),
        "logistic": lambda: F.binary_cross_entropy_with_logits(h, y.reshape(h.shape).to(h.dtype)),
        "squared": lambda: 0.5 * ((h - y.reshape(h.shape)) ** 2).sum() / h.shape[0],
        "mse": lambda: torch.nn.MSELoss()(h, y.reshape(h.shape).to(h.dtype)),
    }
    if name not in refs:
        pytest.fail(f"no PyTorch reference for loss {name!r}: add one to torch_loss()")
    return refs[name]()


@pytest.mark.parametrize("cls", LOSSES)
def test_gradcheck_every_loss(cls):
    h, y = loss_case(cls)
    assert_all_passed(check_loss(cls(), h, y))


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("cls", LOSSES)
def test_loss_matches_torch(cls, scale):
    torch = pytest.importorskip("torch", reason="PyTorch cross-checks need torch installed")
    h, y = loss_case(cls, scale=scale)
    if scale > 1:
        h = np.sign(h) * scale  # logits of exactly ±1e4: exp overflows unless shifted
    loss = cls()
    J = loss.forward(h, y)
    dh = loss.backward()
    assert np.isfinite(J) and np.all(np.isfinite(dh))
    ht = torch.tensor(h, requires_grad=True)
    Jt = torch_loss(registry.losses.canonical_name(cls), ht, torch.tensor(y))
    Jt.backward()
    close(np.array(J), Jt.detach().numpy(), "loss")
    close(dh, ht.grad.numpy(), "loss gradient")


def test_every_layer_gives_its_trace_equations():
    """Each built-in layer's class writes its own forward and backward for ``inspect --trace``."""
    from nncli.core.module import GENERIC_EQUATIONS

    generic = [
        name
        for name, cls in registry.modules.canonical_classes().items()
        if any(
            cls(**hp).build(shape, np.random.default_rng(0)).trace_equations() == GENERIC_EQUATIONS
            for hp, shape in cls.examples()
        )
    ]
    assert generic == []
