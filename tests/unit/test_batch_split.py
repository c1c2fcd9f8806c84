"""A training step on two halves of the batch (nncli.core.batch_split): when it splits, that it computes
the whole batch's loss and gradient, the same bits on 1 or 2 threads, and a resumed run continues exactly."""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from nncli.core import batch_split, registry
from nncli.core.chain import Chain
from nncli.core.kernels.workspace import Workspace, slots_from
from nncli.training.optimizers import make_optimizer

CNN = [
    {"type": "Conv2D", "out": 3, "kernel": 3, "padding": 1},
    {"type": "ReLU"},
    {"type": "AvgPool2D", "kernel": 2},
    {"type": "Flatten"},
    {"type": "MM", "out": 4},
]
MLP = [{"type": "Flatten"}, {"type": "MM", "out": 8}, {"type": "ReLU"}, {"type": "MM", "out": 4}]


def build(layers=CNN, loss="cross_entropy", dtype=np.float64, seed=0, input_shape=(2, 6, 6)) -> Chain:
    mods = [registry.modules.create(s["type"], **{k: v for k, v in s.items() if k != "type"}) for s in layers]
    return Chain(mods, registry.losses.create(loss)).build(input_shape, np.random.default_rng(seed), dtype)


def batch(n, seed=1, dtype=np.float64, classes=4):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2, 6, 6)).astype(dtype), rng.integers(0, classes, size=n)


def whole_batch(chain: Chain, x, y):
    """The unsplit step, written out: what ``loss_and_grad`` does when the batch does not split."""
    chain.zero_grads()
    h = chain.forward(x)
    J = chain.loss.forward(h, y)
    chain.backward_params(chain.loss.backward())
    return J, h


def grads(chain: Chain) -> dict[str, np.ndarray]:
    return {k: g.copy() for k, _, g in chain.parameters()}


@pytest.fixture
def split_always(monkeypatch):
    """Every eligible step splits, whatever its size (the real bar is ~150 MFLOP per step)."""
    monkeypatch.setattr(batch_split, "SPLIT_MIN_FLOPS", 0)


def test_which_steps_split(split_always, monkeypatch):
    assert batch_split.wants_split(build(), 32)
    assert not batch_split.wants_split(build(), batch_split.MIN_SPLIT_BATCH - 1)
    assert not batch_split.wants_split(build(MLP), 32), "an MLP gains nothing: it never splits"
    with_bn = CNN[:1] + [{"type": "BatchNorm2d"}] + CNN[1:]
    assert not batch_split.wants_split(build(with_bn), 32), "batch statistics need the whole batch"
    with_dropout = CNN[:-1] + [{"type": "Dropout", "p": 0.5}] + CNN[-1:]
    assert not batch_split.wants_split(build(with_dropout), 32), "random draws would depend on the order"
    chain = build()
    monkeypatch.setattr(type(chain.loss), "splits_batch", False)
    assert not batch_split.wants_split(chain, 32), "a loss that does not say it splits never does"


