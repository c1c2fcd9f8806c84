"""``extends:`` through the real command line: the merged config is what prints, trains and is saved."""

from __future__ import annotations

import yaml
from support import assert_refused, run_main, write_config

BASE = """\
name: family
dtype: float64
model:
  input_shape: [2]
  layers: [{type: MM, out: 8}, {type: ReLU}, {type: MM, out: 3}]
data: {source: spirals, n_samples: 60, batch_size: 20}
train: {steps: 3000, log_every: 2}
"""


def test_print_config_and_the_run_folder_hold_the_merged_config(tmp_path):
    write_config(tmp_path, BASE, "base.yaml")
    (tmp_path / "exp").mkdir()
    child = write_config(tmp_path / "exp", "extends: ../base.yaml\ntrain: {epochs: 1}\nseed: 4\n", "c.yaml")
    res = run_main("train", child, "--print-config")
    assert res.code == 0, res
    printed = yaml.safe_load(res.out)
    assert printed["train"]["epochs"] == 1 and printed["train"]["steps"] is None
    assert printed["seed"] == 4 and printed["name"] == "family" and "extends" not in printed

    runs = tmp_path / "runs"
    res = run_main("train", child, "--runs-dir", runs, "-q", "--no-curves")
    assert res.code == 0, res
    (run,) = runs.iterdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved == printed
    assert yaml.safe_load((run / "summary.json").read_text())["steps"] == 3  # 54 examples, batch 20


def test_bad_bases_exit_2_with_the_place(tmp_path):
    write_config(tmp_path, BASE.replace("n_samples: 60", "n_samples: -5"), "bad.yaml")
    child = write_config(tmp_path, "extends: bad.yaml\n", "c.yaml")
    runs = tmp_path / "runs"
    res = run_main("train", child, "--runs-dir", runs)
    assert_refused(res, "data.n_samples", runs_dir=runs, place=f"{tmp_path / 'bad.yaml'}:6:")

    missing = write_config(tmp_path, "seed: 1\nextends: [bad.yaml, nope.yaml]\n", "m.yaml")
    res = run_main("train", missing, "--runs-dir", runs)
    assert_refused(res, "extends[1]", "nope.yaml: no such file", runs_dir=runs, place=f"{missing}:2:")

    write_config(tmp_path, "extends: c2.yaml\n", "c1.yaml")
    write_config(tmp_path, "extends: c1.yaml\n", "c2.yaml")
    res = run_main("train", tmp_path / "c1.yaml", "--print-config")
    assert_refused(res, "cycle", place=f"{tmp_path / 'c2.yaml'}:1:")
