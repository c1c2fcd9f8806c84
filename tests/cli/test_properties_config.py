"""Property tests over whole configs: random valid ones build and pass the CLI, broken ones are refused.

Valid configs are random stacks of layers for a random input shape (flat, (C, L) or (C, H, W)), with
hyper-parameters drawn so that every size fits; the expected shape after each layer is computed here
from the output-size formula L' = ⌊(L + p_lo + p_hi − δ(k−1) − 1)/s⌋ + 1, independently of the modules.
Invalid configs are valid ones with one mutation: an unknown key, a wrong type, a non-positive size,
an unknown type name, or broken YAML. Each must be refused as a UserError (one ``error:`` line on
stderr, exit 2), never a traceback or another exception.

Commands run in-process through ``nncli.cli.main`` (a subprocess per example would be too slow).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import run_main as run_cli  # the old name: derandomized examples hash the test's source

import nncli.core.layers  # noqa: F401  (registers every layer type)
from nncli.config.build import build_chain
from nncli.config.load import config_from_dict, load_config
from nncli.config.schema import field_keys
from nncli.core.errors import UserError
from nncli.core.registry import modules

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


# -- random valid configs -------------------------------------------------------------------------


def out_len(L, k, s, d, lo, hi):
    return (L + lo + hi - d * (k - 1) - 1) // s + 1


@st.composite
def conv_layer(draw, shape):
    """A Conv1D/Conv2D entry that fits ``shape`` (C, *S), and its output shape."""
    nd = len(shape) - 1
    S = shape[1:]
    k = draw(st.integers(1, min(4, *[s + 2 for s in S])))
    d = draw(st.integers(1, 2))
    s = draw(st.integers(1, 2))
    mode = draw(st.sampled_from(["notes", "same", "valid", "int"]))
    if mode == "notes" and k % 2 == 0:
        k -= 1
    if mode == "same":
        s = 1
    if mode in ("notes", "same"):
        tot = d * (k - 1)
        lo, hi = (tot // 2, tot - tot // 2) if mode == "same" else (tot // 2, tot // 2)
        pad = mode
    elif mode == "valid":
        lo = hi = 0
        pad = "valid"
    else:
        lo = hi = draw(st.integers(0, 2))
        pad = lo
    if any(x + lo + hi < d * (k - 1) + 1 for x in S):  # too short for the span: no dilation
        d = 1
        if any(x + lo + hi < k for x in S):
            k, pad, lo, hi = 1, "valid", 0, 0
    out = draw(st.integers(1, 3))
    entry = {
        "type": draw(st.sampled_from([f"Conv{nd}D", f"conv{nd}d"])),
        "out": out,
        "kernel": k,
        "stride": s,
        "padding": pad,
        "dilation": d,
        "bias": draw(st.booleans()),
    }
    new = (out,) + tuple(out_len(x, k, s, d, lo, hi) for x in S)
    params = out * shape[0] * k**nd + (out if entry["bias"] else 0)
    return entry, new, params


@st.composite
def pool_layer(draw, shape):
    nd = len(shape) - 1
    S = shape[1:]
    k = draw(st.integers(1, min(3, *S)))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k // 2))
    kind = draw(st.sampled_from(["MaxPool", "AvgPool"]))
    entry = {"type": f"{kind}{nd}D", "kernel": k, "stride": s, "padding": p}
    return entry, (shape[0],) + tuple(out_len(x, k, s, 1, p, p) for x in S), 0


ACTS = ["ReLU", "Tanh", "Sigmoid", "GELU", "LeakyReLU", "Softplus", "Identity", "sigma", "σ"]


@st.composite
def layer(draw, shape):
    """One layer entry that accepts ``shape``: (entry, output shape, parameter count)."""
    n = math.prod(shape)
    kinds = ["act", "LN", "Dropout"]
    if len(shape) == 1:
        kinds += ["MM", "MM", "Residual"] + (["Reshape"] if n % 2 == 0 else [])
    else:
        kinds += ["conv", "conv", "pool", "Flatten"] + (["Residual"] if len(shape) == 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "act":
        return {"type": draw(st.sampled_from(ACTS))}, shape, 0
    if kind == "LN":
        affine = draw(st.sampled_from(["scalar", "per_feature", "none"]))
        params = {"scalar": 2, "per_feature": 2 * n, "none": 0}[affine]
        return {"type": draw(st.sampled_from(["LN", "LayerNorm"])), "affine": affine}, shape, params
    if kind == "Dropout":
        return {"type": "Dropout", "p": draw(st.sampled_from([0.0, 0.1, 0.5]))}, shape, 0
    if kind == "MM":
        out = draw(st.integers(1, 8))
        return ({"type": draw(st.sampled_from(["MM", "Linear", "Dense"])), "out": out}, (out,), out * n + out)
    if kind == "Reshape":
        return {"type": "Reshape", "shape": [2, -1]}, (2, n // 2), 0
    if kind == "Flatten":
        return {"type": "Flatten"}, (n,), 0
    if kind == "conv":
        return draw(conv_layer(shape))
    if kind == "pool":
        return draw(pool_layer(shape))
    # Residual: a body that maps the shape to itself
    if len(shape) == 1:
        h = draw(st.integers(1, 4))
        body = [{"type": "MM", "out": h}, {"type": draw(st.sampled_from(ACTS))}, {"type": "MM", "out": n}]
        return {"type": "Residual", "layers": body}, shape, (h * n + h) + (n * h + n)
    C = shape[0]
    body = [{"type": "Conv1D", "out": C, "kernel": 3}, {"type": "ReLU"}]
    return {"type": "Residual", "layers": body}, shape, 3 * C * C + C


@st.composite
def valid_config(draw):
    """(config dict, per-layer output shapes, total parameter count)."""
    rank = draw(st.integers(1, 3))
    if rank == 1:
        shape = (draw(st.integers(1, 6)),)
    else:
        shape = (draw(st.integers(1, 3)),) + tuple(draw(st.integers(1, 7)) for _ in range(rank - 1))
    layers, shapes, total = [], [], 0
    cur = shape
    for _ in range(draw(st.integers(0, 4))):
        entry, cur, params = draw(layer(cur))
        layers.append(entry)
        shapes.append(cur)
        total += params
    if len(cur) > 1:
        layers.append({"type": "Flatten"})
        cur = (math.prod(cur),)
        shapes.append(cur)
    loss = draw(st.sampled_from(["cross_entropy", "squared", "logistic"]))
    out = {"cross_entropy": draw(st.integers(2, 4)), "squared": draw(st.integers(1, 3)), "logistic": 1}[loss]
    layers.append({"type": "MM", "out": out})
    total += out * cur[0] + out
    shapes.append((out,))
    cfg = {
        "name": "prop",
        "seed": draw(st.integers(0, 5)),
        "dtype": draw(st.sampled_from(["float32", "float64"])),
        "model": {"input_shape": list(shape), "layers": layers},
        "loss": loss,
        "optimizer": draw(
            st.sampled_from([{"type": "sgd", "lr": 0.1, "momentum": 0.9}, {"type": "adam", "lr": 1e-3}])
        ),
        "schedule": {"type": draw(st.sampled_from(["constant", "step", "cosine"]))},
        "train": {"steps": draw(st.integers(1, 50)), "log_every": 5},
    }
    return cfg, shapes, total


@contextlib.contextmanager
def config_file(text: str):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "prop.yaml"
        path.write_text(text)
        yield path


@settings(max_examples=30)
@given(valid_config())
def test_random_valid_configs_build_and_inspect_shows_their_shapes(drawn):
    cfg, shapes, total = drawn
    with config_file(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)) as path:
        chain = build_chain(load_config(path), dtype="float64")
        assert chain.param_count == total
        code, out, err = run_cli("inspect", path, "--json")
    assert code == 0, err
    summary = json.loads(out)["summary"]
    rows = [r for r in summary["rows"] if r["depth"] == 0]
    assert [tuple(r["output_shape"]) for r in rows] == shapes
    assert summary["params"] == total
    assert summary["input_shape"] == cfg["model"]["input_shape"]


@settings(max_examples=10)
@given(valid_config())
def test_random_valid_configs_pass_gradcheck(drawn):
    cfg, _, _ = drawn
    with config_file(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)) as path:
        code, out, err = run_cli("gradcheck", path, "--samples", "6", "--json")
    assert code == 0, (err, out[:2000])
    rep = json.loads(out)
    assert rep["passed"] and any(t["module"] == "chain" for t in rep["tensors"])


# -- invalid configs: one mutation of a valid one -------------------------------------------------

NOT_POSITIVE_INT = [0, -3, 2.5, "abc", "4", True, None, [2], {"a": 1}]
NOT_POSITIVE_FLOAT = [0, -0.1, "0.1", "abc", True, None, [0.1], {"a": 1}]
BAD_YAML = [
    "a: b: c",
    "{",
    "key: [1, 2",
    "- ]",
    "x: 'unclosed",
    "\tkey: 1",
    "seed: 1\nseed: 2",
    "lr: !!python/object/apply:os.system ['true']",
    "seed: 1\x07",
]


@st.composite
def mutation(draw, cfg):
    """(mutated config or YAML text, description): something that must be refused."""
    cfg = json.loads(json.dumps(cfg))
    layers = cfg["model"]["layers"]
    i = draw(st.integers(0, len(layers) - 1))
    kind = draw(
        st.sampled_from(
            [
                "unknown_key",
                "layer_key",
                "size",
                "lr",
                "type",
                "loss",
                "optimizer",
                "input_shape",
                "yaml",
                "section",
                "empty",
                "schedule",
            ]
        )
    )
    if kind == "unknown_key":
        section = draw(st.sampled_from([None, "model", "optimizer", "train", "schedule"]))
        (cfg if section is None else cfg[section])["learning_rat"] = 1
    elif kind == "layer_key":
        layers[i]["kernal"] = 3
    elif kind == "size":
        sized = [j for j, e in enumerate(layers) if "out" in e] or [len(layers) - 1]
        layers[draw(st.sampled_from(sized))]["out"] = draw(st.sampled_from(NOT_POSITIVE_INT))
    elif kind == "lr":
        cfg["optimizer"]["lr"] = draw(st.sampled_from(NOT_POSITIVE_FLOAT))
    elif kind == "type":
        layers[i]["type"] = draw(st.sampled_from(["Conv3D", "Lineer", "", 7, None, ["MM"]]))
    elif kind == "loss":
        cfg["loss"] = draw(st.sampled_from(["cross_entropie", "hinge", 3, {"type": "squared", "beta": 1}]))
    elif kind == "optimizer":
        cfg["optimizer"]["type"] = draw(st.sampled_from(["adamw", "SGD!", 1]))
    elif kind == "schedule":
        cfg["schedule"] = draw(
            st.sampled_from([{"type": "cosinus"}, {"step_size": 0}, {"gamma": -1}, "cosine", [1]])
        )
    elif kind == "input_shape":
        cfg["model"]["input_shape"] = draw(st.sampled_from([[], [0], [-2, 3], "4", [2.5], None]))
    elif kind == "section":
        key = draw(st.sampled_from(["model", "train", "optimizer"]))
        cfg[key] = draw(st.sampled_from([[1, 2], "text", 5]))
    elif kind == "empty":
        cfg["model"]["layers"] = []
    else:
        text = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).splitlines()
        at = draw(st.integers(0, len(text)))
        return "\n".join(text[:at] + draw(st.sampled_from(BAD_YAML)).split("\n") + text[at:]) + "\n", kind
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), kind


@st.composite
def invalid_config(draw):
    cfg, _, _ = draw(valid_config())
    return draw(mutation(cfg))


@settings(max_examples=100)
@given(invalid_config())
def test_mutated_configs_are_refused_as_user_errors(drawn):
    text, kind = drawn
    with config_file(text) as path:
        with pytest.raises(UserError) as info:
            build_chain(load_config(path))
        assert str(info.value).startswith(str(path)), (kind, str(info.value))
        for argv in (("inspect", path, "--json"), ("gradcheck", path, "--samples", "2")):
            code, out, err = run_cli(*argv)
            assert code == 2, (kind, argv[0], err)
            assert err.startswith("error: ") and "Traceback" not in err, err
            assert out == "", out
            # one line per problem, each starting with the file (no wrapping at the console width)
            lines = err[len("error: ") :].rstrip("\n").split("\n")
            assert all(line.startswith(str(path)) for line in lines), err


# -- any layer type with arbitrary hyper-parameters: builds and runs, or is a UserError ------------

LAYER_KEYS = sorted({k for c in modules.canonical_classes().values() for k in field_keys(c.Config)})
ODD_VALUES = st.one_of(
    st.integers(-3, 6),
    st.sampled_from(
        [
            0.5,
            -0.5,
            1e9,
            10**30,
            float("nan"),
            float("inf"),
            "",
            "same",
            "notes",
            "valid",
            "relu",
            "per_feature",
            "none",
            None,
            True,
            False,
            [],
            [1],
            [2, 3],
            [0, 1],
            [-1, 2],
            [3, 3, 3],
            ["a"],
            [1.5, 2],
            {},
            {"type": "MM", "out": 2},
            [{"type": "ReLU"}],
            [{"type": "MM"}],
            [{"type": "MM", "out": 2}],
        ]
    ),
)


@settings(max_examples=200)
@given(
    name=st.sampled_from(modules.names()),
    hp=st.dictionaries(st.sampled_from(LAYER_KEYS), ODD_VALUES, max_size=4),
    shape=st.sampled_from([[4], [2, 6], [1, 5, 5], [3, 1], [1, 1, 1], [2, 3, 4, 5]]),
)
def test_any_layer_with_arbitrary_settings_builds_and_runs_or_is_a_user_error(name, hp, shape):
    cfg = {"model": {"input_shape": shape, "layers": [{"type": name, **hp}]}, "loss": "squared"}
    try:
        chain = build_chain(config_from_dict(cfg), dtype="float64")
    except UserError as exc:
        assert str(exc).startswith("<config>: "), str(exc)
        return
    x = np.random.default_rng(0).standard_normal((2, *shape))
    h = chain.forward(x)
    assert h.shape == (2, *chain.output_shape())
    assert chain.backward(np.ones_like(h)).shape == x.shape