def test_the_bar_is_the_steps_floating_point_work():
    chain = build()
    facts = chain.describe()
    per_example = 2 * (facts["macs_forward"] + facts["macs_backward"])
    n = int(batch_split.SPLIT_MIN_FLOPS // per_example) + 1
    assert batch_split.wants_split(chain, n) and not batch_split.wants_split(chain, n - 1)


@pytest.mark.parametrize("n", [32, 17])  # equal halves, and halves of 8 and 9
@pytest.mark.parametrize("loss", ["cross_entropy", "squared", "mse"])
def test_split_step_is_the_whole_batchs_step(split_always, n, loss):
    split, whole = build(loss=loss), build(loss=loss)
    x, y = batch(n)
    if loss != "cross_entropy":
        y = np.random.default_rng(2).normal(size=(n, 4))
    J, h = split.loss_and_grad(x, y)
    assert split.split_state.split is not None, "the step did not split"
    Jw, hw = whole_batch(whole, x, y)
    assert pytest.approx(Jw, rel=1e-13) == J
    np.testing.assert_allclose(h, hw, rtol=1e-13, atol=1e-15)
    for k, g in grads(whole).items():
        assert np.max(np.abs(grads(split)[k] - g)) <= 1e-13 * np.max(np.abs(g)), k


def test_class_weights_split_by_their_weight(split_always):
    split, whole = build(), build()
    split.loss_and_grad(*batch(20))  # the second half's copy is made before the weights are set
    weights = np.array([0.1, 5.0, 1.0, 2.0])
    for c in (split, whole):
        c.loss.set_class_weights(weights)
    x, y = batch(20)
    y[:10] = 1  # the first half weighs far more than the second
    J, _ = split.loss_and_grad(x, y)
    Jw, _ = whole_batch(whole, x, y)
    assert pytest.approx(Jw, rel=1e-13) == J
    for k, g in grads(whole).items():
        assert np.max(np.abs(grads(split)[k] - g)) <= 1e-13 * np.max(np.abs(g)), k


def test_same_bits_on_one_and_two_threads(split_always):
    chain = build(dtype=np.float32)
    x, y = batch(64, dtype=np.float32)
    results = []
    for threads in (1, 2, 1, 2):
        with threadpool_limits(threads, user_api="blas"):
            J, h = chain.loss_and_grad(x, y)
        results.append((J, h.copy(), grads(chain)))
    J0, h0, g0 = results[0]
    for J, h, g in results[1:]:
        assert J == J0 and np.array_equal(h, h0)
        assert all(np.array_equal(g[k], g0[k]) for k in g0)


def test_the_copy_follows_every_update(split_always):
    """SGD steps on flat parameters: the second half always sees the weights the optimiser wrote."""
    split, whole = build(), build()
    from nncli.config.schema import OptimizerConfig

    opts = [make_optimizer(OptimizerConfig(type="sgd", lr=0.1, momentum=0.9), c) for c in (split, whole)]
    for step in range(4):
        x, y = batch(24, seed=step)
        split.loss_and_grad(x, y)
        whole_batch(whole, x, y)
        for opt in opts:
            opt.step(0.1)
    for (k, p, _), (_, q, _) in zip(split.parameters(), whole.parameters()):
        np.testing.assert_allclose(p, q, rtol=1e-11, atol=1e-13, err_msg=k)
    first = split.split_state.split
    split.build((2, 6, 6), np.random.default_rng(3), np.float64)  # fresh arrays: a fresh copy
    split.loss_and_grad(*batch(24))
    assert split.split_state.split is not first


def test_hooks_see_the_whole_batch(split_always):
    chain = build()
    seen = []
    handle = chain.modules[0].register_forward_hook(lambda m, z, u, s: seen.append(len(z)))
    try:
        chain.loss_and_grad(*batch(32))
    finally:
        handle.remove()
    assert seen == [32]


def test_an_error_in_the_second_half_is_raised_and_the_next_step_runs(split_always):
    chain = build()
    x, y = batch(32)
    chain.loss_and_grad(x, y)
    twin = chain.split_state.split.twin
    twin.modules[0].forward = lambda z: (_ for _ in ()).throw(RuntimeError("second half failed"))
    with pytest.raises(RuntimeError, match="second half failed"):
        chain.loss_and_grad(x, y)
    del twin.modules[0].forward
    J, _ = chain.loss_and_grad(x, y)
    assert np.isfinite(J)


def test_split_gradient_matches_torch(split_always):
    torch = pytest.importorskip("torch", reason="PyTorch cross-checks need torch installed")
    chain = build()
    seq = chain.to_torch()
    x, y = batch(32)
    J, _ = chain.loss_and_grad(x, y)
    assert chain.split_state.split is not None
    Jt = torch.nn.functional.cross_entropy(seq(torch.from_numpy(x)), torch.from_numpy(y))
    Jt.backward()
    assert pytest.approx(Jt.item(), rel=1e-12) == J
    ours = {k: g for k, _, g in chain.parameters()}
    for k, p in seq.named_parameters():
        assert np.max(np.abs(ours[k] - p.grad.numpy())) <= 1e-10 * p.grad.abs().max().item(), k


def test_each_thread_has_its_own_scratch_slots():
    ws = Workspace()
    a = ws.get("t", (4,), np.float32)
    with slots_from(1):
        b = ws.get("t", (4,), np.float32)
        assert ws.get("t", (4,), np.float32, slot=1) is not b
    assert not np.shares_memory(a, b)
    assert np.shares_memory(ws.get("t", (4,), np.float32), a)


@pytest.mark.slow
def test_a_resumed_split_run_ends_where_an_uninterrupted_one_does(split_always, tmp_path, monkeypatch):
    from support import write_config

    from nncli.runs.checkpoint import load_weights, weights_path
    from nncli.runs.session.prepare import prepare
    from nncli.runs.session.resume import prepare_resume
    from nncli.runs.train_run import run_session

    calls = []
    real = batch_split.BatchSplit.loss_and_grad
    monkeypatch.setattr(
        batch_split.BatchSplit, "loss_and_grad", lambda s, x, y: calls.append(1) or real(s, x, y)
    )

    class StopAt:
        def on_step(self, trainer):
            if trainer.state.step == 5:
                trainer.request_stop("SIGINT")

    cfg = write_config(
        tmp_path,
        {
            "name": "split",
            "seed": 3,
            "dtype": "float64",
            "model": {"input_shape": [1, 8, 8], "layers": CNN[:-1] + [{"type": "MM", "out": 10}]},
            "data": {"source": "digits", "batch_size": 32, "val_split": 0.1},
            "optimizer": {"type": "adam", "lr": 0.01},
            "train": {"steps": 9, "log_every": 3, "eval_every": 3},
        },
    )
    straight = prepare(cfg, [])
    assert run_session(straight, tmp_path / "a").exit_code == 0
    assert len(calls) == 9, "every step split"
    cut = prepare(cfg, [])
    cut.trainer.callbacks.append(StopAt())
    assert run_session(cut, tmp_path / "b").exit_code == 130
    resumed = prepare_resume(cut.folder, None, [])
    assert run_session(resumed, tmp_path / "b").exit_code == 0
    a, b = (load_weights(weights_path(s.folder / "checkpoints", "last"))[0] for s in (straight, cut))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_with_four_threads_each_half_gets_two_for_its_kernels():
    """On more cores than halves, each half's kernels share out the rest: 4 threads, 2 per half,
    the halves' nested blocks in slots of their own, and the same bits as on one thread."""
    from nncli.core.kernels import threads
    from nncli.core.kernels.workspace import slot_base
    from nncli.core.layers.conv import Conv2D

    layer = Conv2D(out=32, kernel=3, padding=1).build((16, 16, 16), np.random.default_rng(0), np.float32)
    rng = np.random.default_rng(1)
    halves = [rng.normal(size=(16, 16, 16, 16)).astype(np.float32) for _ in range(2)]
    copies = [layer, copy.deepcopy(layer)]
    seen: list[tuple[int, int]] = []
    nested: list[int] = []
    real_parallel = threads._run_parallel

    def spy(fn, n_blocks, n_threads):
        nested.append(n_threads)
        return real_parallel(fn, n_blocks, n_threads)

    def task(i):
        def run():
            seen.append((threads.blas_threads(), slot_base()))
            m = copies[i]
            m.zero_grads()
            u = m.forward(halves[i])
            return u, m.backward(u), m.grads["weight"].copy()

        return run

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threads, "_run_parallel", spy)
        apart = threads.run_apart([task(0), task(1)], 4)
    assert sorted(seen) == [(2, 0), (2, 2)], "two threads each, slots 0-1 and 2-3"
    assert nested.count(2) >= 2, "the convolution's blocks ran on two threads inside each half"
    with threadpool_limits(1, user_api="blas"):
        alone = [task(i)() for i in range(2)]
    for (u, dz, dw), (u1, dz1, dw1) in zip(apart, alone):
        assert np.array_equal(u, u1) and np.array_equal(dz, dz1) and np.array_equal(dw, dw1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_runs_threaded_kernels_on_threads_of_its_own():
    """The parent's kernel thread pool does not survive fork(); the child must not wait on it."""
    from nncli.core.kernels import threads

    threads.run_apart([lambda: 1, lambda: 2], 2)  # the parent now has a pool with a live thread
    pid = os.fork()
    if pid == 0:  # the child: a threaded run, then report through the exit status
        code = 1
        try:
            code = 0 if threads.run_apart([lambda: 1, lambda: 2], 2) == [1, 2] else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung on the parent's thread pool")


def test_halves_run_with_quick_thread_switches_and_the_interval_comes_back():
    """run_apart shortens Python's switch interval while its tasks run at once, and restores it
    when the last of several concurrent callers leaves, also after an error."""
    import sys
    import threading

    from nncli.core.kernels import threads

    before = sys.getswitchinterval()
    inside: list[float] = []
    both_inside = threading.Barrier(2)  # two callers overlap: the first to leave must not restore

    def caller():
        def task():
            inside.append(sys.getswitchinterval())
            return 0

        def slow_task():
            inside.append(sys.getswitchinterval())
            both_inside.wait(timeout=10)
            return 0

        threads.run_apart([slow_task, task], 2)

    callers = [threading.Thread(target=caller) for _ in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(timeout=30)
    assert len(inside) == 4 and all(s == pytest.approx(threads.SWITCH_INTERVAL) for s in inside)
    assert sys.getswitchinterval() == before

    def boom():
        raise RuntimeError("second half")

    with pytest.raises(RuntimeError, match="second half"):
        threads.run_apart([lambda: 0, boom], 2)
    assert sys.getswitchinterval() == before
    assert (
        threads.run_apart([lambda: sys.getswitchinterval(), lambda: 0], 1)[0] == before
    )  # one thread: unchanged
