"""Convolutions on the flat padded input (``kernels.conv_flat``), at stride 1 and per phase of a larger
stride: the same columns and the same col2im bits as the row-by-row kernels, the layout taken where it
applies, its scratch rows kept zero."""

from __future__ import annotations

import numpy as np
import pytest

import nncli.core.kernels.conv as conv
import nncli.core.kernels.conv_flat as conv_flat
from nncli.core.kernels.conv_flat import (
    col2im_flat,
    col2im_phases,
    flat_dcols,
    im2col_line,
    line_fits,
    phases,
    shifts,
)
from nncli.core.kernels.im2col import Geometry, col2im_examples, im2col_examples
from nncli.core.layers.conv import Conv1D, Conv2D

#: (kernel, dilation, pad_lo, pad_hi): odd and even kernels, dilation, no, asymmetric and full padding
GEOMETRIES = [(5, 1, 2, 2), (4, 3, 4, 5), (3, 1, 0, 0), (2, 2, 2, 2), (1, 1, 0, 0)]


def _geometry(k, d, lo, hi):
    return Geometry((k,), (1,), (d,), (lo,), (hi,))


@pytest.mark.parametrize("k, d, lo, hi", GEOMETRIES)
def test_line_columns_are_the_columns_in_kernel_offset_order(k, d, lo, hi):
    g = _geometry(k, d, lo, hi)
    n, C, L = 3, 4, 70
    zp = np.random.default_rng(0).normal(size=(n, C, L + lo + hi)).astype(np.float32)
    P = g.out_size((L,), "test")[0]
    rows = im2col_examples(zp, g, (P,), into=np.empty((n, C * k, P), np.float32))
    line = im2col_line(zp, g, 0, n, bias=True, slot=0)
    assert line.shape == (n, k * C + 1, P)
    np.testing.assert_array_equal(
        line[:, : k * C], rows.reshape(n, C, k, P).transpose(0, 2, 1, 3).reshape(n, k * C, P)
    )
    np.testing.assert_array_equal(line[:, k * C], 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, d, lo, hi", GEOMETRIES)
def test_line_col2im_gives_the_row_by_row_bits(k, d, lo, hi, dtype):
    g = _geometry(k, d, lo, hi)
    n, C, L = 3, 4, 70
    Lp = L + lo + hi
    P = g.out_size((L,), "test")[0]
    dcols = np.random.default_rng(1).normal(size=(n, C * k, P)).astype(dtype)
    expected = col2im_examples(dcols, g, np.zeros((n, C, Lp), dtype), (P,))
    line = flat_dcols(k, C, Lp, P, n, n, dtype, slot=0)
    line[:, :, :P] = dcols.reshape(n, C, k, P).transpose(0, 2, 1, 3).reshape(n, k * C, P)
    got = col2im_flat(line, shifts(g, (Lp,)), np.full((n, C, Lp), np.nan, dtype))  # overwrites
    np.testing.assert_array_equal(got, expected)


#: (kernel, dilation, pad_lo, pad_hi) per axis of Conv2D at stride 1
GEOMETRIES_2D = [
    ((3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 2), (2, 1), (2, 0), (2, 1)),
    ((5, 5), (1, 1), (0, 0), (0, 0)),
]


@pytest.mark.parametrize("k, d, lo, hi", GEOMETRIES_2D)
def test_flat_col2im_on_the_grid_gives_the_row_by_row_bits(k, d, lo, hi):
    g = Geometry(k, (1, 1), d, lo, hi)
    n, C, spatial = 2, 3, (9, 11)
    padded = g.padded(spatial)
    out = g.out_size(spatial, "test")
    K, Wp = g.K, padded[1]
    dcols = np.random.default_rng(4).normal(size=(n, C * K, out[0] * out[1])).astype(np.float32)
    expected = col2im_examples(dcols, g, np.zeros((n, C) + padded, np.float32), out)
    Pg = (out[0] - 1) * Wp + out[1]
    flat = flat_dcols(K, C, padded[0] * Wp, Pg, n, n, np.float32, slot=0)
    # row (κ, c), grid column y·W_pad + x; the columns x ≥ W' stay zero, as v's zeros on the grid make them
    on_grid = np.zeros((n, K, C, out[0], Wp), np.float32)
    on_grid[..., : out[1]] = dcols.reshape(n, C, K, *out).transpose(0, 2, 1, 3, 4)
    flat[:, :, :Pg] = on_grid.reshape(n, K * C, -1)[:, :, :Pg]
    got = col2im_flat(flat, shifts(g, padded), np.full((n, C) + padded, np.nan, np.float32))
    np.testing.assert_array_equal(got, expected)


def test_the_line_layout_needs_stride_1_and_contiguous_rows():
    g = _geometry(3, 1, 1, 1)
    zp = np.zeros((4, 3, 20))
    assert line_fits(zp, g)
    assert not line_fits(zp[:, :, :18], g)  # rows not contiguous
    assert not line_fits(zp[::2], g)  # examples apart
    assert not line_fits(zp, Geometry((3,), (2,), (1,), (1,), (1,)))
    assert not line_fits(np.zeros((4, 3, 20, 20)), Geometry((3, 3), (1, 1), (1, 1), (1, 1), (1, 1)))


@pytest.mark.parametrize("stride, taken", [(1, True), (2, False)])
def test_conv1d_takes_the_line_layout_at_stride_1_only(stride, taken, monkeypatch):
    calls = []
    for module, name in ((conv, "im2col_line"), (conv_flat, "col2im_flat")):
        real = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, _real=real, _name=name: (calls.append(_name), _real(*a))[1]
        )
    rng = np.random.default_rng(0)
    m = Conv1D(out=6, kernel=5, stride=stride, padding=2).build((8, 300), rng)
    u = m.forward(rng.normal(size=(4, 8, 300)))
    m.backward(np.ones_like(u))
    # forward's and ∂J/∂W's columns, and ∂J/∂z's adds
    assert sorted(set(calls)) == (["col2im_flat", "im2col_line"] if taken else [])
    assert calls.count("im2col_line") == (2 if taken else 0)


