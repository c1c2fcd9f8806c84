"""Models and inputs too large for memory: refused with their size before anything is allocated,
under a 1.5 GiB address-space limit, never a MemoryError traceback."""

from __future__ import annotations

import resource

import pytest
from bad_inputs import LIMITED, config_cases, limit_memory
from support import assert_refused, run_nncli


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS to bound memory")
def test_enormous_model_is_refused_before_any_allocation(work, tmp_path):
    cfg = tmp_path / "big.yaml"
    cfg.write_text(config_cases(work)["enormous model"][0])
    res = run_nncli(
        "train",
        cfg,
        "--runs-dir",
        tmp_path / "runs",
        cwd=work,
        preexec_fn=limit_memory,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    assert_refused(res, "3,000,0", "11.2 GiB in float32", "model.layers[3]", runs_dir=tmp_path / "runs")
    res = run_nncli(
        "inspect",
        cfg,
        cwd=work,
        preexec_fn=limit_memory,
        env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
    )
    assert_refused(res, "GiB", "model.layers[3]")


# -- inputs too large for memory: refused with their size, never a MemoryError traceback ------------

HUGE_INPUT = """\
model:
  input_shape: [1, SIDE, SIDE]
  layers:
    - {type: MaxPool2D, kernel: POOL}
    - {type: Flatten}
    - {type: MM, out: 2}
loss: cross_entropy
data: {source: spirals, classes: 2}
"""


def test_one_example_larger_than_memory_is_refused_by_every_command(tmp_path):
    # 10¹⁰ values per example: few parameters, but not even one example fits
    cfg = tmp_path / "huge.yaml"
    cfg.write_text(HUGE_INPUT.replace("SIDE", "100000").replace("POOL", "1000"))
    runs = {
        " ".join(map(str, argv)): run_nncli(*argv, cwd=tmp_path, **LIMITED)
        for argv in (
            ("inspect", cfg),
            ("inspect", cfg, "--trace"),
            ("gradcheck", cfg),
            ("train", cfg, "--runs-dir", tmp_path / "runs"),
        )
    }
    for res in runs.values():
        assert_refused(
            res,
            "model.input_shape",
            "(1, 100000, 100000)",
            "10,000,000,000 values",
            "GiB",
            place=f"{cfg}:2:",
            runs_dir=tmp_path / "runs",
        )


def test_gradcheck_batch_larger_than_memory_is_a_user_error(tmp_path):
    # 4·10⁸ values per example (1.6 GB in float32) passes the per-example limit; a float64 batch does not fit
    cfg = tmp_path / "big.yaml"
    cfg.write_text(HUGE_INPUT.replace("SIDE", "20000").replace("POOL", "200"))
    res = run_nncli("gradcheck", cfg, "--samples", "1", cwd=tmp_path, **LIMITED)
    assert_refused(res, "model.input_shape", "GiB", place=f"{cfg}:2:")


def test_inspect_trace_batch_larger_than_memory_is_a_user_error(tmp_path):
    cfg = tmp_path / "big.yaml"
    cfg.write_text(HUGE_INPUT.replace("SIDE", "20000").replace("POOL", "200"))
    res = run_nncli("inspect", cfg, "--trace", cwd=tmp_path, **LIMITED)
    assert_refused(res, "model.input_shape", "GiB", place=f"{cfg}:2:")
