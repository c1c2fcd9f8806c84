"""``nncli train --threads N|auto``: auto is one thread for small models, every core BLAS allows for
large ones; the count used is saved in run.json; anything else is refused before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import run_main
from threadpoolctl import threadpool_limits

from nncli.core.chain import Chain
from nncli.core.kernels.threads import blas_threads
from nncli.core.registry import losses, modules
from nncli.runs.train_run import AUTO_THREADS_MIN_FLOPS, auto_threads


def _mm(d: int, out: int):
    chain = Chain([modules.create("MM", out=out)], losses.create("mse"))
    return chain.build((d,), np.random.default_rng(0), np.float32)


def test_auto_is_one_thread_below_the_threshold_and_blas_own_setting_above():
    small, large = _mm(8, 4), _mm(2048, 2048)  # 2·(32 + 64)·B and 2·(4M + 8M)·B FLOPs
    assert 2 * 3 * 8 * 4 * 64 < AUTO_THREADS_MIN_FLOPS < 2 * 3 * 2048 * 2048 * 64
    with threadpool_limits(limits=2, user_api="blas"):
        assert auto_threads(small, 64) == 1
        assert auto_threads(large, 64) == blas_threads() >= 1
    with threadpool_limits(limits=1, user_api="blas"):  # e.g. a sweep's parallel trials: 1 each
        assert auto_threads(large, 64) == 1


@pytest.mark.parametrize("value,saved", [("auto", 1), ("2", 2), ("1", 1)])
def test_the_thread_count_used_is_saved(tmp_path, tiny_config_file, value, saved):
    res = run_main("train", tiny_config_file, "--threads", value, "--quiet", "--runs-dir", tmp_path / "runs")
    assert res.code == 0, res.err
    (run_json,) = (tmp_path / "runs").glob("*/run.json")
    assert json.loads(run_json.read_text())["threads"] == saved  # the tiny model: auto is 1


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_a_bad_thread_count_is_one_line_and_nothing_written(tmp_path, tiny_config_file, value):
    res = run_main("train", tiny_config_file, "--threads", value, "--runs-dir", tmp_path / "runs")
    assert res.code == 2
    assert (
        res.err.strip()
        == f"error: --threads: expected a number of threads (1, 2, ...) or auto, got {value!r}"
    )
    assert not (tmp_path / "runs").exists()
