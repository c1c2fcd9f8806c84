"""Config loading: every bad input gives an error naming the file, the line and the field."""

from __future__ import annotations

import pytest
from support import write_config

from nncli.config.load import ConfigErrors, apply_override, config_from_dict, load_config
from nncli.config.yaml_positions import parse_yaml, split_path
from nncli.core.errors import ConfigError, Place

GOOD = """\
name: tiny
seed: 3
model:
  input_shape: [4]
  layers:
    - {type: MM, out: 8}
    - type: ReLU
    - {type: MM, out: 3}
loss: cross_entropy
optimizer:
  lr: 0.1
"""


def error_of(path, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value


# -- YAML itself -------------------------------------------------------------------------------
def test_syntax_error_names_file_line_and_column(tmp_path):
    path = write_config(tmp_path, "seed: 1\nmodel:\n  input_shape: [4, 2\n  layers: []\n")
    msg = str(error_of(path))
    assert msg.startswith(f"{path}:4:")
    assert "YAML syntax error" in msg and "flow sequence" in msg


def test_duplicate_key_names_both_lines(tmp_path):
    path = write_config(tmp_path, GOOD + "seed: 4\n")
    err = error_of(path)
    assert str(err).startswith(f"{path}:12:1: seed: duplicate key 'seed'")
    assert "line 2" in str(err)


def test_python_tag_is_refused_with_its_line(tmp_path):
    path = write_config(tmp_path, GOOD.replace("lr: 0.1", "lr: !!python/object/apply:os.system ['true']"))
    err = error_of(path)
    assert f"{path}:11:" in str(err)
    assert "!!python/object/apply:os.system" in str(err)
    assert err.field == "optimizer.lr"


def test_missing_empty_and_non_mapping_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert str(error_of(missing)) == f"{missing}: no such file"
    empty = write_config(tmp_path, "# only a comment\n", "empty.yaml")
    assert str(error_of(empty)).startswith(f"{empty}: the config is empty")
    listed = write_config(tmp_path, "- 1\n- 2\n", "list.yaml")
    msg = str(error_of(listed))
    assert msg.startswith(f"{listed}:1:1: expected a mapping of sections") and "the list [1, 2]" in msg


def test_exponent_without_dot_is_a_float_and_dates_stay_text():
    data, _ = parse_yaml("a: 1e-3\nb: 2E5\nc: -1.5e2\nd: 1e3x\ne: 2024-01-01\n")
    assert data == {"a": 0.001, "b": 200000.0, "c": -150.0, "d": "1e3x", "e": "2024-01-01"}
    assert isinstance(data["b"], float)


def test_positions_cover_keys_and_items_and_anchors_work():
    text = "base: &b {out: 4}\nmodel:\n  layers:\n    - *b\n    - <<: *b\n      bias: false\n"
    data, pos = parse_yaml(text, "f.yaml")
    assert data["model"]["layers"] == [{"out": 4}, {"out": 4, "bias": False}]
    assert pos["model.layers[1]"] == Place("f.yaml", 5, 7)
    assert pos["model.layers[1].bias"] == Place("f.yaml", 6, 7)


def test_recursive_alias_is_refused():
    with pytest.raises(ConfigError, match="recursive alias"):
        parse_yaml("a: &x [1, *x]\n", "f.yaml")


def test_split_path():
    assert split_path("model.layers[3].kernel") == ["model", "layers", 3, "kernel"]
    for bad in ("a..b", "a.", "a[x]", ""):
        with pytest.raises(ValueError):
            split_path(bad)


# -- schema errors -----------------------------------------------------------------------------
def test_unknown_layer_type_with_did_you_mean(tmp_path):
    path = write_config(tmp_path, GOOD.replace("type: ReLU", "type: RelU_x"))
    err = error_of(path)
    assert str(err).startswith(f"{path}:7:7: model.layers[1].type: unknown layer type 'RelU_x'")
    assert "did you mean 'relu'" in str(err).lower()


def test_unknown_loss_type_with_did_you_mean(tmp_path):
    path = write_config(tmp_path, GOOD.replace("loss: cross_entropy", "loss: cross_entropi"))
    err = error_of(path)
    assert str(err).startswith(f"{path}:9:1: loss.type: unknown loss type 'cross_entropi'")
    assert "did you mean 'cross_entropy'" in str(err)


def test_misspelled_layer_key_and_section_keys(tmp_path):
    text = GOOD.replace("{type: MM, out: 3}", "{type: MM, otu: 3}").replace("optimizer:", "optimiser:")
    errs = error_of(write_config(tmp_path, text)).errors
    by_field = {e.field: str(e) for e in errs}
    assert (
        "cfg.yaml:8:18: model.layers[2].otu: unknown key 'otu' (did you mean 'out'?)"
        in by_field["model.layers[2].otu"]
    )
    assert (
        "cfg.yaml:10:1: optimiser: unknown key 'optimiser' (did you mean 'optimizer'?)"
        in by_field["optimiser"]
    )
    nested = error_of(write_config(tmp_path, GOOD + "  lrr: 0.2\n", "b.yaml"))
    assert "b.yaml:12:3: optimizer.lrr: unknown key 'lrr' (did you mean 'lr'?)" in str(nested)


@pytest.mark.parametrize(
    "value, expect",
    [
        ('"0.1"', "expected a number, got the string '0.1'"),
        ("fast", "expected a number, got the string 'fast'"),
        ("yes", "expected a number, got the boolean true"),
        ("0", "expected a value > 0.0, got 0"),
    ],
)
def test_wrong_types_and_ranges_for_lr(tmp_path, value, expect):
    err = error_of(write_config(tmp_path, GOOD.replace("lr: 0.1", f"lr: {value}")))
    assert str(err) == f"{tmp_path / 'cfg.yaml'}:11:3: optimizer.lr: {expect}"


def test_booleans_are_not_integers_and_strings_not_booleans(tmp_path):
    text = GOOD.replace("seed: 3", "seed: no").replace(
        "{type: MM, out: 3}", '{type: MM, out: 3, bias: "yes"}'
    )
    lines = str(error_of(write_config(tmp_path, text))).splitlines()
    assert lines[0].endswith("cfg.yaml:2:1: seed: expected an integer, got the boolean false")
    assert lines[1].endswith(
        "cfg.yaml:8:26: model.layers[2].bias: expected true or false, got the string 'yes'"
    )


def test_exponent_learning_rate_validates_as_float(tmp_path):
    cfg = load_config(write_config(tmp_path, GOOD.replace("lr: 0.1", "lr: 1e-3"))).config
    assert cfg.optimizer.lr == 0.001 and isinstance(cfg.optimizer.lr, float)


@pytest.mark.parametrize(
    "old, new, line, field, expect",
    [
        ("{type: MM, out: 8}", "{type: MM, out: 0}", 6, "model.layers[0].out", "expected a value > 0, got 0"),
        ("{type: MM, out: 8}", "{type: MM, out: -2}", 6, "model.layers[0].out", "got -2"),
        ("input_shape: [4]", "input_shape: [4, 0]", 4, "model.input_shape", "positive"),
        (
            "{type: MM, out: 8}",
            "{type: MM, out: 2.5}",
            6,
            "model.layers[0].out",
            "expected an integer, got 2.5",
        ),
    ],
)
def test_non_positive_and_fractional_sizes(tmp_path, old, new, line, field, expect):
    err = error_of(write_config(tmp_path, GOOD.replace(old, new)))
    assert str(err).startswith(f"{tmp_path / 'cfg.yaml'}:{line}:")
    assert err.field == field and expect in str(err)


def test_empty_layer_list(tmp_path):
    text = GOOD.replace(
        "  layers:\n    - {type: MM, out: 8}\n    - type: ReLU\n    - {type: MM, out: 3}\n", "  layers: []\n"
    )
    err = error_of(write_config(tmp_path, text))
    assert str(err).startswith(f"{tmp_path / 'cfg.yaml'}:5:3: model.layers: must not be empty")


def test_layer_without_type_and_non_mapping_layer(tmp_path):
    err = error_of(write_config(tmp_path, GOOD.replace("- type: ReLU", "- {out: 3}")))
    assert "cfg.yaml:7:7: model.layers[1]: this layer has no 'type'" in str(err)


def test_several_problems_each_on_its_own_line_with_its_place(tmp_path):
    text = GOOD.replace("seed: 3", "seed: -1").replace("lr: 0.1", "lr: fast")
    err = error_of(write_config(tmp_path, text))
    assert isinstance(err, ConfigErrors)
    lines = str(err).splitlines()
    assert [ln.split(": ")[1] for ln in lines] == ["seed", "optimizer.lr"]
    assert all(ln.startswith(str(tmp_path / "cfg.yaml")) for ln in lines)
    assert err.field == "seed" and err.place.line == 2


# -- overrides ---------------------------------------------------------------------------------
def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    loaded = load_config(
        write_config(tmp_path, GOOD),
        [
            "optimizer.lr=1e-2",
            "model.layers[0].out=16",
            "train.early_stopping.patience=2",
            "optimizer.nesterov=false",
        ],
    )
    cfg = loaded.config
    assert cfg.optimizer.lr == 0.01 and cfg.model.layers[0]["out"] == 16
    assert cfg.train.early_stopping.patience == 2
    assert loaded.place("model.layers[0].out") == Place("<command line>")
    assert loaded.place("model.layers[0]").line == 6
    assert loaded.overrides == [
        "optimizer.lr=1e-2",
        "model.layers[0].out=16",
        "train.early_stopping.patience=2",
        "optimizer.nesterov=false",
    ]


def test_override_typo_gets_did_you_mean_and_command_line_place(tmp_path):
    err = error_of(write_config(tmp_path, GOOD), ["optimizer.lrr=0.05"])
    assert str(err) == (
        "<command line>: optimizer.lrr: unknown setting 'optimizer.lrr' in "
        "--set optimizer.lrr=0.05 (did you mean 'optimizer.lr'?)"
    )
    err = error_of(write_config(tmp_path, GOOD), ["model.layers[0].outt=3"])
    assert "did you mean 'model.layers[0].out'" in str(err)


def test_override_bad_value_and_bad_index(tmp_path):
    err = error_of(write_config(tmp_path, GOOD), ["optimizer.lr=fast"])
    assert str(err) == (
        "<command line>: optimizer.lr: expected a number, got the string 'fast' "
        "(from --set optimizer.lr=fast)"
    )
    err = error_of(write_config(tmp_path, GOOD), ["model.layers[7].out=3"])
    assert "index 7 is out of range: 'model.layers' has 3 entries" in str(err)
    err = error_of(write_config(tmp_path, GOOD), ["optimizer.lr"])
    assert "expected path=value" in str(err)


def test_apply_override_on_plain_data():
    raw = {"loss": "cross_entropy", "model": {"input_shape": [4], "layers": [{"type": "MM", "units": 3}]}}
    apply_override(raw, "model.layers[0].out=5")
    apply_override(raw, "model.layers[1]={type: ReLU}")
    apply_override(raw, "model.input_shape=[2, 2]")
    apply_override(raw, "loss.type=mse")
    assert raw["model"]["layers"] == [{"type": "MM", "out": 5}, {"type": "ReLU"}]
    assert raw["model"]["input_shape"] == [2, 2] and raw["loss"] == {"type": "mse"}


def test_resolved_config_round_trips(tmp_path):
    loaded = load_config(write_config(tmp_path, GOOD), ["optimizer.lr=0.05", "data.source=digits"])
    again = config_from_dict(loaded.config.model_dump(mode="json"))
    assert again.config == loaded.config
    assert again.config.model_dump() == loaded.config.model_dump()


def test_dict_without_file_still_names_the_field():
    with pytest.raises(ConfigError) as info:
        config_from_dict({"model": {"input_shape": [4], "layers": [{"type": "MM", "out": "3"}]}})
    assert str(info.value) == "<config>: model.layers[0].out: expected an integer, got the string '3'"


def test_resolved_config_round_trips_through_yaml_text(tmp_path):
    from nncli.config.yaml_positions import dump_yaml

    loaded = load_config(
        write_config(tmp_path, GOOD.replace("name: tiny", "name: '1e-3'")), ["optimizer.eps=1e-9"]
    )
    saved = write_config(tmp_path, dump_yaml(loaded.config.model_dump(mode="json")), "resolved.yaml")
    assert load_config(saved).config == loaded.config


def test_a_layer_that_is_not_a_mapping(tmp_path):
    err = error_of(write_config(tmp_path, GOOD.replace("- type: ReLU", "- ReLU")))
    assert str(err) == (
        f"{tmp_path / 'cfg.yaml'}:7:7: model.layers[1]: expected a layer mapping such as "
        f"{{type: ReLU}}, got the string 'ReLU'"
    )


def test_command_line_renders_one_line_per_problem_and_exit_2(tmp_path, capsys):
    from nncli.cli import main

    path = write_config(tmp_path, GOOD.replace("lr: 0.1", 'lr: "0.1"'))
    with pytest.raises(SystemExit) as info:
        main(["inspect", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    expected = f"{path}:11:3: optimizer.lr: expected a number, got the string '0.1'"
    assert "".join(expected.split()) in "".join(err.split())  # rich may wrap long lines


def _float_fields(model_cls, seen=None):
    """(model class, field name) of every float-typed field reachable from ``model_cls``."""
    import typing

    from pydantic import BaseModel

    seen = set() if seen is None else seen
    if model_cls in seen:
        return []
    seen.add(model_cls)
    out = []
    for name, f in model_cls.model_fields.items():
        stack = [f.annotation]
        while stack:
            ann = stack.pop()
            if ann is float:
                out.append((model_cls, name))
            elif isinstance(ann, type) and issubclass(ann, BaseModel):
                out += _float_fields(ann, seen)
            else:
                stack += list(typing.get_args(ann))
    return out


def test_every_float_hyper_parameter_refuses_nan_and_inf():
    # the schema, every layer's and every loss's Config: a NaN or Inf is never a valid setting
    from nncli.config.schema import Config
    from nncli.core.registry import losses, modules

    classes = [Config] + [c.Config for c in modules.canonical_classes().values()]
    classes += [c.Config for c in losses.canonical_classes().values()]
    fields = [f for c in classes for f in _float_fields(c)]
    assert len(fields) > 15, fields
    for cls, name in fields:
        assert cls.model_config.get("allow_inf_nan") is False, (cls.__name__, name)


def test_an_epochs_override_clears_steps_and_the_reverse():
    """Two ways to give one budget: the one set on the command line wins, never silently ignored."""
    from nncli.config.load import config_from_dict
    from nncli.core.errors import ConfigError

    base = {
        "model": {"input_shape": [2], "layers": [{"type": "MM", "out": 2}]},
        "data": {"source": "spirals"},
    }
    with_steps = dict(base, train={"steps": 3000})
    t = config_from_dict(with_steps, ["train.epochs=2"]).config.train
    assert (t.epochs, t.steps) == (2, None)
    t = config_from_dict(dict(base, train={"epochs": 40}), ["train.steps=7"]).config.train
    assert (t.epochs, t.steps) == (None, 7)
    t = config_from_dict(with_steps, ["train.steps=5"]).config.train
    assert t.steps == 5
    with pytest.raises(ConfigError, match="one way, epochs or steps"):
        config_from_dict(with_steps, ["train.epochs=2", "train.steps=5"])
    with pytest.raises(ConfigError, match="train.epochs"):
        config_from_dict(with_steps, ["train.epochs=0"])
