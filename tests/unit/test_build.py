"""Config → Chain: parameter counts, shapes, seeding, and build errors that name the layer's place."""

from __future__ import annotations

import time

import numpy as np
import pytest
from support import write_config

from nncli.config.build import build_chain, build_module, estimate_params, seed_streams
from nncli.config.load import config_from_dict, load_config
from nncli.config.schema import Config
from nncli.core.errors import ConfigError, ShapeError

CNN = """\
seed: 7
dtype: float64
model:
  input_shape: [1, 10]
  layers:
    - {type: Conv1D, out: 4, kernel: 3}
    - {type: ReLU}
    - {type: Flatten}
    - {type: Dropout, p: 0.2}
    - {type: MM, out: 3}
loss: cross_entropy
"""


def mlp(layers, input_shape=(4,), **extra) -> dict:
    return {"model": {"input_shape": list(input_shape), "layers": layers}, **extra}


def build_error(path, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_chain(load_config(path, overrides))
    return info.value


def test_mlp_parameter_count_output_shape_and_dtype():
    chain = build_chain(
        config_from_dict(mlp([{"type": "MM", "out": 8}, {"type": "ReLU"}, {"type": "MM", "out": 3}]))
    )
    assert chain.param_count == (4 * 8 + 8) + (8 * 3 + 3)
    assert chain.output_shape() == (3,)
    assert chain.dtype == np.float32  # the schema's default dtype
    x = np.zeros((5, 4), dtype=np.float32)
    assert chain.forward(x).shape == (5, 3)
    assert build_chain(config_from_dict(mlp([{"type": "MM", "out": 2}])), dtype="float64").dtype == np.float64


def test_cnn_parameter_count_matches_the_notes_formulas(tmp_path):
    chain = build_chain(load_config(write_config(tmp_path, CNN)))
    k, c, c2, length = 3, 1, 4, 10
    assert chain.param_count == (k * c * c2 + c2) + (c2 * length * 3 + 3)
    assert chain.output_shape() == (3,)
    assert [
        estimate_params(m, s) for m, s in zip(chain.modules, [(1, 10), (4, 10), (4, 10), (40,), (40,)])
    ] == [16, 0, 0, 0, 123]


def test_aliases_and_case_insensitive_names_build_the_same_model():
    a = build_chain(
        config_from_dict(mlp([{"type": "MM", "out": 8}, {"type": "ReLU"}, {"type": "MM", "out": 2}]))
    )
    b = build_chain(
        config_from_dict(
            mlp([{"type": "dense", "units": 8}, {"type": "relu"}, {"type": "LINEAR", "out_features": 2}])
        )
    )
    c = build_chain(
        config_from_dict(
            mlp(
                [{"type": "Linear", "out": 8}, {"type": "σ", "fn": "relu"}, {"type": "fc", "out": 2}],
                loss="CE",
            )
        )
    )
    for other in (b, c):
        assert [type(m) for m in other.modules] == [type(m) for m in a.modules]
        for (ka, pa, _), (kb, pb, _) in zip(a.parameters(), other.parameters()):
            assert ka == kb and np.array_equal(pa, pb)


def test_same_seed_same_parameters_and_dropout_masks(tmp_path):
    path = write_config(tmp_path, CNN)
    one, two = build_chain(load_config(path)), build_chain(load_config(path))
    other = build_chain(load_config(path, ["seed=8"]))
    for (_, p1, _), (_, p2, _), (_, p3, _) in zip(one.parameters(), two.parameters(), other.parameters()):
        assert np.array_equal(p1, p2) and not np.array_equal(p1, p3)
    x = np.random.default_rng(0).standard_normal((6, 1, 10))
    assert np.array_equal(one.forward(x), two.forward(x))
    assert not np.array_equal(one.forward(x), other.forward(x))
    # the seed argument wins over the config's seed
    assert all(
        np.array_equal(p, q)
        for (_, p, _), (_, q, _) in zip(
            build_chain(load_config(path), seed=8).parameters(), other.parameters()
        )
    )


def test_each_dropout_gets_its_own_generator_from_the_dropout_stream():
    cfg = config_from_dict(
        mlp(
            [
                {"type": "Dropout", "p": 0.5},
                {"type": "Residual", "layers": [{"type": "MM", "out": 4}, {"type": "Dropout", "p": 0.5}]},
            ]
        ),
    )
    drops = [m for _, m in build_chain(cfg).named_modules() if type(m).__name__ == "Dropout"]
    assert len(drops) == 2
    first = [d.rng.random(3) for d in drops]
    assert not np.array_equal(first[0], first[1])
    expected = np.random.default_rng(seed_streams(0)["dropout"].spawn(2)[0]).random(3)
    assert np.array_equal(first[0], expected)


def test_conv2d_after_flat_mm_names_the_layer_and_incoming_shape(tmp_path):
    text = "model:\n  input_shape: [8]\n  layers:\n    - {type: MM, out: 128}\n    - {type: Conv2D, out: 4, kernel: 3}\n"
    err = build_error(write_config(tmp_path, text))
    assert isinstance(err, ShapeError)
    assert str(err) == (
        f"{tmp_path / 'cfg.yaml'}:5:7: model.layers[1]: Conv2D expects inputs of shape "
        f"(C, H, W) per example, got (128,); add a Reshape layer before it"
    )


def test_output_that_does_not_fit_the_loss_points_at_the_loss(tmp_path):
    text = "model:\n  input_shape: [4]\n  layers:\n    - {type: MM, out: 1}\nloss: cross_entropy\n"
    err = build_error(write_config(tmp_path, text))
    msg = str(err)
    assert msg.startswith(f"{tmp_path / 'cfg.yaml'}:5:1: loss: cross_entropy needs")
    assert "model.layers[0] (MM), outputs (1,)" in msg
    assert build_chain(load_config(write_config(tmp_path, text)), with_loss=False).loss is None


def test_even_conv1d_kernel_with_the_notes_padding(tmp_path):
    err = build_error(write_config(tmp_path, CNN.replace("kernel: 3", "kernel: 4")))
    assert str(err).startswith(f"{tmp_path / 'cfg.yaml'}:6:")
    assert err.field == "model.layers[0].kernel"
    assert "odd" in str(err) and "padding" in str(err)
    # the notes' padding is the default; an explicit padding accepts the even kernel
    build_chain(load_config(write_config(tmp_path, CNN.replace("kernel: 3", "kernel: 4, padding: same"))))


def test_huge_model_is_refused_before_allocating(tmp_path):
    text = "model:\n  input_shape: [100000]\n  layers:\n    - {type: MM, out: 10}\n    - {type: MM, out: 100000}\n"
    start = time.perf_counter()
    err = build_error(
        write_config(tmp_path, text),
        [
            "loss=mse",
            "model.input_shape=[100000]",
            "model.layers[0].out=100000",
            "model.layers[1].out=200000",
        ],
    )
    assert time.perf_counter() - start < 5
    assert str(err).startswith(
        f"{tmp_path / 'cfg.yaml'}:5:7: model.layers[1]: the model has about "
        f"30,000,300,000 parameters (111.8 GiB in float32)"
    )
    assert str(err).endswith("the largest layer, model.layers[1], has 20,000,200,000")


def test_a_batch_too_large_is_refused_before_any_parameter_is_allocated(tmp_path, monkeypatch):
    from nncli.core.module import Module

    def no_build(*args, **kwargs):
        raise AssertionError("a parameter was allocated before the batch was refused")

    text = "seed: 0\nmodel:\n  input_shape: [200000000]\n  layers: [{type: MM, out: 3}]\n"
    loaded = load_config(write_config(tmp_path, text))
    monkeypatch.setattr(Module, "build", no_build)
    with pytest.raises(ShapeError) as info:
        build_chain(loaded, batch_size=10**6)
    assert info.value.field == "data.batch_size" and "GiB" in str(info.value)


def test_build_from_plain_config_and_build_module_fields():
    cfg = Config.model_validate(mlp([{"type": "MM", "out": 2}]))
    assert build_chain(cfg).param_count == 10
    with pytest.raises(ConfigError) as info:
        build_module({"type": "MM", "out": 0}, "model.layers[4]")
    assert info.value.field == "model.layers[4].out"
    with pytest.raises(ConfigError) as info:
        build_module({"type": "Nope"}, "model.layers[1]")
    assert info.value.field == "model.layers[1].type"


def test_nested_residual_errors_carry_the_full_path(tmp_path):
    text = (
        "model:\n  input_shape: [4]\n  layers:\n    - type: Residual\n      layers:\n"
        "        - {type: MM, out: 4}\n        - {type: MM, otu: 4}\n    - {type: MM, out: 2}\n"
    )
    err = build_error(write_config(tmp_path, text))
    assert f"{tmp_path / 'cfg.yaml'}:7:22: model.layers[0].layers[1].otu: unknown key 'otu'" in str(err)
    shape = build_error(write_config(tmp_path, text.replace("otu: 4", "out: 5")))
    assert str(shape).startswith(f"{tmp_path / 'cfg.yaml'}:4:7: model.layers[0]: Residual")


def test_union_hyper_parameter_lists_every_accepted_form():
    with pytest.raises(ConfigError) as info:
        config_from_dict(mlp([{"type": "Conv1D", "out": 2, "kernel": 3, "padding": "sam"}], (1, 8)))
    msg = str(info.value)
    assert msg.startswith("<config>: model.layers[0].padding: expected an integer")
    assert "'same'" in msg and "(did you mean 'same'?)" in msg


def test_shape_error_without_a_file_still_names_the_layer():
    with pytest.raises(ShapeError) as info:
        build_chain(Config.model_validate(mlp([{"type": "MM", "out": 2}], (2, 3))))
    assert str(info.value).startswith("<config>: model.layers[0]: MM expects inputs of shape (d,)")
