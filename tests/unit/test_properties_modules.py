"""Property tests over random hyper-parameters and shapes for every module family.

For each drawn (layer type, hyper-parameters, per-example input shape, batch size):

- backward matches central differences in float64 (``check_module``, a bounded sample of coordinates);
- ``output_shape`` equals the shape the real forward produces, and sizes too small for a kernel are
  refused by ``output_shape`` with a ShapeError (never another exception);
- float32 and float64 forward and backward agree within float32 tolerance, and float32 stays float32.

Examples are derandomised and no database is kept, so every run draws the same cases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nncli.core.layers  # noqa: F401  (registers every layer type)
from nncli.core.errors import ShapeError
from nncli.core.registry import modules
from nncli.diagnostics.gradcheck import check_module

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")

#: examples per property and family; the whole file stays within seconds
EXAMPLES = 25
#: coordinates checked per tensor by central differences
SAMPLES = 12


# -- strategies: (type, hparams, per-example input shape) per family -----------------------------------


@st.composite
def mm(draw):
    d = draw(st.integers(1, 6))
    return "MM", {"out": draw(st.integers(1, 5)), "bias": draw(st.booleans())}, (d,)


@st.composite
def sigma(draw):
    fn = draw(st.sampled_from(["relu", "sigmoid", "tanh", "leaky_relu", "gelu", "softplus", "identity"]))
    hp = {"fn": fn}
    if fn == "leaky_relu":
        hp["negative_slope"] = draw(st.floats(0.0, 0.5))
    if fn == "gelu":
        hp["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    if fn == "softplus":
        hp["beta"] = draw(st.floats(0.5, 3.0))
        hp["threshold"] = draw(st.floats(1.0, 20.0))
    # a preset name (ReLU, Tanh, …) or the notes' σ with fn
    name = draw(st.sampled_from(["sigma", "σ"]))
    return name, hp, draw(shapes(1, 3))


@st.composite
def ln(draw):
    hp = {"affine": draw(st.sampled_from(["scalar", "per_feature", "none"]))}
    if draw(st.booleans()):
        hp["eps"] = draw(st.floats(1e-6, 1e-2))
    shape = draw(shapes(1, 3, low=1))
    if math.prod(shape) == 1:  # one feature has σ̂ = 0: its own property below
        shape = shape[:-1] + (2,)
    return "LN", hp, shape


def shapes(min_rank, max_rank, low=1, high=4):
    return st.lists(st.integers(low, high), min_size=min_rank, max_size=max_rank).map(tuple)


def _axis_list(draw, nd, values):
    """An int, or (2-D) an int or a per-axis list."""
    vals = [draw(values) for _ in range(nd)]
    if nd == 1:
        return vals[0], vals
    if vals[0] == vals[1] and draw(st.booleans()):
        return vals[0], vals
    return vals, vals


@st.composite
def conv(draw, nd):
    k_hp, k = _axis_list(draw, nd, st.integers(1, 4))
    d_hp, d = _axis_list(draw, nd, st.integers(1, 2))
    s_hp, s = _axis_list(draw, nd, st.integers(1, 3))
    modes = ["valid", "int", "same"] + (["notes"] if all(x % 2 for x in k) else [])
    mode = draw(st.sampled_from(modes))
    if mode == "same":
        s_hp = 1
    if mode == "notes":
        pad = [di * (ki - 1) for ki, di in zip(k, d)]  # lo + hi
        p_hp = "notes"
    elif mode == "same":
        pad = [di * (ki - 1) for ki, di in zip(k, d)]
        p_hp = "same"
    elif mode == "valid":
        pad, p_hp = [0] * nd, "valid"
    else:
        p_hp, p = _axis_list(draw, nd, st.integers(0, 2))
        pad = [2 * x for x in p]
    hp = {
        "out": draw(st.integers(1, 3)),
        "kernel": k_hp,
        "stride": s_hp,
        "padding": p_hp,
        "dilation": d_hp,
        "bias": draw(st.booleans()),
    }
    # the smallest size whose padded length covers the kernel's span, plus a little
    spatial = tuple(max(1, di * (ki - 1) + 1 - pi) + draw(st.integers(0, 3)) for ki, di, pi in zip(k, d, pad))
    name = {1: "Conv1D", 2: "Conv2D"}[nd]
    return name, hp, (draw(st.integers(1, 3)),) + spatial


@st.composite
def pool(draw, nd):
    k_hp, k = _axis_list(draw, nd, st.integers(1, 4))
    hp = {"kernel": k_hp}
    s = k
    if draw(st.booleans()):
        hp["stride"], s = _axis_list(draw, nd, st.integers(1, 3))
    p_hp, p = _axis_list(draw, nd, st.integers(0, 2))
    p = [min(pi, ki // 2) for pi, ki in zip(p, k)]
    hp["padding"] = p if isinstance(p_hp, list) else p[0]
    if nd == 2 and not isinstance(p_hp, list) and p[0] != p[1]:
        hp["padding"] = p
    spatial = tuple(max(1, ki - 2 * pi) + draw(st.integers(0, 3)) for ki, pi in zip(k, p))
    kind = draw(st.sampled_from(["Max", "Avg"]))
    return f"{kind}Pool{nd}D", hp, (draw(st.integers(1, 3)),) + spatial


@st.composite
def flatten(draw):
    return "Flatten", {}, draw(shapes(1, 3))


@st.composite
def reshape(draw):
    factors = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    shape_in = tuple(draw(st.permutations(factors)))
    target = list(draw(st.permutations(factors)))
    if len(target) > 1 and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return "Reshape", {"shape": target}, shape_in


@st.composite
def residual(draw):
    """A body that keeps the shape: MM back to d with σ, LN, or a 'notes'-padded Conv1D back to C."""
    if draw(st.booleans()):
        d = draw(st.integers(1, 5))
        body = [
            {"type": "MM", "out": draw(st.integers(1, 4))},
            {"type": draw(st.sampled_from(["Tanh", "ReLU", "GELU", "LN"]))},
            {"type": "MM", "out": d},
        ]
        return "Residual", {"layers": body}, (d,)
    C, L = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    body = [
        {"type": "Conv1D", "out": C, "kernel": draw(st.sampled_from([1, 3, 5]))},
        {"type": draw(st.sampled_from(["Sigmoid", "LN", "Identity"]))},
    ]
    if draw(st.booleans()):
        body.append(
            {"type": "Residual", "layers": [{"type": "Flatten"}, {"type": "Reshape", "shape": [C, L]}]}
        )
    return "Residual", {"layers": body}, (C, L)


@st.composite
def dropout(draw):
    return "Dropout", {"p": draw(st.floats(0.0, 0.9))}, draw(shapes(1, 3))


FAMILIES = {
    "MM": mm(),
    "sigma": sigma(),
    "LN": ln(),
    "Conv1D": conv(1),
    "Conv2D": conv(2),
    "Pool1D": pool(1),
    "Pool2D": pool(2),
    "Flatten": flatten(),
    "Reshape": reshape(),
    "Residual": residual(),
    "Dropout": dropout(),
}


def make(case, dtype, seed=0):
    name, hp, shape = case
    return modules.create(name, **hp).build(shape, np.random.default_rng(seed), dtype)


def batch(shape, n, seed, dtype=np.float64):
    # entries away from 0 by a random sign·U(0.1, 2): ReLU kinks and pooling ties are unlikely
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 2.0, size=(n, *shape)) * rng.choice([-1.0, 1.0], size=(n, *shape))
    return z.astype(dtype)


# -- properties -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILIES))
def test_backward_matches_central_differences(family):
    @settings(max_examples=EXAMPLES)
    @given(case=FAMILIES[family], n=st.integers(1, 3), seed=st.integers(0, 2**16))
    def prop(case, n, seed):
        m = make(case, np.float64, seed)
        reports = check_module(m, batch(case[2], n, seed), samples=SAMPLES, seed=seed)
        bad = [r for r in reports if not r.passed]
        assert not bad, [r.to_dict() for r in bad]
        # every tensor: the input and each parameter (a Residual's inside its body)
        assert {r.tensor for r in reports} >= {"input", *m.params}
        assert sum(r.checked for r in reports) > 0

    prop()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_output_shape_is_the_forward_shape(family):
    @settings(max_examples=EXAMPLES)
    @given(case=FAMILIES[family], n=st.integers(1, 3))
    def prop(case, n):
        m = make(case, np.float64)
        u = m.forward(batch(case[2], n, 0))
        assert u.shape == (n, *m.output_shape(case[2]))
        assert m.backward(np.ones_like(u)).shape == (n, *case[2])

    prop()


@pytest.mark.parametrize("family", ["Conv1D", "Conv2D", "Pool1D", "Pool2D"])
def test_too_small_inputs_are_a_shape_error(family):
    @settings(max_examples=EXAMPLES)
    @given(case=FAMILIES[family], cut=st.integers(1, 8))
    def prop(case, cut):
        name, hp, shape = case
        m = modules.create(name, **hp)
        small = (shape[0],) + tuple(max(1, s - cut) for s in shape[1:])
        try:
            out = m.output_shape(small)
        except ShapeError as exc:
            assert "too small" in str(exc)
            return
        # when output_shape accepts the size, the forward really produces that shape
        m.build(small, np.random.default_rng(0), np.float64)
        assert m.forward(batch(small, 2, 1)).shape == (2, *out)

    prop()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_float32_agrees_with_float64(family):
    @settings(max_examples=EXAMPLES)
    @given(case=FAMILIES[family], n=st.integers(1, 3), seed=st.integers(0, 2**16))
    def prop(case, n, seed):
        # the same generator state gives the same parameters (and dropout masks), rounded in float32
        m64, m32 = make(case, np.float64, seed), make(case, np.float32, seed)
        if case[0] == "Dropout":  # float32 masks come from float32 draws: compare at eval time
            m64.eval(), m32.eval()
        for key, p in m32.params.items():
            assert p.dtype == np.float32
            m64.params[key][...] = p
        z32 = batch(case[2], n, seed, np.float32)
        u32, u64 = m32.forward(z32), m64.forward(z32.astype(np.float64))
        assert u32.dtype == np.float32
        v = np.random.default_rng(seed + 1).standard_normal(u64.shape)
        d32, d64 = m32.backward(v.astype(np.float32)), m64.backward(v)
        assert d32.dtype == np.float32
        close(u32, u64)
        close(d32, d64)
        for key in m64.grads:
            assert m32.grads[key].dtype == np.float32
            close(m32.grads[key], m64.grads[key])

    prop()


@settings(max_examples=EXAMPLES)
@given(case=dropout(), n=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_float32_dropout_scales_kept_values_and_its_backward_uses_the_same_mask(case, n, seed):
    m = make(case, np.float32, seed)
    m.rng = np.random.default_rng(seed)
    z = batch(case[2], n, seed, np.float32)
    u = m.forward(z)
    mask = m.backward(np.ones_like(u))
    assert u.dtype == mask.dtype == np.float32
    p = case[1]["p"]
    keep = np.float32(1.0 / (1.0 - p))
    assert np.all((mask == 0) | (mask == keep))
    np.testing.assert_array_equal(u, z * mask)


def close(a32, a64):
    scale = max(1.0, float(np.abs(a64).max(initial=0.0)))
    np.testing.assert_allclose(a32, a64, rtol=1e-4, atol=2e-5 * scale)


def test_ln_of_a_single_feature_is_beta_and_finite():
    # σ̂ = √(0 + ε) > 0 keeps a one-feature LN finite: LN-S(z) = 0, so u = β and ∂J/∂z = 0
    m = make(("LN", {}, (1,)), np.float64)
    m.params["bias"][...] = 0.25
    z = np.array([[3.0], [-7.0]])
    u = m.forward(z)
    np.testing.assert_allclose(u, 0.25)
    assert np.all(np.isfinite(m.backward(np.ones_like(u))))


@settings(max_examples=EXAMPLES)
@given(z=st.lists(st.floats(-8, 8), min_size=1, max_size=6))
def test_exact_gelu_is_z_times_the_normal_cdf(z):
    m = make(("GELU", {}, (len(z),)), np.float64)
    want = [0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in z]
    np.testing.assert_allclose(m.forward(np.array([z])), [want], rtol=1e-12, atol=1e-15)


def test_importing_the_modules_leaves_scipy_unloaded():
    # every command starts by importing the modules; scipy.special alone costs about half a second
    import subprocess
    import sys

    code = "import sys, nncli.cli, nncli.core.layers, nncli.config.build; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
