"""A messy CSV through the command line: text labels, a dropped text column, a categorical column,
missing cells filled, class weights → train → predict and eval; and every bad key refused, placed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import assert_refused, run_main, run_nncli, write_config

from nncli.core.errors import UserError

CONFIG = """\
name: people
seed: 0
dtype: float64
model:
  input_shape: [5]
  layers: [{type: MM, out: 8}, {type: ReLU}, {type: MM, out: 2}]
loss: cross_entropy
data:
  source: people.csv
  target_column: label
  drop: [note]
  categorical: [city]
  missing: median
  class_weights: balanced
  val_split: 0.2
  batch_size: 16
optimizer: {type: adam, lr: 0.02}
train: {epochs: 3}
"""


def _people(path, n=120, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["size,age,city,note,label"]
    for i in range(n):
        size, city = rng.normal(100, 20), rng.choice(["north", "south", "east"])
        label = "yes" if size + (15 if city == "north" else 0) > 110 else "no"
        age = "" if i % 11 == 0 else f"{rng.uniform(0, 80):.1f}"
        lines.append(f"{size:.2f},{age},{city},free text {i},{label}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("people")
    _people(folder / "people.csv")
    cfg = write_config(folder, CONFIG, "people.yaml")
    res = run_main("train", cfg, "-q", "--no-curves", "--runs-dir", folder / "runs")
    assert res.code == 0, res
    (run,) = (folder / "runs").iterdir()
    return folder, run


def test_train_saves_the_preprocessing_and_predict_applies_it(trained, tmp_path):
    folder, run = trained
    data = json.loads((run / "run.json").read_text())["data"]
    assert data["class_names"] == ["no", "yes"] and len(data["class_weights"]) == 2
    spec = data["preprocessing"]
    assert [e["column"] for e in spec["inputs"]] == ["size", "age", "city"]
    assert spec["inputs"][2]["categories"] == ["east", "north", "south"] and spec["n_inputs"] == 5
    new = tmp_path / "new.csv"
    new.write_text("city,size,age,note\nnorth,140,30,x\nsouth,60,,y\neast,100,NA,z\n")  # any column order
    out = tmp_path / "pred.csv"
    res = run_main("predict", run, new, "--out", out, "--proba")
    assert res.code == 0, res
    rows = out.read_text().splitlines()
    assert rows[0] == "prediction,p_no,p_yes" and len(rows) == 4
    assert rows[1].split(",")[0] == "yes" and rows[2].split(",")[0] == "no"
    # the library call on the same rows agrees with the file
    from nncli.runs.loaded_run import load_run
    from nncli.training.tables.encode import apply_preprocessing
    from nncli.training.tables.raw_rows import cells_to_values, input_positions

    loaded = load_run(run)
    cells = [r.split(",") for r in new.read_text().splitlines()[1:]]
    positions = input_positions(spec, ["city", "size", "age", "note"], 4, "new.csv", 1)
    x = apply_preprocessing(spec, cells_to_values(spec, cells, positions, "new.csv", [2, 3, 4]))
    assert [data["class_names"][c] for c in loaded.predict(x)] == [r.split(",")[0] for r in rows[1:]]


def test_eval_on_a_labelled_file_and_its_unseen_labels(trained, tmp_path):
    folder, run = trained
    res = run_main("eval", run, "--data", folder / "people.csv", "--json")
    assert res.code == 0, res
    assert json.loads(res.out)["examples"] == 120
    text = (folder / "people.csv").read_text().splitlines()
    text[3] = text[3].rsplit(",", 1)[0] + ",maybe"
    (tmp_path / "odd.csv").write_text("\n".join(text) + "\n")
    assert_refused(
        run_main("eval", run, "--data", tmp_path / "odd.csv"),
        "odd.csv:4: label 'maybe' is not one of the classes the run was trained on (no, yes)",
    )
    (tmp_path / "city.csv").write_text("size,age,city\n100,20,west\n")
    assert_refused(
        run_main("predict", run, tmp_path / "city.csv"),
        "city.csv:2: column 3 ('city'): category 'west' was not in the training split (east, north, south)",
    )


BAD = [
    ("drop: [note]", "drop: [nope]", "data.drop[0]", "people.csv: no column named 'nope'"),
    ("drop: [note]", "drop: [notes]", "data.drop[0]", "(did you mean 'note'?)"),
    (
        "missing: median",
        "missing: medain",
        "data.missing",
        "got the string 'medain' (did you mean 'median'?)",
    ),
    ("class_weights: balanced", "class_weights: balance", "data.class_weights", "(did you mean 'balanced'?)"),
    ("categorical: [city]", "categorical: [cty]", "data.categorical[0]", "(did you mean 'city'?)"),
    ("categorical: [city]", "categorical: []", "data.missing", "column 3 ('city'): 'south' is not a number"),
    ("missing: median", "missing: error", "data.missing", "people.csv:2: column 2 ('age'): a missing value"),
    (
        "class_weights: balanced",
        "class_weights: [1, 2, 3]",
        "data.class_weights",
        "gives 3 weights for 2 classes",
    ),
    (
        "categorical: [city]",
        "categorical: [city]\n  unknown_category: skip",
        "data.unknown_category",
        "'error' or 'ignore'",
    ),
]


@pytest.mark.parametrize("old,new,field,message", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_data_keys_are_placed_in_the_config(tmp_path, old, new, field, message):
    _people(tmp_path / "people.csv", n=40)
    cfg = write_config(tmp_path, CONFIG.replace(old, new), "people.yaml")
    key = new.splitlines()[-1].split(":")[0].strip() + ":"
    line = next(i for i, text in enumerate(CONFIG.replace(old, new).splitlines(), 1) if key in text)
    if field == "data.missing" and "not a number" in message:
        line, field = 9, "data.source"  # a text column that is neither dropped nor categorical
    res = run_main("train", cfg, "-q", "--no-curves", "--runs-dir", tmp_path / "runs")
    assert_refused(res, message, f"{field}:", runs_dir=tmp_path / "runs", place=f"{cfg}:{line}:")


def test_a_policy_misspelled_on_the_command_line_exits_2(tmp_path):
    _people(tmp_path / "people.csv", n=40)
    cfg = write_config(tmp_path, CONFIG, "people.yaml")
    res = run_nncli("train", cfg, "--set", "data.unknown_category=ignor", "--runs-dir", tmp_path / "runs")
    assert_refused(res, "data.unknown_category", "(did you mean 'ignore'?)", runs_dir=tmp_path / "runs")


def test_predict_reads_parquet_like_csv(trained, tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet files need pyarrow")
    import pyarrow.parquet as pq

    folder, run = trained
    (tmp_path / "new.csv").write_text("size,age,city\n140,30,north\n60,,south\n100,50,east\n")
    pq.write_table(
        pa.table({"city": ["north", "south", "east"], "age": [30.0, None, 50.0], "size": [140, 60, 100]}),
        tmp_path / "new.parquet",
    )
    outs = []
    for name in ("new.csv", "new.parquet"):
        res = run_main("predict", run, tmp_path / name, "--proba")
        assert res.code == 0, res
        outs.append(res.out)
    assert outs[0] == outs[1] and len(outs[0].splitlines()) == 4
    pq.write_table(pa.table({"city": ["west"], "age": [1.0], "size": [1.0]}), tmp_path / "west.parquet")
    assert_refused(
        run_main("predict", run, tmp_path / "west.parquet"),
        "west.parquet (row 1): column 3 ('city'): category 'west' was not in the training split",
    )


def test_the_library_encodes_raw_columns(trained):
    from nncli.runs.loaded_run import load_run

    folder, run = trained
    loaded = load_run(run)
    x = loaded.encode({"size": [140.0, 60.0], "age": [30.0, None], "city": ["north", "south"]})
    assert x.shape == (2, 5) and list(x[0, 2:]) == [0.0, 1.0, 0.0]
    assert [loaded.class_names[c] for c in loaded.predict(x)] == ["yes", "no"]
    with pytest.raises(UserError, match=r"no column 'city' \(an input of the run\)"):
        loaded.encode({"size": [1.0], "age": [1.0], "cty": ["north"]})
