"""`nncli inspect`: shapes, parameter counts (equal to PyTorch's), MACs, memory, --trace and --time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import invoke, write_config

import nncli
import nncli.cli.inspect  # noqa: F401  (registers the command)
from nncli.core.chain import Chain
from nncli.core.registry import losses, modules
from nncli.diagnostics.summary import (
    build_from_config,
    summarize,
)
from nncli.diagnostics.tracing import run_trace

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))

NESTED = """\
name: nested
dtype: float32
model:
  input_shape: [2, 12]
  layers:
    - {type: Conv1D, out: 4, kernel: 3}
    - {type: ReLU}
    - {type: Flatten}
    - type: Residual
      layers:
        - {type: MM, out: 48}
        - {type: Tanh}
    - {type: LN}
    - {type: MM, out: 5}
loss: cross_entropy
"""


@pytest.fixture
def nested(tmp_path):
    return write_config(tmp_path, NESTED, "nested.yaml")


def _inspect(*args):
    return invoke("inspect", *args)


def _torch_param_counts(chain):
    """Per top-level index, the parameter count of the equivalent torch.nn.Sequential's layer."""
    torch = pytest.importorskip("torch", reason="torch is needed for the parameter cross-check")
    seq = torch.nn.Sequential(*[m.to_torch() for m in chain.modules])
    return [sum(p.numel() for p in layer.parameters()) for layer in seq], seq


@pytest.mark.parametrize("path", [None] + CONFIGS, ids=lambda p: "nested" if p is None else p.name)
def test_parameter_totals_equal_the_torch_model(path, nested):
    loaded, chain = build_from_config(str(path or nested))
    s = summarize(chain, batch=8, loaded=loaded)
    counts, seq = _torch_param_counts(chain)
    per_top = {}
    for r in s.rows:
        top = int(r.name.split(".")[0])
        per_top[top] = per_top.get(top, 0) + r.weight + r.bias
    assert [per_top[i] for i in range(len(chain.modules))] == counts
    assert s.params == sum(counts) == chain.param_count
    assert s.param_bytes == s.params * np.dtype(loaded.config.dtype).itemsize
    # same state-dict keys: the rows name modules as torch does
    assert set(seq.state_dict()) == set(chain.state_dict())  # parameters and buffers (running stats)


def test_rows_shapes_lines_and_totals(nested):
    loaded, chain = build_from_config(str(nested))
    s = summarize(chain, batch=10, loaded=loaded)
    names = [r.name for r in s.rows]
    assert names == ["0", "1", "2", "3", "3.body.0", "3.body.1", "4", "5"]
    assert [r.depth for r in s.rows] == [0, 0, 0, 0, 1, 1, 0, 0]
    # the YAML line that declared each module (layers start on line 6)
    assert [r.line for r in s.rows] == [6, 7, 8, 9, 11, 12, 13, 14]
    by = {r.name: r for r in s.rows}
    assert by["0"].input_shape == [2, 12] and by["0"].output_shape == [4, 12]
    assert by["2"].output_shape == [48]
    assert (by["0"].weight, by["0"].bias) == (3 * 2 * 4, 4)  # k·C·C' + C'
    assert (by["3.body.0"].weight, by["3.body.0"].bias) == (48 * 48, 48)
    assert by["5"].macs_forward == 48 * 5 and by["5"].saved == 48
    assert "3·2·4" in by["0"].formula
    # the Residual reports its body's work, so totals count top-level rows only
    top = [r for r in s.rows if r.depth == 0]
    assert s.macs_forward == sum(r.macs_forward for r in top)
    assert s.saved_bytes_batch == s.saved * 4 * 10  # float32, batch 10
    assert s.input_shape == [2, 12] and s.output_shape == [5]


def test_human_table_and_totals(nested):
    res = _inspect(nested, "--batch", "16")
    assert res.exit_code == 0, res.output
    out = res.stdout
    for text in ("Conv1D", "σ(relu)", "Residual", "LN", "k·C·C'", "parameters:", "per batch of 16"):
        assert text in out, text
    _, chain = build_from_config(str(nested))
    assert f"parameters: {chain.param_count:,}" in out


def test_json_is_alone_on_stdout_and_complete(nested):
    res = _inspect(nested, "--json", "--trace", "--time", "--dtype", "float64", "--threads", "1")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # fails if anything else was printed on stdout
    s = doc["summary"]
    assert s["dtype"] == "float64" and len(s["rows"]) == 8
    assert s["param_bytes"] == 8 * s["params"]
    assert len(doc["trace"]["modules"]) == 9 and len(doc["time"]["modules"]) == 9  # + the loss
    assert doc["summary"]["batch"] == 64  # no data section: the default
    assert doc["time"]["blas_threads"] == 1


