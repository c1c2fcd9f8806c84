"""LN: the notes' definition (7.42-7.43), its scale invariance (7.44), and that broken backwards are caught."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from nncli.core import registry
from nncli.core.layers.linear import MM
from nncli.core.layers.norm import LN
from nncli.core.registry import Registry
from nncli.diagnostics.gradcheck import check_module


def rng(seed=0):
    return np.random.default_rng(seed)


def test_names_and_defaults():
    for name in ("LN", "LayerNorm", "layer_norm", "layernorm"):
        assert registry.modules.lookup(name) is LN
    m = LN().build((2, 3), rng())
    assert m.cfg.eps == 1e-5 and m.cfg.affine == "scalar"
    assert m.params["weight"].shape == () and m.params["bias"].shape == ()
    assert m.param_count == 2
    assert LN(affine="per_feature").build((2, 3), rng()).params["weight"].shape == (2, 3)
    assert LN(affine="none").build((4,), rng()).params == {}


@pytest.mark.parametrize("bad", [{"eps": 0}, {"eps": -1e-5}, {"affine": "channel"}, {"gamma": 2}])
def test_bad_hyperparameters_are_refused(bad):
    with pytest.raises(ValidationError):
        LN(**bad)


def test_forward_is_the_notes_definition():
    """LN(z) = β + γ (z − μ̂)/√(σ̂² + ε), μ̂, σ̂² over all C·L features of each example."""
    eps = 1e-3
    m = LN(eps=eps).build((2, 5), rng())
    m.params["weight"][...] = 1.7
    m.params["bias"][...] = -0.4
    z = rng(1).normal(loc=3.0, scale=2.0, size=(4, 2, 5))
    u = m.forward(z)
    for n in range(4):
        flat = z[n].ravel()
        mu, var = flat.mean(), ((flat - flat.mean()) ** 2).mean()
        want = -0.4 + 1.7 * (z[n] - mu) / np.sqrt(var + eps)
        np.testing.assert_allclose(u[n], want, rtol=1e-12, atol=1e-12)
    # with γ = 1, β = 0 each example has mean 0 and variance σ̂²/(σ̂² + ε), just under 1
    m.params["weight"][...] = 1.0
    m.params["bias"][...] = 0.0
    u = m.forward(z).reshape(4, -1)
    var = z.reshape(4, -1).var(axis=1)
    np.testing.assert_allclose(u.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(u.var(axis=1), var / (var + eps), rtol=1e-12)


def test_eps_keeps_constant_examples_finite():
    m = LN().build((6,), rng())
    z = np.full((2, 6), 5.0)
    u = m.forward(z)
    dz = m.backward(np.ones_like(z))
    assert np.all(u == 0) and np.all(np.isfinite(dz))


@pytest.mark.parametrize("affine", ["scalar", "per_feature", "none"])
def test_scale_invariance_eq_7_44(affine):
    """LN(MM_{αW,αb}(z)) = LN(MM_{W,b}(z)) for α > 0 (exact as ε → 0)."""
    z = rng(2).normal(size=(5, 4))
    mm = MM(out=6).build((4,), rng(3))
    ln = LN(eps=1e-18, affine=affine).build((6,), rng(4))  # ε tiny: its effect is below rounding
    for p in ln.params.values():
        p[...] = p + rng(5).normal(size=p.shape)
    base_h = mm.forward(z)
    base = ln.forward(base_h)
    W, b = mm.params["weight"].copy(), mm.params["bias"].copy()
    for alpha in (0.01, 3.7, 250.0):
        mm.params["weight"][...] = alpha * W
        mm.params["bias"][...] = alpha * b
        h = mm.forward(z)
        assert not np.allclose(h, base_h)  # MM's output does change ...
        np.testing.assert_allclose(ln.forward(h), base, rtol=1e-9, atol=1e-11)  # ... LN's does not
    # α < 0 flips the sign of LN-S: the property really needs α > 0
    mm.params["weight"][...] = -W
    mm.params["bias"][...] = -b
    assert not np.allclose(ln.forward(mm.forward(z)), base)


def test_ln_backward_in_float32_tracks_float64():
    z = rng(6).normal(scale=4.0, size=(16, 32))
    v = rng(7).normal(size=z.shape)
    out = {}
    for dt in (np.float32, np.float64):
        m = LN(affine="per_feature").build((32,), rng(8), dt)
        m.forward(z.astype(dt))
        out[dt] = m.backward(v.astype(dt))
        assert out[dt].dtype == dt
    np.testing.assert_allclose(out[np.float32], out[np.float64], rtol=1e-3, atol=1e-4)


def test_scalar_to_torch_state_dict_matches():
    pytest.importorskip("torch", reason="PyTorch cross-checks need torch installed")
    m = LN().build((2, 3), rng())
    m.params["weight"][...] = 2.5
    sd = m.to_torch().state_dict()
    assert set(sd) == {"weight", "bias"}
    assert tuple(sd["weight"].shape) == () and float(sd["weight"]) == 2.5
    t = LN(affine="per_feature", eps=1e-3).build((2, 3), rng()).to_torch()
    assert tuple(t.normalized_shape) == (2, 3) and t.eps == 1e-3


# -- broken backward functions are caught ---------------------------------------------------------

broken = Registry("layer")


@broken.register("MM_missing_transpose")
class MMMissingTranspose(MM):
    """∂J/∂W computed as zᵀ v instead of vᵀ z (the shapes agree when W is square)."""

    def backward(self, v):
        self.grads["weight"] += self._z.T @ v
        self.grads["bias"] += v.sum(axis=0)
        return v @ self.params["weight"]


@broken.register("MM_input_missing_transpose")
class MMInputMissingTranspose(MM):
    """∂J/∂z computed as v Wᵀ instead of v W."""

    def backward(self, v):
        self.grads["weight"] += v.T @ self._z
        self.grads["bias"] += v.sum(axis=0)
        return v @ self.params["weight"].T


@broken.register("LN_without_mean_term")
class LNWithoutMeanTerm(LN):
    """Drops the path through μ̂: ∂J/∂z = (g − x̂ · mean(g ⊙ x̂)) / σ̂."""

    def backward(self, v):
        xhat, rstd = self._xhat, self._rstd
        g = v.reshape(xhat.shape) * self.params["weight"]
        self.grads["weight"] += np.sum(v.reshape(xhat.shape) * xhat)
        self.grads["bias"] += np.sum(v)
        dz = (g - xhat * (g * xhat).mean(axis=1, keepdims=True)) * rstd[:, None]
        return dz.reshape(v.shape)


@pytest.mark.parametrize(
    "name, bad_tensor",
    [
        ("MM_missing_transpose", "weight"),
        ("MM_input_missing_transpose", "input"),
        ("LN_without_mean_term", "input"),
    ],
)
def test_check_module_catches_broken_backward(name, bad_tensor):
    hp = {"out": 4} if name.startswith("MM") else {}
    module = broken.create(name, **hp).build((4,), rng(9))
    for p in module.params.values():
        p[...] = p + rng(10).normal(size=p.shape)
    reports = {r.tensor: r for r in check_module(module, rng(11).normal(size=(3, 4)))}
    assert not reports[bad_tensor].passed
    assert reports[bad_tensor].max_rel > 1e-3
    # the other tensors of the same module are still right, so the check is not failing wholesale
    assert all(r.passed for t, r in reports.items() if t != bad_tensor)
