"""`nncli gradcheck`: the registry self-test passes, broken backward functions are caught and named."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from support import invoke, write_config

import nncli
import nncli.cli.gradcheck  # noqa: F401  (registers the command)
from nncli.core.layers.linear import MM
from nncli.core.module import Module
from nncli.core.registry import losses, modules
from nncli.diagnostics.gradcheck import _coordinates, check_module


def _invoke(*args):
    return invoke("gradcheck", *args)


@pytest.fixture
def register():
    """Register test-only module types, removed again afterwards so other tests never see them."""
    added = []

    def add(name, cls):
        modules.register(name)(cls)
        added.append((name, cls))
        return cls

    yield add
    for name, cls in added:
        modules._by_key.pop(modules._key(name), None)
        modules._canonical.pop(cls, None)


class BrokenMM(MM):
    """MM whose backward multiplies by Wᵀ instead of W: right shapes when square, wrong values."""

    notes_name = "BrokenMM"

    def backward(self, v):
        self.grads["weight"] += v.T @ self._z
        self.grads["bias"] += v.sum(axis=0)
        return v @ self.params["weight"].T

    @classmethod
    def examples(cls):
        return [({"out": 3}, (3,))]


class LNWithoutMean(Module):
    """LN-S (eq. 7.42) whose backward forgets that μ̂ depends on z: the −mean(v) term is missing."""

    notes_name = "LNnoMu"

    def forward(self, z):
        mu = z.mean(axis=1, keepdims=True)
        self._sigma = np.sqrt(((z - mu) ** 2).mean(axis=1, keepdims=True) + 1e-5)
        self._zhat = (z - mu) / self._sigma
        return self._zhat

    def backward(self, v):
        zh = self._zhat
        return (v - zh * (v * zh).mean(axis=1, keepdims=True)) / self._sigma


def test_registry_self_test_passes_and_covers_every_type():
    res = _invoke("--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["passed"] is True
    assert rep["tensors"] and all(t["passed"] for t in rep["tensors"])
    assert sum(t["checked"] for t in rep["tensors"]) > 0
    seen = {t["module"].split("(")[0] for t in rep["tensors"]}
    for name, cls in modules.canonical_classes().items():
        assert (cls.notes_name or name) in seen, name
    for name in losses.canonical_classes():
        assert name in seen


def test_human_report_has_table_and_verdict():
    res = _invoke("--module", "MM")
    assert res.exit_code == 0, res.output
    assert "weight" in res.stdout and "bias" in res.stdout
    assert "PASS:" in res.stdout.strip().splitlines()[-1]


def test_broken_mm_backward_fails_and_is_named(register):
    register("BrokenMMTest", BrokenMM)
    res = _invoke("--module", "BrokenMMTest", "--json")
    assert res.exit_code == 1
    rep = json.loads(res.stdout)
    by_tensor = {t["tensor"]: t for t in rep["tensors"]}
    assert not by_tensor["input"]["passed"]
    assert by_tensor["weight"]["passed"] and by_tensor["bias"]["passed"]
    assert by_tensor["input"]["module"] == "BrokenMM"
    assert "BrokenMM input" in rep["verdict"]
    # the human report names it too, and says FAIL
    res = _invoke("--module", "brokenmmtest")
    assert res.exit_code == 1
    assert "FAIL" in res.stdout and "BrokenMM input" in res.stdout


def test_ln_without_mean_term_fails(register):
    register("LNNoMuTest", LNWithoutMean)
    res = _invoke("--module", "LNNoMuTest")
    assert res.exit_code == 1
    assert "LNnoMu input" in res.stdout.strip().splitlines()[-1]


def test_registry_wide_run_fails_when_one_type_is_broken(register):
    register("BrokenMMTest", BrokenMM)
    res = _invoke("--json")
    assert res.exit_code == 1
    failed = [t for t in json.loads(res.stdout)["tensors"] if not t["passed"]]
    assert [(t["module"], t["tensor"]) for t in failed] == [("BrokenMM", "input")]


def test_module_that_crashes_is_a_failure_not_a_traceback(register):
    class Crashing(Module):
        def forward(self, z):
            raise RuntimeError("boom")

        def backward(self, v):
            return v

    register("CrashingTest", Crashing)
    res = _invoke("--module", "CrashingTest")
    assert res.exit_code == 1
    assert "RuntimeError: boom" in res.stdout


def test_unknown_module_name_is_a_user_error_with_a_suggestion():
    from nncli.core.errors import ConfigError

    res = _invoke("--module", "Conv1F")
    assert res.exit_code != 0
    assert isinstance(res.exception, ConfigError)
    assert "did you mean 'conv1d'" in str(res.exception).lower()


def test_module_that_mutates_v_is_reported():
    class Mutating(Module):
        def forward(self, z):
            return 2 * z

        def backward(self, v):
            v *= 2  # the defect: the caller's v changes
            return v

    m = Mutating().build((3,), np.random.default_rng(0))
    reps = check_module(m, np.random.default_rng(1).normal(size=(2, 3)))
    assert any(r.tensor == "v" and not r.passed for r in reps)


def test_auto_samples_checks_all_of_small_and_200_of_large_tensors():
    rng = np.random.default_rng(0)
    assert len(_coordinates(2000, "auto", rng)) == 2000
    idx = _coordinates(5000, "auto", rng)
    assert len(idx) == 200 and len(set(idx.tolist())) == 200
    assert len(_coordinates(5000, 7, rng)) == 7


def test_samples_option_limits_coordinates():
    res = _invoke("--module", "MM", "--samples", "2", "--json")
    assert res.exit_code == 0
    assert all(t["checked"] + t["skipped"] <= 2 for t in json.loads(res.stdout)["tensors"])


# -- with a config -------------------------------------------------------------------------------
CONFIG = """\
name: gc
model:
  input_shape: [2, 9]
  layers:
    - {type: Conv1D, out: 3, kernel: 3}
    - {type: Tanh}
    - {type: Flatten}
    - type: Residual
      layers:
        - {type: MM, out: 27}
        - {type: ReLU}
    - {type: LN}
    - {type: MM, out: 4}
