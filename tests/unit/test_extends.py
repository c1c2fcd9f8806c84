"""``extends:``: base configs deep-merged under a child, every value placed in the file that wrote it."""

from __future__ import annotations

import pytest
from support import write_config

from nncli.config.extends import MAX_DEPTH, MAX_FILES
from nncli.config.load import load_config
from nncli.core.errors import ConfigError

BASE = """\
name: family
seed: 1
model:
  input_shape: [2]
  layers:
    - {type: MM, out: 8}
    - {type: ReLU}
    - {type: MM, out: 3}
data: {source: spirals, n_samples: 60, batch_size: 20}
optimizer: {type: adam, lr: 0.01}
train: {steps: 40, log_every: 5}
"""


def error_of(path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


@pytest.fixture
def family(tmp_path):
    """configs/base.yaml and a folder configs/exp/ for children."""
    (tmp_path / "configs" / "exp").mkdir(parents=True)
    write_config(tmp_path / "configs", BASE, "base.yaml")
    return tmp_path / "configs"


def test_child_values_win_mappings_merge_lists_replace(family):
    child = write_config(
        family / "exp",
        """\
        extends: ../base.yaml
        optimizer: {lr: 0.05}
        model:
          layers: [{type: MM, out: 3}]
        """,
        "a.yaml",
    )
    cfg = load_config(child).config
    assert cfg.optimizer.type == "adam" and cfg.optimizer.lr == 0.05  # merged key by key
    assert cfg.model.input_shape == [2]  # kept from the base
    assert cfg.model.layers == [{"type": "MM", "out": 3}]  # a list is replaced whole
    assert cfg.name == "family" and cfg.train.steps == 40


def test_a_list_of_bases_merges_left_to_right_and_bases_nest(family):
    write_config(family, "extends: base.yaml\noptimizer: {lr: 0.2}\nseed: 7\n", "mid.yaml")
    write_config(family, "optimizer: {lr: 0.3, momentum: 0.5}\n", "fast.yaml")
    child = write_config(family / "exp", "extends: [../mid.yaml, ../fast.yaml]\nseed: 9\n", "b.yaml")
    cfg = load_config(child).config
    assert cfg.optimizer.lr == 0.3 and cfg.optimizer.momentum == 0.5 and cfg.optimizer.type == "adam"
    assert cfg.seed == 9
    # the same base reached twice (a diamond) is not a cycle
    diamond = write_config(family / "exp", "extends: [../mid.yaml, ../base.yaml]\n", "d.yaml")
    assert load_config(diamond).config.seed == 1


def test_epochs_in_a_child_replaces_the_base_steps(family):
    child = write_config(family / "exp", "extends: ../base.yaml\ntrain: {epochs: 2}\n", "e.yaml")
    cfg = load_config(child).config
    assert cfg.train.epochs == 2 and cfg.train.steps is None and cfg.train.log_every == 5


def test_an_error_in_a_base_value_names_the_base_file_and_line(family):
    write_config(family, BASE.replace("lr: 0.01", "lr: -1"), "bad_base.yaml")
    child = write_config(family / "exp", "extends: ../bad_base.yaml\nseed: 2\n", "c.yaml")
    err = error_of(child)
    assert str(err).startswith(f"{family / 'bad_base.yaml'}:10:") and err.field == "optimizer.lr"
    # a bad value written in the child points at the child, even when the base also sets it
    child = write_config(family / "exp", "extends: ../base.yaml\noptimizer: {lr: -2}\n", "c2.yaml")
    assert str(error_of(child)).startswith(f"{child}:2:")


def test_data_paths_in_a_base_are_read_from_the_base_folder(family):
    write_config(family, "extends: base.yaml\ndata: {source: d/data.npz}\n", "own.yaml")
    child = write_config(family / "exp", "extends: ../own.yaml\n", "f.yaml")
    loaded = load_config(child)
    assert loaded.folder_of("data.source") == family
    assert load_config(family / "base.yaml", ["data.source=x.csv"]).folder_of("data.source") == family


@pytest.mark.parametrize(
    "extends, text",
    [
        ("../missing.yaml", "base config {family}/missing.yaml: no such file"),
        ("/etc/base.yaml", "write a base as a path relative to this file"),
        ("~/base.yaml", "write a base as a path relative to this file"),
        ("../base.json", "a base config is a .yaml or .yml file"),
        ("3", "expected the path of a base config"),
        ("[../base.yaml, {a: 1}]", "expected the path of a base config (extends: base.yaml) or a list"),
        ("..", "a base config is a .yaml or .yml file"),
    ],
)
def test_bad_extends_values_are_placed_in_the_child(family, extends, text):
    child = write_config(family / "exp", f"seed: 0\nextends: {extends}\n", "g.yaml")
    err = error_of(child)
    assert str(err).startswith(f"{child}:2:"), str(err)
    assert err.field.startswith("extends")
    assert text.format(family=family) in str(err)


def test_a_directory_as_base_is_refused(family):
    (family / "dir.yaml").mkdir()
    child = write_config(family / "exp", "extends: ../dir.yaml\n", "h.yaml")
    assert "is a directory" in str(error_of(child))


def test_cycles_are_refused_with_the_chain(family):
    a = write_config(family, "extends: b.yaml\n", "a.yaml")
    write_config(family, "seed: 1\nextends: a.yaml\n", "b.yaml")
    err = error_of(a)
    assert str(err).startswith(f"{family / 'b.yaml'}:2:")  # where the cycle closes
    assert f"cycle: {a} → {family / 'b.yaml'} → {a}" in str(err)
    own = write_config(family, "extends: self.yaml\n", "self.yaml")
    assert "cycle" in str(error_of(own))


def test_depth_and_file_count_are_limited(family):
    for i in range(MAX_DEPTH + 2):
        write_config(family, f"extends: n{i + 1}.yaml\n", f"n{i}.yaml")
    write_config(family, BASE, f"n{MAX_DEPTH + 2}.yaml")
    err = error_of(family / "n0.yaml")
    assert f"more than {MAX_DEPTH} levels deep" in str(err)
    assert str(err).startswith(str(family / f"n{MAX_DEPTH}.yaml"))
    # a wide fan of bases: each level names the next one twice
    for i in range(8):
        write_config(family, f"extends: [w{i + 1}.yaml, w{i + 1}.yaml]\n", f"w{i}.yaml")
    write_config(family, "seed: 1\n", "w8.yaml")
    assert f"more than {MAX_FILES} config files" in str(error_of(family / "w0.yaml"))


def test_a_base_that_is_not_a_mapping_or_not_yaml(family):
    write_config(family, "- 1\n- 2\n", "list.yaml")
    child = write_config(family / "exp", "extends: ../list.yaml\n", "i.yaml")
    assert str(error_of(child)).startswith(f"{family / 'list.yaml'}:1:1: expected a mapping")
    write_config(family, "seed: [1\n", "broken.yaml")
    child = write_config(family / "exp", "extends: ../broken.yaml\n", "j.yaml")
    assert str(error_of(child)).startswith(f"{family / 'broken.yaml'}:2:")
    write_config(family, "seed: !!python/name:os.system 1\n", "tag.yaml")
    child = write_config(family / "exp", "extends: ../tag.yaml\n", "k.yaml")
    assert "unsupported YAML tag" in str(error_of(child))


def test_extends_cannot_be_set_on_the_command_line(family):
    with pytest.raises(ConfigError, match="unknown setting 'extends'"):
        load_config(family / "base.yaml", ["extends=other.yaml"])