def test_trace_shapes_are_consistent_with_the_chain(nested):
    _, chain = build_from_config(str(nested), dtype="float64")
    n = 6
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 2, 12)), rng.integers(0, 5, size=n)
    rows, J = run_trace(chain, x, y)
    assert np.isfinite(J)
    mods = dict(chain.named_modules())
    assert [r.name for r in rows] == [*mods, "loss"]
    rows, loss = rows[:-1], rows[-1]
    for r in rows:
        m = mods[r.name]
        assert r.z["shape"] == [n, *m.input_shape]
        assert r.u["shape"] == [n, *m.output_shape(m.input_shape)]
        assert r.v["shape"] == r.u["shape"] and r.dz["shape"] == r.z["shape"]
        assert {k: g["shape"] for k, g in r.grads.items()} == {k: list(p.shape) for k, p in m.params.items()}
        assert r.forward_eq and r.backward_eq
    # each module's output is the next one's input
    top = [r for r in rows if r.depth == 0]
    for a, b in zip(top, top[1:]):
        assert a.u == b.z
    assert rows[0].forward_eq.startswith("u_i = Σ_j Conv1D-S")
    assert "1[z > 0]" in rows[1].backward_eq
    # the loss's row: h in, J out, and ∂J/∂h the v of the last top-level module (backprop starts here)
    assert loss.type == "ℓ_ce" and "softmax" in loss.backward_eq
    assert loss.z == top[-1].u and loss.dz == top[-1].v and loss.u["norm"] == pytest.approx(J)
    backward, _ = run_trace(chain, x, y, order="backward")
    assert [r.name for r in backward] == ["loss", *reversed(list(mods))]


def test_inspect_order_backward_through_the_cli(nested):
    res = _inspect(nested, "--trace", "--order", "backward", "--json")
    assert res.exit_code == 0, res.output
    names = [m["name"] for m in json.loads(res.stdout)["trace"]["modules"]]
    assert names[0] == "loss" and names[-1] == "0"
    res = _inspect(nested, "--trace", "--order", "sideways")
    assert res.exit_code != 0


def test_trace_counts_dead_relu_and_saturated_units():
    rng = np.random.default_rng(0)
    mm = modules.create("MM", out=4)
    chain = Chain(
        [mm, modules.create("ReLU"), modules.create("MM", out=3), modules.create("Tanh")],
        losses.create("squared"),
    ).build((3,), rng)
    mm.params["bias"][:] = [-100.0, -100.0, 0.0, 0.0]  # two units can never fire
    chain.modules[2].params["weight"][:] = 1e3  # tanh pushed to +1
    chain.modules[2].params["bias"][:] = 5.0
    x = rng.normal(size=(20, 3))
    rows, _ = run_trace(chain, x, rng.normal(size=(20, 3)))
    assert rows[1].activity["dead_units"] == pytest.approx(0.5)
    assert rows[1].activity["inactive"] >= 0.5
    assert rows[3].activity["saturated"] == 1.0
    assert rows[0].activity == {}


def test_trace_and_time_in_the_terminal(nested):
    res = _inspect(nested, "--trace", "--time")
    assert res.exit_code == 0, res.output
    assert "trace: one batch" in res.stdout and "∂J/∂W = vᵀz" in res.stdout
    assert "dead units" in res.stdout and "forward ms" in res.stdout and "100.0%" in res.stdout


def test_time_shares_add_up(nested):
    from nncli.diagnostics.timing import profile_chain

    _, chain = build_from_config(str(nested))
    rng = np.random.default_rng(0)
    rows, total = profile_chain(
        chain, rng.normal(size=(4, 2, 12)).astype(np.float32), rng.integers(0, 5, size=4), repeats=2, warmup=1
    )
    top = [r for r in rows if r.depth == 0]
    assert sum(r.share for r in top) == pytest.approx(1.0)
    assert total > 0 and all(r.forward_ms >= 0 and r.backward_ms >= 0 for r in rows)
    assert rows[-1].name == "loss"
    assert not any("forward" in m.__dict__ for _, m in chain.named_modules())  # hooks removed


def test_config_that_does_not_build_is_a_user_error(tmp_path):
    from nncli.core.errors import ShapeError

    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  input_shape: [6]\n  layers:\n    - {type: Conv1D, out: 2, kernel: 3}\n")
    res = _inspect(p)
    assert isinstance(res.exception, ShapeError)
    assert "bad.yaml:4" in str(res.exception)


def test_inspect_uses_data_batch_size_and_needs_no_data(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text(NESTED + "data: {source: missing_file.npz, batch_size: 7}\n")
    res = _inspect(p, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["summary"]["batch"] == 7