loss: cross_entropy
"""


@pytest.fixture
def config_file(tmp_path):
    return write_config(tmp_path, CONFIG, "gc.yaml")


def test_config_checks_every_module_the_loss_and_the_chain(config_file):
    res = _invoke(str(config_file), "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    settings = {t["setting"] for t in rep["tensors"]}
    for i in range(6):
        assert any(s.startswith(f"layer {i} ") or s == f"layer {i}" for s in settings), i
    assert any(s.startswith("layer 3.body.0") for s in settings)  # nested modules too
    chain = [t for t in rep["tensors"] if t["module"] == "chain"]
    keys = {t["tensor"] for t in chain}
    assert {"input", "0.weight", "3.body.0.weight", "4.weight", "5.bias"} <= keys
    assert any(t["module"] == "ℓ_ce" for t in rep["tensors"])


def test_config_with_real_data_file(config_file, tmp_path):
    rng = np.random.default_rng(3)
    data = tmp_path / "d.npz"
    np.savez(data, x=rng.normal(size=(10, 2, 9)), y=rng.integers(0, 4, size=10))
    res = _invoke(str(config_file), "--data", str(data), "--module", "LN", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["tensors"] and {t["module"] for t in rep["tensors"]} == {"LN"}
    res = _invoke(str(config_file), "--module", "ReLU", "--json")
    assert {t["module"] for t in json.loads(res.stdout)["tensors"]} == {"σ(relu)"}


def test_config_that_does_not_build_is_a_user_error(tmp_path):
    from nncli.core.errors import UserError

    p = tmp_path / "bad.yaml"
    p.write_text(
        textwrap.dedent("""\
        model:
          input_shape: [5]
          layers:
            - {type: Conv1D, out: 2, kernel: 3}
        loss: squared
        """)
    )
    res = _invoke(str(p))
    assert isinstance(res.exception, UserError)
