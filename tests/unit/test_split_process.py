"""A split batch's second half in a worker process (nncli.core.split_process): the same bits as the
half on a thread, a failed worker replaced by the thread for the rest of the run with the same bits,
plugin modules and ``NNCLI_SPLIT=threads`` kept on threads, nothing left behind at close."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nncli.config.schema import OptimizerConfig
from nncli.core import batch_split, registry
from nncli.core.chain import Chain
from nncli.training.optimizers import make_optimizer

CNN = [
    {"type": "Conv2D", "out": 4, "kernel": 3, "padding": 1},
    {"type": "ReLU"},
    {"type": "AvgPool2D", "kernel": 2},
    {"type": "Flatten"},
    {"type": "MM", "out": 5},
]


def trained(
    steps: int, monkeypatch, processes: bool, kill_after: int | None = None, fail_at: int | None = None
):
    """(losses, parameters, the chain's split) after ``steps`` Adam steps on float32 batches of 32."""
    monkeypatch.setattr(batch_split, "SPLIT_MIN_FLOPS", 0)  # split whatever the step's size
    monkeypatch.setattr(batch_split, "blas_threads", lambda: 2)  # two threads, even on one core
    monkeypatch.setenv("NNCLI_SPLIT", "" if processes else "threads")
    mods = [registry.modules.create(s["type"], **{k: v for k, v in s.items() if k != "type"}) for s in CNN]
    chain = Chain(mods, registry.losses.create("cross_entropy")).build(
        (3, 8, 8), np.random.default_rng(0), np.float32
    )
    opt = make_optimizer(OptimizerConfig(type="adam", lr=0.01), chain)
    rng = np.random.default_rng(1)
    losses = []
    for step in range(steps):
        x = rng.normal(size=(32, 3, 8, 8)).astype(np.float32)
        y = rng.integers(0, 5, size=32)
        if step == fail_at:  # the first half fails while the worker runs the second: no update
            chain.modules[0].forward = lambda z: (_ for _ in ()).throw(RuntimeError("first half failed"))
            with pytest.raises(RuntimeError, match="first half failed"):
                chain.loss_and_grad(x, y)
            del chain.modules[0].forward
            continue
        J, _ = chain.loss_and_grad(x, y)
        losses.append(J)
        opt.step(0.01)
        if kill_after == step:
            chain.split_state.split.worker.process.kill()
            chain.split_state.split.worker.process.join()
    params = {k: p.copy() for k, p, _ in chain.parameters()}
    return losses, params, chain.split_state.split


def assert_same_run(run, on_threads) -> None:
    """The same losses and parameters, bit for bit."""
    assert run[0] == on_threads[0]
    for k, p in on_threads[1].items():
        np.testing.assert_array_equal(run[1][k], p, err_msg=k)


def test_the_worker_process_gives_the_thread_halfs_bits(monkeypatch):
    threads = trained(4, monkeypatch, processes=False)
    processes = trained(4, monkeypatch, processes=True)
    assert threads[2].worker is None and processes[2].worker is not None
    assert_same_run(processes, threads)
    processes[2].worker.close()


@pytest.mark.parametrize("failure", ["kill_after", "fail_at"], ids=["worker killed", "first half fails"])
def test_after_a_failure_the_run_goes_on_with_the_thread_and_the_same_bits(failure, monkeypatch):
    # the worker killed after step 1, or step 1's first half failing while the worker runs the second
    injected = {failure: 1}
    threads = trained(4, monkeypatch, processes=False, fail_at=injected.get("fail_at"))
    failed = trained(4, monkeypatch, processes=True, **injected)
    assert failed[2].worker is None and failed[2].worker_failed
    assert_same_run(failed, threads)


def test_modules_from_outside_nncli_and_the_setting_keep_the_halves_on_threads(monkeypatch):
    _, _, split = trained(1, monkeypatch, processes=True)
    monkeypatch.delenv("NNCLI_SPLIT")
    assert batch_split.processes_wanted(split)
    monkeypatch.setattr(type(split.chain.modules[1]), "__module__", "my_plugin")  # as a --code file's
    assert not batch_split.processes_wanted(split)
    monkeypatch.undo()
    monkeypatch.setattr(batch_split, "blas_threads", lambda: 2)
    monkeypatch.setenv("NNCLI_SPLIT", "threads")
    assert not batch_split.processes_wanted(split)
    split.worker.close()


def test_closing_stops_the_worker_and_removes_its_files(monkeypatch):
    _, _, split = trained(2, monkeypatch, processes=True)
    worker = split.worker
    assert os.path.isdir(worker.dir) and worker.process.is_alive()
    worker.close()
    assert not worker.process.is_alive() and not os.path.exists(worker.dir)


def test_a_bad_value_in_the_environment_is_refused_before_anything_is_written(tmp_path, tiny_config_file):
    from support import run_nncli

    res = run_nncli(
        "train",
        str(tiny_config_file),
        "--runs-dir",
        str(tmp_path / "runs"),
        env={batch_split.SPLIT_ENV: "thread"},
    )
    assert res.code == 2, res
    assert res.err.strip().splitlines() == [
        f"error: {batch_split.SPLIT_ENV}: expected 'process' or 'threads', got 'thread'"
    ], res.err
    assert not (tmp_path / "runs").exists()
