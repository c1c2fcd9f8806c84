"""Conv1D / Conv2D: gradients, agreement with PyTorch, the notes' properties (7.49, kCC'), shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.core.errors import ConfigError, ShapeError
from nncli.core.layers.conv import Conv1D, Conv2D
from nncli.core.registry import modules
from nncli.diagnostics.gradcheck import check_module


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _setting_id(case):
    cls, hp, shape = case
    return f"{cls.__name__}-{hp}-{shape}"


EXAMPLES = [(cls, hp, shape) for cls in (Conv1D, Conv2D) for hp, shape in cls.examples()]


@pytest.mark.parametrize("case", EXAMPLES, ids=_setting_id)
def test_gradcheck_examples(case):
    cls, hp, shape = case
    rng = np.random.default_rng(1)
    m = cls(**hp).build(shape, rng)
    reports = check_module(m, rng.normal(size=(2,) + shape))
    assert {r.tensor for r in reports} == {"input", *m.params}
    for r in reports:
        assert r.passed and r.checked > 0, r


TORCH_CASES = [
    (Conv1D, {"out": 3, "kernel": 5}, (2, 11)),
    (Conv1D, {"out": 2, "kernel": 3, "stride": 2, "padding": 2, "dilation": 2}, (3, 13)),
    (Conv1D, {"out": 4, "kernel": 4, "padding": "same", "dilation": 3}, (2, 12)),
    (Conv1D, {"out": 2, "kernel": 3, "stride": 3, "padding": "valid", "bias": False}, (2, 10)),
    (Conv2D, {"out": 3, "kernel": 3}, (2, 6, 5)),
    (
        Conv2D,
        {"out": 2, "kernel": [3, 2], "stride": [2, 3], "padding": [2, 1], "dilation": [1, 2]},
        (3, 9, 8),
    ),
    (Conv2D, {"out": 2, "kernel": [2, 4], "padding": "same"}, (2, 5, 7)),
    (Conv2D, {"out": 3, "kernel": 1, "stride": 2, "padding": "valid"}, (2, 5, 5)),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=_setting_id)
def test_matches_torch_float64(case):
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the cross-check")
    cls, hp, shape = case
    rng = np.random.default_rng(2)
    m = cls(**hp).build(shape, rng)
    t = m.to_torch()
    z = rng.normal(size=(3,) + shape)
    zt = torch.from_numpy(z.copy()).requires_grad_()
    ut = t(zt)
    u = m.forward(z)
    assert u.shape == tuple(ut.shape)
    assert _rel(u, ut.detach().numpy()) <= 1e-10
    v = rng.normal(size=u.shape)
    ut.backward(torch.from_numpy(v))
    dz = m.backward(v)
    assert _rel(dz, zt.grad.numpy()) <= 1e-10
    assert _rel(m.grads["weight"], t.weight.grad.numpy()) <= 1e-10
    if hp.get("bias", True):
        assert _rel(m.grads["bias"], t.bias.grad.numpy()) <= 1e-10


def test_notes_padding_is_banded_product_Qz():
    """Conv1D-S(z) = Qz + b with Q of eq. 7.49: Q[i, j] = w[j − i + ℓ] inside the band (0-based)."""
    rng = np.random.default_rng(3)
    m_len, k = 9, 5
    ell = (k - 1) // 2
    m = Conv1D(out=1, kernel=k).build((1, m_len), rng)
    w, b = m.params["weight"][0, 0], m.params["bias"][0]
    Q = np.zeros((m_len, m_len))
    for i in range(m_len):
        for j in range(m_len):
            if 0 <= j - i + ell < k:
                Q[i, j] = w[j - i + ell]
    z = rng.normal(size=(4, 1, m_len))
    u = m.forward(z)
    assert u.shape == z.shape  # the notes' padding keeps the length m
    np.testing.assert_allclose(u[:, 0], z[:, 0] @ Q.T + b, rtol=1e-12, atol=1e-12)
    v = rng.normal(size=u.shape)
    np.testing.assert_allclose(m.backward(v)[:, 0], v[:, 0] @ Q, rtol=1e-12, atol=1e-12)


def test_parameter_counts_and_formulas():
    rng = np.random.default_rng(4)
    c1 = Conv1D(out=25, kernel=5).build((1, 40), rng)
    assert c1.param_count == 5 * 1 * 25 + 25
    assert c1.describe()["formula"] == "k·C·C' + C' = 5·1·25 + 25 = 150"
    c2 = Conv2D(out=32, kernel=3).build((16, 8, 8), rng)
    assert c2.param_count == 16 * 32 * 3**2 + 32
    assert c2.describe()["formula"].endswith(f"= {16 * 32 * 9 + 32}")
    c3 = Conv2D(out=4, kernel=[3, 5], bias=False).build((2, 8, 8), rng)
    assert c3.param_count == 2 * 4 * 15
    d = c3.describe()
    assert d["formula"] == "C·C'·kh·kw = 2·4·3·5 = 120"
    assert d["macs_forward"] == 120 * 64 and d["macs_backward"] == 2 * 120 * 64


@pytest.mark.parametrize("case", EXAMPLES + TORCH_CASES, ids=_setting_id)
def test_output_shape_inference_matches_forward(case):
    cls, hp, shape = case
    m = cls(**hp).build(shape, np.random.default_rng(5))
    u = m.forward(np.zeros((2,) + shape))
    assert u.shape[1:] == m.output_shape(shape)


def test_pytorch_shapes_and_default_init():
    rng = np.random.default_rng(6)
    m = Conv2D(out=5, kernel=[3, 2], padding="same").build((4, 6, 6), rng)
    assert m.params["weight"].shape == (5, 4, 3, 2) and m.params["bias"].shape == (5,)
    bound = 1 / np.sqrt(4 * 3 * 2)
    for p in m.params.values():
        assert np.all(np.abs(p) <= bound) and np.abs(p).max() > bound / 2


@pytest.mark.parametrize("cls, shape", [(Conv1D, (3, 16)), (Conv2D, (3, 7, 6))])
def test_float32_stays_float32(cls, shape):
    rng = np.random.default_rng(7)
    m = cls(out=4, kernel=3, stride=2).build(shape, rng, np.float32)
    z = rng.normal(size=(2,) + shape).astype(np.float32)
    u = m.forward(z)
    assert u.dtype == np.float32
    dz = m.backward(np.ones_like(u))
    assert dz.dtype == np.float32
    assert all(g.dtype == np.float32 for g in m.grads.values())


def test_backward_accumulates_and_keeps_v():
    rng = np.random.default_rng(8)
    m = Conv2D(out=2, kernel=3, padding=1).build((2, 5, 5), rng)
    z = rng.normal(size=(2, 2, 5, 5))
    v = rng.normal(size=m.forward(z).shape)
    v0 = v.copy()
    m.backward(v)
    once = {k: g.copy() for k, g in m.grads.items()}
    m.forward(z)
    m.backward(v)
    assert np.array_equal(v, v0)
    for k in once:
        np.testing.assert_allclose(m.grads[k], 2 * once[k], rtol=1e-13)


def test_reused_buffers_follow_changing_batches():
    """The padded input and im2col buffers are reused; results must not depend on the call history."""
    rng = np.random.default_rng(9)
    m = Conv1D(out=3, kernel=3).build((2, 10), rng)
    fresh = Conv1D(out=3, kernel=3).build((2, 10), rng)
    fresh.params = {k: p.copy() for k, p in m.params.items()}
    fresh.grads = {k: np.zeros_like(p) for k, p in m.params.items()}
    for n in (4, 2, 4):
        z = rng.normal(size=(n, 2, 10))
        u = m.forward(z)
        v = rng.normal(size=u.shape)
        dz = m.backward(v)
        other = Conv1D(out=3, kernel=3).build((2, 10), rng)
        other.params = {k: p.copy() for k, p in m.params.items()}
        np.testing.assert_array_equal(u, other.forward(z))
        np.testing.assert_array_equal(dz, other.backward(v))


@pytest.mark.parametrize(
    "cls, hp, shape",
    [
        (Conv1D, {"out": 4, "kernel": 3}, (3, 9)),
        (Conv1D, {"out": 4, "kernel": 3, "stride": 2, "padding": "valid"}, (3, 300)),
        (Conv2D, {"out": 5, "kernel": 3}, (3, 8, 8)),
        (Conv2D, {"out": 5, "kernel": 3, "padding": 1}, (3, 32, 32)),
        (Conv2D, {"out": 2, "kernel": [3, 2], "stride": [2, 1], "padding": "valid"}, (4, 9, 8)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch_gives_empty_output_and_zero_gradients(cls, hp, shape, dtype):
    """A batch of 0 examples (e.g. an empty last batch): (0, C', *out) out, (0, C, *S) back, ∂J/∂θ = 0."""
    rng = np.random.default_rng(11)
    m = cls(**hp).build(shape, rng, dtype=dtype)
    z = np.zeros((0,) + shape, dtype=dtype)
    u = m.forward(z)
    assert u.shape == (0,) + m.output_shape(shape) and u.dtype == dtype
    v = np.zeros(u.shape, dtype=dtype)
    for g in m.grads.values():
        g[...] = 1
    dz = m.backward(v)
    assert dz.shape == z.shape and dz.dtype == dtype
    m.backward_params(v)
    for k, g in m.grads.items():
        np.testing.assert_array_equal(g, 1, err_msg=k)  # nothing added
    ref_dz, ref_grads = m.reference_backward(z, v)
    assert m.reference_forward(z).shape == u.shape and ref_dz.shape == z.shape
    for k, g in ref_grads.items():
        assert g.shape == m.params[k].shape and not g.any(), k


def test_input_is_not_modified():
    rng = np.random.default_rng(10)
    m = Conv1D(out=2, kernel=3, padding="valid").build((1, 6), rng)
    z = rng.normal(size=(2, 1, 6))
    z0 = z.copy()
    m.backward(np.ones_like(m.forward(z)))
    assert np.array_equal(z, z0)


@pytest.mark.parametrize("cls, kernel", [(Conv1D, 4), (Conv2D, [3, 2])])
def test_even_kernel_with_notes_padding_is_a_clear_error(cls, kernel):
    with pytest.raises(ConfigError) as e:
        cls(out=2, kernel=kernel)
    msg = str(e.value)
    assert e.value.field == "kernel"
    assert "kernel must be odd" in msg and "notes" in msg and "padding: same" in msg
    cls(out=2, kernel=kernel, padding="same")  # the suggested fix works
    cls(out=2, kernel=kernel, padding=1)


def test_same_padding_needs_stride_one():
    with pytest.raises(ConfigError, match="stride 1"):
        Conv1D(out=2, kernel=3, padding="same", stride=2)


def test_too_small_input_names_the_sizes():
    m = Conv1D(out=2, kernel=5, padding="valid", dilation=2)
    with pytest.raises(ShapeError) as e:
        m.build((1, 7), np.random.default_rng(0))
    msg = str(e.value)
    assert "L = 7" in msg and "span 9" in msg
    m2 = Conv2D(out=2, kernel=3, padding="valid").build((1, 3, 8), np.random.default_rng(0))
    with pytest.raises(ShapeError, match="H = 2"):
        m2.forward(np.zeros((1, 1, 2, 8)))


def test_wrong_rank_is_a_shape_error():
    with pytest.raises(ShapeError, match=r"\(C, H, W\)"):
        Conv2D(out=2, kernel=3).build((1, 8), np.random.default_rng(0))


def test_registry_names_aliases_and_hparams():
    for name in ("Conv1D", "Conv1d", "conv1d"):
        assert modules.lookup(name) is Conv1D
    assert modules.lookup("conv2d") is Conv2D
    m = modules.create("Conv1d", out_channels=4, kernel_size=3, stride=2)
    assert m.hparams() == {"out": 4, "kernel": 3, "stride": 2}
    assert Conv2D(channels=2, kernel=3).hparams() == {"out": 2, "kernel": 3}


def test_bad_values_are_refused():
    from pydantic import ValidationError

    for bad in (
        {"out": 2, "kernel": 0},
        {"out": 2, "kernel": 3, "stride": 0},
        {"out": 2, "kernel": 3, "padding": -1},
        {"out": 2, "kernel": [3, 3]},
        {"out": 2, "kernel": 3, "padding": "full"},
        {"out": 2, "kernel": 3, "groups": 2},
    ):
        with pytest.raises(ValidationError):
            Conv1D(**bad)


def test_state_dict_loads_into_torch():
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the export check")
    m = Conv2D(out=3, kernel=3).build((2, 5, 5), np.random.default_rng(11))
    t = torch.nn.Conv2d(2, 3, 3, padding=1, dtype=torch.float64)
    t.load_state_dict({k: torch.from_numpy(p) for k, p in m.params.items()}, strict=True)
    z = np.random.default_rng(12).normal(size=(1, 2, 5, 5))
    np.testing.assert_allclose(t(torch.from_numpy(z)).detach().numpy(), m.forward(z), rtol=1e-12)


def test_backward_in_blocks_of_examples_matches_torch(monkeypatch):
    """Large layers run ∂J/∂cols and col2im a block of examples at a time; force many small blocks."""
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the cross-check")
    import nncli.core.kernels.conv as conv_module

    monkeypatch.setattr(conv_module, "_BLOCK", 500)  # C·K·P = 2·9·24 = 432 → one example per block
    rng = np.random.default_rng(13)
    m = Conv2D(out=3, kernel=3, stride=[2, 1], dilation=2, padding=2).build((2, 7, 6), rng)
    _backward_matches_torch(torch, m, rng.normal(size=(5, 2, 7, 6)), rng)


def _backward_matches_torch(torch, m, z, rng) -> None:
    """m's ∂J/∂z and ∂J/∂θ for a random v equal torch's to 1e-10 (float64)."""
    v = rng.normal(size=m.forward(z).shape)
    zt = torch.from_numpy(z.copy()).requires_grad_()
    t = m.to_torch()
    t(zt).backward(torch.from_numpy(v))
    assert _rel(m.backward(v), zt.grad.numpy()) <= 1e-10
    for name, p in t.named_parameters():
        assert _rel(m.grads[name], p.grad.numpy()) <= 1e-10, name


@pytest.mark.parametrize(
    "hp, as_conv",
    [
        ({"kernel": [3, 5], "dilation": [2, 1], "padding": "same"}, True),  # uneven pads, dilated
        ({"kernel": 3, "padding": [0, 2]}, True),  # 'valid' rows, full-width columns
        ({"kernel": 3, "padding": 3}, False),  # padding above δ(k−1): col2im
        ({"kernel": 3, "stride": [1, 2]}, False),  # a stride > 1: col2im
    ],
)
def test_input_gradient_as_a_convolution_matches_torch(hp, as_conv):
    """At stride 1 Conv2D's ∂J/∂z is the convolution of v with the flipped kernel; elsewhere col2im."""
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the cross-check")
    import nncli.core.kernels.conv as conv_module

    rng = np.random.default_rng(14)
    m = Conv2D(out=3, **hp).build((2, 7, 9), rng)
    assert (conv_module.transposed_geometry(m.geom, 2, 3) is not None) == as_conv
    assert conv_module.transposed_geometry(m.geom, 2, 5) is None  # C' > 2C: col2im
    _backward_matches_torch(torch, m, rng.normal(size=(4, 2, 7, 9)), rng)


@pytest.mark.parametrize("grid", [True, False], ids=["padded-width grid", "rows of W'"])
@pytest.mark.parametrize(
    "hp",
    [
        {"kernel": [3, 5], "dilation": [2, 1], "padding": "same"},
        {"kernel": [2, 3], "dilation": [1, 2], "padding": [1, 0]},
        {"kernel": 3, "padding": 3},
        {"kernel": 3, "bias": False},
    ],
)
def test_columns_on_the_padded_width_grid_match_torch(hp, grid, monkeypatch):
    """Stride 1: the columns built as long slices of the padded plane give the same function."""
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the cross-check")
    import nncli.core.kernels.conv as conv_module

    monkeypatch.setattr(conv_module, "grid_layout", lambda *a: grid)
    rng = np.random.default_rng(15)
    m = Conv2D(out=3, **hp).build((2, 7, 9), rng)
    z = rng.normal(size=(5, 2, 7, 9))
    t = m.to_torch()
    assert _rel(m.forward(z), t(torch.from_numpy(z)).detach().numpy()) <= 1e-10
    _backward_matches_torch(torch, m, z, rng)


def test_grid_layout_is_chosen_per_shape():
    from nncli.core.kernels.conv import grid_layout

    g3 = Conv2D(out=32, kernel=3, padding=1).build((16, 16, 16), np.random.default_rng(0)).geom
    assert grid_layout(g3, 16 * 9, 32, 16)  # many more column rows than output rows, wide rows
    assert not grid_layout(g3, 3 * 9, 32, 32)  # 3→32: the copy of the product would cost more
    assert not grid_layout(g3, 32 * 9, 48, 6)  # 8×8 input: a third more GEMM columns
    strided = Conv2D(out=4, kernel=3, stride=2).build((16, 16, 16), np.random.default_rng(0)).geom
    assert not grid_layout(strided, 16 * 9, 4, 16)
