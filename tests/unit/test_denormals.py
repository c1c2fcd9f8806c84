"""Subnormal floats flushed to zero while nncli trains, evaluates and predicts (``kernels.denormals``):
on the calling thread within the block only, on nncli's pool threads as on their caller, recorded in
run.json, and off with ``NNCLI_DENORMALS=keep``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import nncli
from nncli.core.kernels import denormals
from nncli.core.kernels.threads import run_blocks

pytestmark = pytest.mark.skipif(
    not denormals.available(),
    reason="no known floating-point control register on this platform (or NNCLI_DENORMALS=keep)",
)

TINY = np.array([1e-39], np.float32)  # a float32 subnormal: 1e-39 < 1.18e-38


def _times_one() -> float:
    return float((TINY * np.float32(1.0))[0])


def test_flushing_sets_the_calling_thread_and_puts_back_what_it_found():
    assert not denormals.flushed() and _times_one() != 0.0
    with denormals.flushing():
        assert denormals.flushed() and _times_one() == 0.0
        with denormals.flushing(False):  # nested: kept inside, flushed again after
            assert not denormals.flushed() and _times_one() != 0.0
        assert denormals.flushed()
    assert not denormals.flushed() and _times_one() != 0.0


def test_flushing_restores_after_an_error():
    with pytest.raises(RuntimeError), denormals.flushing():
        raise RuntimeError("boom")
    assert not denormals.flushed()


def test_pool_threads_take_the_callers_setting():
    """Each block records whether a subnormal times 1 gave 0 on the thread that ran it; two threads,
    in both orders (a pool thread started while its creator flushes would inherit that setting)."""
    for flush in (False, True, False, True):
        zero = [None, None]

        def block(k, slot, zero=zero):
            zero[k] = _times_one() == 0.0

        with denormals.flushing(flush):
            run_blocks(block, 2, 2)
        assert zero == [flush, flush]


def test_training_flushes_and_records_it(tmp_path, tiny_config_file):
    seen = []

    class Probe:
        def on_step(self, trainer):
            seen.append(denormals.flushed())

    out = nncli.train(tiny_config_file, runs_dir=tmp_path / "runs", callbacks=[Probe()])
    assert out.status == "completed" and seen and all(seen)
    assert not denormals.flushed()  # the caller's thread as it was
    assert json.loads((out.run_dir / "run.json").read_text())["denormals"] == "flushed"


def test_evaluation_and_prediction_flush_as_training_did(tmp_path, tiny_config_file, monkeypatch):
    out = nncli.train(tiny_config_file, runs_dir=tmp_path / "runs")
    run = nncli.load_run(out.run_dir)
    seen = []
    forward = run.chain.forward

    def probe(x):
        seen.append(denormals.flushed())
        return forward(x)

    monkeypatch.setattr(run.chain, "forward", probe)
    run.scores(np.zeros((3, 2)))
    nncli.training.evaluation.evaluate(run.chain, run.chain.loss, np.zeros((3, 2)), np.zeros(3, int), True)
    assert seen == [True, True]


def test_keep_in_the_environment_turns_it_off():
    code = (
        "import numpy as np\n"
        "from nncli.core.kernels import denormals\n"
        "with denormals.flushing():\n"
        "    print(denormals.available(), denormals.mode_name(), (np.array([1e-39], np.float32) * 1)[0] != 0)\n"
    )
    env = {"NNCLI_DENORMALS": "keep", "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["False", "kept", "True"]


def test_a_bad_value_in_the_environment_is_refused_before_anything_is_written(tmp_path, tiny_config_file):
    from support import run_nncli

    res = run_nncli(
        "train", str(tiny_config_file), "--runs-dir", str(tmp_path / "runs"), env={denormals.ENV: "off"}
    )
    assert res.code == 2, res
    assert res.err.strip().splitlines() == [
        f"error: {denormals.ENV}: expected 'keep' or 'flush', got 'off'"
    ], res.err
    assert not (tmp_path / "runs").exists()