@pytest.mark.parametrize("by_example", [True, False])
def test_conv2d_at_stride_1_adds_its_input_gradient_flat_when_backward_runs_by_example(
    by_example, monkeypatch
):
    calls = []
    real = conv_flat.col2im_flat
    monkeypatch.setattr(conv_flat, "col2im_flat", lambda *a: (calls.append(1), real(*a))[1])
    monkeypatch.setattr(conv, "examples_layout", lambda P: by_example)
    rng = np.random.default_rng(0)
    for out, stride in [(8, 1), (8, 2), (16, 1)]:  # on the grid; strided; not on the grid (C·K < 2C')
        m = Conv2D(out=out, kernel=3, stride=stride, padding=1).build((3, 12, 12), rng)
        u = m.forward(rng.normal(size=(4, 3, 12, 12)))
        m.backward(np.ones_like(u))
    assert len(calls) == (2 if by_example else 0)


def test_layers_sharing_scratch_rows_of_one_shape_keep_their_zero_columns():
    # A (k 5, δ 1) and B (k 5, δ 2) have the same ∂J/∂cols shape (n, 40, Lp) but B's product fills
    # fewer columns of each row: if they shared one buffer, A's columns would land in B's adds
    rng = np.random.default_rng(2)
    a = Conv1D(out=3, kernel=5, padding="same").build((8, 100), rng)
    b = Conv1D(out=3, kernel=5, padding="same", dilation=2).build((8, 96), rng)
    assert a.geom.padded((100,)) == b.geom.padded((96,))
    for m, L in [(a, 100), (b, 96), (a, 100), (b, 96)]:
        z = rng.normal(size=(5, 8, L))
        v = rng.normal(size=(5, 3, L))
        m.forward(z)
        m.zero_grads()
        dz = m.backward(v)
        expected, _ = m.reference_backward(z, v)
        np.testing.assert_allclose(dz, expected, rtol=1e-12, atol=1e-12)


#: (kernel, stride, dilation, pad_lo, pad_hi, spatial): strided Conv1D and Conv2D, including a phase
#: no tap reaches (kernel 1 at stride 2), dilation sharing phases, unequal strides per axis
STRIDED = [
    ((5,), (2,), (1,), (2,), (2,), (41,)),
    ((3,), (2,), (3,), (1,), (0,), (40,)),
    ((2,), (4,), (1,), (0,), (0,), (41,)),
    ((3, 3), (2, 2), (1, 1), (1, 1), (1, 1), (11, 12)),
    ((3, 2), (2, 3), (2, 1), (1, 0), (2, 1), (13, 14)),
    ((1, 1), (2, 2), (1, 1), (0, 0), (0, 0), (9, 9)),
]


@pytest.mark.parametrize("k, s, d, lo, hi, spatial", STRIDED)
def test_phases_col2im_gives_the_row_by_row_bits(k, s, d, lo, hi, spatial):
    g = Geometry(k, s, d, lo, hi)
    n, C, K = 3, 2, g.K
    padded, out = g.padded(spatial), g.out_size(spatial, "test")
    dcols = np.random.default_rng(5).normal(size=(n, C * K) + out).astype(np.float32)
    dzp = col2im_examples(dcols.reshape(n, C * K, -1), g, np.zeros((n, C) + padded, np.float32), out)
    expected = dzp[(slice(None), slice(None)) + g.interior(spatial)]
    ph = phases(g, padded)
    # rows (κ, c) on the phase plane's grid: position y·W_q + x (1-d: y), zero elsewhere
    rows = np.zeros((n, K, C) + ph.plane, np.float32)
    rows[(slice(None),) * 3 + tuple(slice(0, o) for o in out)] = np.swapaxes(
        dcols.reshape((n, C, K) + out), 1, 2
    )
    got = col2im_phases(rows.reshape(n, K * C, -1), ph, g, np.full((n, C) + spatial, np.nan, np.float32), 0)
    np.testing.assert_array_equal(got, expected)


def test_phases_group_the_taps_by_position_modulo_the_stride():
    ph = phases(Geometry((3,), (2,), (3,), (1,), (1,)), (12,))
    # κδ = 0, 3, 6: phases 0, 1, 0 at shifts 0, 1, 3 on a plane of 6
    assert ph.plane == (6,) and ph.groups == (((0,), ((0, 0), (2, 3))), ((1,), ((1, 1),)))


def test_strided_convolutions_take_the_phases_when_backward_runs_by_example(monkeypatch):
    calls = []
    real = conv_flat.col2im_phases
    monkeypatch.setattr(conv_flat, "col2im_phases", lambda *a: (calls.append(1), real(*a))[1])
    rng = np.random.default_rng(0)
    for cls, shape in [(Conv1D, (3, 300)), (Conv2D, (3, 24, 24))]:
        m = cls(out=4, kernel=3, stride=2, padding=1).build(shape, rng)
        z = rng.normal(size=(4, *shape))
        u = m.forward(z)
        dz = m.backward(np.ones_like(u))
        assert dz.flags.c_contiguous and dz.shape == z.shape
    assert len(calls) == 2
