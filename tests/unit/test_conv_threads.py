"""Conv1D / Conv2D on the thread pool: results bit-identical for any thread count, equal to PyTorch.

Block boundaries depend only on the shapes and ∂J/∂θ is summed from per-block partials in block
order, so one thread and two threads must give the same bits, not merely close numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import nncli.core.kernels.conv as conv
from nncli.core.layers.conv import Conv1D, Conv2D

# big enough to be cut into blocks and spread over threads (≥ conv._MIN_PARALLEL elements of columns,
# ≥ conv._MIN_PARALLEL_LINE for Conv1D at stride 1)
CASES = [
    (Conv1D, {"out": 6, "kernel": 5}, (8, 320), 64),  # 64·40·320 = 819K
    # the line layout (kernels.conv_flat) with dilation and asymmetric padding, and unpadded
    (Conv1D, {"out": 5, "kernel": 4, "padding": "same", "dilation": 3, "bias": False}, (6, 560), 64),
    (Conv1D, {"out": 7, "kernel": 3, "padding": "valid"}, (8, 420), 80),
    # ∂J/∂z by the flat col2im with v put onto the grid for it alone (C·K < 2C': no grid for ∂J/∂W)
    (Conv2D, {"out": 16, "kernel": 3, "padding": 1}, (3, 24, 24), 64),
    # strided: ∂J/∂z per phase of the positions modulo the stride (kernels.conv_flat.Phases)
    (Conv2D, {"out": 16, "kernel": 3, "stride": 2, "padding": 1}, (8, 32, 32), 64),
    (Conv1D, {"out": 8, "kernel": 4, "stride": 2, "padding": 1, "dilation": 2}, (6, 600), 80),
    (Conv2D, {"out": 16, "kernel": [3, 2], "padding": "same", "dilation": 2, "bias": False}, (4, 20, 22), 56),
    (Conv2D, {"out": 4, "kernel": 3, "padding": 1}, (6, 20, 20), 32),  # 32·54·400 = 691K
    (
        Conv2D,
        {"out": 3, "kernel": [3, 2], "stride": [2, 1], "padding": "valid", "bias": False},
        (5, 41, 40),
        24,
    ),  # 24·30·780 = 562K
]


def _id(case):
    cls, hp, shape, n = case
    return f"{cls.__name__}-{hp}-{n}x{shape}"


def _run(m, z, v, params_only=False):
    """u, ∂J/∂z (None for params only) and fresh ∂J/∂θ of one forward and backward."""
    for g in m.grads.values():
        g[...] = 0
    u = m.forward(z).copy()
    dz = None
    if params_only:
        m.backward_params(v)
    else:
        dz = np.array(m.backward(v))
    return u, dz, {k: g.copy() for k, g in m.grads.items()}


def _assert_same_bits(a, b):
    ua, dza, ga = a
    ub, dzb, gb = b
    np.testing.assert_array_equal(ua, ub)
    if dza is not None:
        np.testing.assert_array_equal(dza, dzb)
    assert ga.keys() == gb.keys()
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k], err_msg=k)


def _setup(case, dtype):
    cls, hp, shape, n = case
    rng = np.random.default_rng(7)
    m = cls(**hp).build(shape, rng, dtype=dtype)
    z = rng.normal(size=(n,) + shape).astype(dtype)
    v = rng.normal(size=(n,) + m.output_shape(shape)).astype(dtype)
    return m, z, v


def test_big_work_is_cut_into_an_even_number_of_blocks():
    for N, per in [(64, 40 * 256), (64, 144 * 784), (3, 1 << 20), (100, 75 * 10)]:
        blocks = conv._blocks(N, per)
        assert blocks[0][0] == 0 and blocks[-1][1] == N
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(blocks, blocks[1:]))
        sizes = [b - a for a, b in blocks]
        assert max(sizes) - min(sizes) <= 1  # equal work per thread
        if N * per >= conv._MIN_PARALLEL:
            assert len(blocks) >= 2 and (len(blocks) % 2 == 0 or len(blocks) == N)
            assert max(sizes) * per <= conv._BLOCK + per  # about _BLOCK, or one example
        else:
            assert blocks == [(0, N)]  # small work: one block
    assert conv._blocks(1, 1 << 22) == [(0, 1)]  # never an empty block


#: backward's two layouts of the columns (by example, by channel), whatever the shape would pick
LAYOUTS = pytest.mark.parametrize("by_example", [True, False], ids=["by_example", "by_channel"])


@LAYOUTS
@pytest.mark.parametrize("params_only", [False, True], ids=["backward", "backward_params"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_bit_identical_for_one_and_two_threads(case, dtype, params_only, by_example, monkeypatch):
    monkeypatch.setattr(conv, "examples_layout", lambda P: by_example)
    m, z, v = _setup(case, dtype)
    seen = []
    run_blocks = conv.run_blocks

    def spy(fn, n_blocks, n_threads):
        seen.append((n_blocks, n_threads))
        run_blocks(fn, n_blocks, n_threads)

    monkeypatch.setattr(conv, "run_blocks", spy)
    with threadpool_limits(1):
        one = _run(m, z, v, params_only)
    # two threads even on a one-core machine, so the threaded path is always exercised
    monkeypatch.setattr(conv, "workers", lambda n: 2)
    two = _run(m, z, v, params_only)
    assert [t for _, t in seen] == [1, 1, 2, 2] and all(b >= 2 for b, _ in seen)
    _assert_same_bits(one, two)
    monkeypatch.undo()
    monkeypatch.setattr(conv, "examples_layout", lambda P: by_example)
    with threadpool_limits(2):  # numpy's setting, as users set it
        _assert_same_bits(one, _run(m, z, v, params_only))


def test_layout_follows_the_output_positions():
    assert conv.examples_layout(1024) and conv.examples_layout(conv._MIN_P_BY_EXAMPLE)
    assert not conv.examples_layout(19)  # the MNIST-1D CNN's layers: by channel


def test_small_work_stays_on_the_calling_thread(monkeypatch):
    import nncli.core.layers.conv as layer

    monkeypatch.setattr(layer, "small_path", lambda *sizes: False)  # this kernel, not conv_small's
    seen = []
    monkeypatch.setattr(
        conv, "run_blocks", lambda fn, nb, nt: (seen.append(nt), [fn(k, 0) for k in range(nb)])
    )
    monkeypatch.setattr(conv, "workers", lambda n: 2)
    rng = np.random.default_rng(0)
    m = Conv1D(out=25, kernel=3, stride=2, padding=1).build((25, 19), rng)  # MNIST-1D CNN layer
    u = m.forward(rng.normal(size=(100, 25, 19)))
    m.backward(np.ones_like(u))
    assert seen == [1, 1]


@pytest.mark.parametrize(
    ("cls", "hp", "shape", "threads"),
    [
        # Conv1D's columns on the line: 64·40·256 = 655K, under its own bar, so one thread
        (Conv1D, {"out": 16, "kernel": 5, "padding": 2}, (8, 256), 1),
        (Conv1D, {"out": 16, "kernel": 5, "padding": 2}, (8, 320), 2),  # 819K
        # a strided Conv1D (no line) and a Conv2D of the same size keep the lower bar
        (Conv1D, {"out": 16, "kernel": 5, "stride": 2, "padding": 2}, (8, 512), 2),  # 64·40·256
        (Conv2D, {"out": 16, "kernel": 3, "padding": 1}, (8, 12, 12), 2),  # 64·72·144 = 664K
    ],
)
def test_conv1d_on_the_line_takes_threads_later(cls, hp, shape, threads, monkeypatch):
    import nncli.core.layers.conv as layer

    monkeypatch.setattr(layer, "small_path", lambda *sizes: False)
    seen = []
    monkeypatch.setattr(
        conv, "run_blocks", lambda fn, nb, nt: (seen.append(nt), [fn(k, 0) for k in range(nb)])
    )
    monkeypatch.setattr(conv, "workers", lambda n: 2)
    rng = np.random.default_rng(0)
    m = cls(**hp).build(shape, rng, dtype=np.float32)
    u = m.forward(rng.normal(size=(64,) + shape).astype(np.float32))
    m.backward(np.ones_like(u))
    assert seen == [threads, threads]


@LAYOUTS
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_threaded_matches_torch_float64(case, by_example, monkeypatch):
    torch = pytest.importorskip("torch", reason="PyTorch is needed for the cross-check")
    monkeypatch.setattr(conv, "workers", lambda n: 2)
    monkeypatch.setattr(conv, "examples_layout", lambda P: by_example)
    m, z, v = _setup(case, np.float64)
    t = m.to_torch()
    zt = torch.from_numpy(z.copy()).requires_grad_()
    ut = t(zt)
    ut.backward(torch.from_numpy(v))
    u, dz, grads = _run(m, z, v)

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    assert rel(u, ut.detach().numpy()) <= 1e-10
    assert rel(dz, zt.grad.numpy()) <= 1e-10
    assert rel(grads["weight"], t.weight.grad.numpy()) <= 1e-10
    if "bias" in grads:
        assert rel(grads["bias"], t.bias.grad.numpy()) <= 1e-10


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_params_only_backward_matches_the_reference_float64(case):
    """∂J/∂θ alone (a chain's first layer) may lay its columns out differently from the full backward
    (no grid for a Conv2D at stride 1): the same values as the notes' equations either way."""
    m, z, v = _setup(case, np.float64)
    _, _, full = _run(m, z, v)
    _, _, alone = _run(m, z, v, params_only=True)
    _, ref = m.reference_backward(z, v)
    for k in ref:
        scale = np.max(np.abs(ref[k]))
        assert np.max(np.abs(alone[k] - ref[k])) <= 1e-12 * scale, k
        assert np.max(np.abs(full[k] - ref[k])) <= 1e-12 * scale, k
