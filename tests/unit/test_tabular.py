"""Tables in the data section: columns chosen, text labels, missing cells, one-hot categories, class
weights; every statistic from the training split only, and the saved spec re-applied to raw rows."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.config.schema import DataConfig
from nncli.core.errors import DataError, UserError
from nncli.core.losses import CrossEntropy, Logistic, Squared
from nncli.training.data import load_dataset
from nncli.training.tables import fitting
from nncli.training.tables.encode import apply_preprocessing
from nncli.training.tables.prepared import read_prepared
from nncli.training.tables.raw_rows import cells_to_values, input_positions

HOUSES = """size,age,city,note,label
100,10,a,one,yes
80,,b,two,no
120,30,a,three,yes
60,40,c,four,no
90,,b,five,no
110,20,a,six,yes
70,50,c,seven,no
130,5,a,eight,yes
85,35,b,nine,no
95,25,c,ten,yes
"""


def _load(tmp_path, text, loss=None, name="h.csv", output_shape=(2,), **kw):
    (tmp_path / name).write_text(text)
    kw.setdefault("val_split", 0.0)
    kw.setdefault("standardize", False)
    shape = kw.pop("input_shape", None) or (_width(tmp_path / name, kw),)
    return load_dataset(
        DataConfig(source=name, **kw),
        input_shape=shape,
        loss=loss or CrossEntropy(),
        seed=0,
        base_dir=tmp_path,
        output_shape=output_shape,
    )


def _width(path, kw):
    """The number of model inputs the config would need (found by reading the file once)."""
    cfg = DataConfig(
        source=str(path), **{k: v for k, v in kw.items() if k not in ("val_split", "standardize")}
    )
    prep = read_prepared(path, cfg, str(path), "class")
    return fitting.fit(prep, np.arange(len(prep.y)))["n_inputs"]


# -- columns ---------------------------------------------------------------------------------------------


def test_features_and_drop_by_name_or_index(tmp_path):
    d = _load(tmp_path, HOUSES, features=["age", 0], missing="drop")
    assert d.info["preprocessing"]["inputs"][0]["column"] == "age"
    np.testing.assert_array_equal(d.train.x[:2], [[10, 100], [30, 120]])
    same = _load(tmp_path, HOUSES, drop=["note", 2], missing="drop")
    other = _load(tmp_path, HOUSES, drop=[-2, "city"], missing="drop")
    np.testing.assert_array_equal(same.train.x, other.train.x)
    np.testing.assert_array_equal(same.train.x[:, 0], [100, 120, 60, 110, 70, 130, 85, 95])


@pytest.mark.parametrize(
    "kw,field,message",
    [
        ({"features": ["size", "sise"]}, "data.features[1]", "no column named 'sise'"),
        ({"drop": ["notes"]}, "data.drop[0]", "(did you mean 'note'?)"),
        ({"features": ["size", 9]}, "data.features[1]", "column index 9 is out of range for 5 columns"),
        ({"features": ["size", "label"]}, "data.features[1]", "is the target column"),
        ({"features": ["size", "size"]}, "data.features[1]", "is listed twice"),
        ({"drop": ["label"]}, "data.drop[0]", "is the target column"),
        ({"categorical": ["note"], "drop": ["note"]}, "data.categorical[0]", "is not an input"),
        ({"target_column": "lable"}, "data.target_column", "(did you mean 'label'?)"),
    ],
)
def test_unknown_or_misused_columns_name_the_file_and_field(tmp_path, kw, field, message):
    with pytest.raises(UserError) as err:
        _load(tmp_path, HOUSES, missing="drop", **kw)
    assert err.value.field == field and message in err.value.message and "h.csv" in err.value.message


# -- labels ---------------------------------------------------------------------------------------------


def test_text_labels_become_sorted_classes(tmp_path):
    d = _load(tmp_path, HOUSES, drop=["note", "city"], missing="mean")
    assert d.info["class_names"] == ["no", "yes"]
    assert d.train.y.dtype == np.int64 and list(d.train.y[:4]) == [1, 0, 1, 0]
    three = HOUSES.replace("one,yes", "one,maybe").replace("\n80,,b,two,no", "\n80,,b,two,cat")
    d = _load(tmp_path, three, drop=["note", "city"], missing="mean", output_shape=(4,))
    assert d.info["class_names"] == ["cat", "maybe", "no", "yes"]
    with pytest.raises(
        DataError, match=r"the labels name 4 classes \(cat, maybe, no, yes\), but the model outputs 2"
    ):
        _load(tmp_path, three, drop=["note", "city"], missing="mean", output_shape=(2,))


def test_minus_one_plus_one_labels_for_the_logistic_loss(tmp_path):
    text = "a,b,y\n1,2,-1\n3,4,1\n5,6,+1\n7,8,-1.0\n"
    with pytest.raises(DataError, match=r"logistic labels must lie in \[0, 1\], got values in \[-1, 1\]"):
        _load(tmp_path, text, loss=Logistic(), output_shape=(1,))
    d = _load(tmp_path, text, loss=Logistic(), output_shape=(1,), label_map={-1: 0, 1: 1})
    assert list(d.train.y) == [0, 1, 1, 0] and d.info["class_names"] == ["-1", "1"]
    d = _load(tmp_path, text, loss=Logistic(), output_shape=(1,), label_map=[1, -1])  # a list: class i
    assert list(d.train.y) == [1, 0, 0, 1]
    with pytest.raises(DataError, match=r"h.csv:3: label '1' is not one of the labels of data.label_map"):
        _load(tmp_path, text, loss=Logistic(), output_shape=(1,), label_map={-1: 0, 0: 1})
    with pytest.raises(UserError, match=r"every class 0 … 2 needs a label; none maps to \[1\]"):
        _load(tmp_path, text, loss=Logistic(), output_shape=(1,), label_map={-1: 0, 1: 2})


def test_a_label_map_needs_a_classifier(tmp_path):
    with pytest.raises(
        UserError, match="maps labels to classes, but the loss takes real-valued targets"
    ) as err:
        _load(tmp_path, "a,b,y\n1,2,3\n3,4,5\n", loss=Squared(), output_shape=(1,), label_map=[3, 5])
    assert err.value.field == "data.label_map"


def test_text_labels_of_a_regression_are_refused_at_their_line(tmp_path):
    with pytest.raises(DataError, match=r"h.csv:3: column 3 \('y'\): 'big' is not a number"):
        _load(tmp_path, "a,b,y\n1,2,3.5\n3,4,big\n", loss=Squared(), output_shape=(1,))


# -- missing cells ---------------------------------------------------------------------------------------


def test_missing_cells_error_by_default_at_their_line(tmp_path):
    with pytest.raises(DataError) as err:
        _load(tmp_path, HOUSES, drop=["note"], categorical=["city"])
    assert err.value.field == "data.missing"
    assert "h.csv:3: column 2 ('age'): a missing value; data.missing is 'error'" in err.value.message


def test_drop_leaves_out_rows_with_a_missing_cell(tmp_path):
    d = _load(
        tmp_path, HOUSES.replace("c,ten", "NA,ten"), drop=["note"], categorical=["city"], missing="drop"
    )
    assert d.info["sizes"]["train"] == 7 and d.info["preprocessing"]["rows"] == {"read": 10, "dropped": 3}
    with pytest.raises(DataError, match="every row has a missing cell"):
        _load(tmp_path, "a,b,y\n1,,0\n,2,1\n", missing="drop")


@pytest.mark.parametrize("policy", ["mean", "median"])
def test_fill_values_come_from_the_training_split_only(tmp_path, policy):
    d = _load(tmp_path, HOUSES, drop=["note", "city"], missing=policy, test_split=0.4)
    spec = d.info["preprocessing"]
    rows = {float(r[0]): r for r in d.train.x}  # size is unique per row: the training rows
    ages = [
        float(line.split(",")[1])
        for line in HOUSES.splitlines()[1:]
        if line.split(",")[1] and float(line.split(",")[0]) in rows
    ]
    want = np.mean(ages) if policy == "mean" else np.median(ages)
    assert spec["inputs"][1]["fill"] == pytest.approx(want)
    everything = [10, 30, 40, 20, 50, 5, 35, 25]
    assert want != pytest.approx(np.mean(everything) if policy == "mean" else np.median(everything))
    filled = np.concatenate([d.train.x, d.test.x])
    gaps = np.isin(filled[:, 0], [80, 90])  # the two rows without an age
    assert not np.isnan(filled).any() and np.allclose(filled[gaps, 1], want)


def test_a_missing_label_can_only_be_dropped(tmp_path):
    text = "a,b,y\n1,2,0\n3,4,\n5,6,1\n"
    with pytest.raises(DataError, match=r"h.csv:3: column 3 \('y'\): the label is missing"):
        _load(tmp_path, text, missing="mean")
    assert _load(tmp_path, text, missing="drop").info["sizes"]["train"] == 2


# -- categories ---------------------------------------------------------------------------------------


def test_one_hot_categories_from_the_training_split(tmp_path):
    d = _load(tmp_path, HOUSES, drop=["note"], categorical=["city"], missing="mean")
    entry = d.info["preprocessing"]["inputs"][2]
    assert entry["categories"] == ["a", "b", "c"] and d.info["preprocessing"]["n_inputs"] == 5
    np.testing.assert_array_equal(d.train.x[:3, 2:], [[1, 0, 0], [0, 1, 0], [1, 0, 0]])


def test_a_category_unseen_in_training_follows_the_declared_policy(tmp_path):
    # 'z' is on the last line only; with seed 0 that row falls in the test split
    text = "a,c,y\n" + "".join(f"{i},{'ab'[i % 2]},{i % 2}\n" for i in range(20)) + "99,z,0\n"
    d = _load(tmp_path, text, categorical=["c"], test_split=0.25, unknown_category="ignore", input_shape=(3,))
    assert d.info["preprocessing"]["inputs"][1]["categories"] == ["a", "b"]
    (z,) = [row for row in d.test.x if row[0] == 99]
    np.testing.assert_array_equal(z[1:], [0, 0])
    with pytest.raises(DataError) as err:
        _load(tmp_path, text, categorical=["c"], test_split=0.25, input_shape=(3,))
    assert (
        "h.csv:22: column 2 ('c'): category 'z' (in the test split) was not in the training split (a, b); "
        "data.unknown_category: ignore encodes unknown categories as all zeros" in err.value.message
    )


def test_apply_preprocessing_on_raw_rows_matches_training(tmp_path):
    d = _load(tmp_path, HOUSES, drop=["note"], categorical=["city"], missing="median", val_split=0.2)
    spec = d.info["preprocessing"]
    lines = HOUSES.splitlines()
    rows = [line.split(",") for line in lines[1:]]
    positions = input_positions(spec, lines[0].split(","), 5, "raw", 1)
    x = apply_preprocessing(spec, cells_to_values(spec, rows, positions, "raw", range(2, 12)))
    got = np.concatenate([d.train.x, d.val.x])
    assert sorted(map(tuple, x)) == sorted(map(tuple, got))
    with pytest.raises(DataError, match=r"raw:3:1: column 1 \('size'\): 'big' is not a number"):
        cells_to_values(spec, [["1", "2", "a"], ["big", "2", "a"]], [0, 1, 2], "raw", [2, 3])
    spec_drop = {**spec, "missing": "drop", "inputs": [{**e, "fill": None} for e in spec["inputs"]]}
    with pytest.raises(DataError, match="left such rows out in training"):
        apply_preprocessing(spec_drop, [np.array([np.nan]), np.array([1.0]), np.array(["a"], dtype=object)])


# -- keys that need a table ---------------------------------------------------------------------------


def test_table_keys_on_arrays_are_refused_and_npz_text_labels_work(tmp_path):
    x = np.arange(12.0).reshape(6, 2)
    np.savez(tmp_path / "d.npz", x=x, y=np.array(["dog", "cat", "dog", "cat", "bird", "cat"]))
    d = load_dataset(
        DataConfig(source="d.npz", val_split=0.0, standardize=False),
        input_shape=(2,),
        loss=CrossEntropy(),
        seed=0,
        base_dir=tmp_path,
        output_shape=(3,),
    )
    assert d.info["class_names"] == ["bird", "cat", "dog"] and list(d.train.y) == [2, 1, 2, 1, 0, 1]
    for key, value in [("drop", [0]), ("categorical", [1]), ("features", [0]), ("missing", "mean")]:
        with pytest.raises(UserError, match="applies to a .csv or .parquet file") as err:
            load_dataset(
                DataConfig(source="d.npz", **{key: value}),
                input_shape=(2,),
                loss=CrossEntropy(),
                seed=0,
                base_dir=tmp_path,
            )
        assert err.value.field == f"data.{key}"


# -- class weights ------------------------------------------------------------------------------------


def test_balanced_class_weights_from_the_training_split(tmp_path):
    text = "a,y\n" + "".join(f"{i},{int(i % 4 == 0)}\n" for i in range(40))
    loss = CrossEntropy()
    d = _load(tmp_path, text, loss=loss, class_weights="balanced", val_split=0.25)
    counts = np.bincount(d.train.y, minlength=2)
    want = len(d.train.y) / (2 * counts)
    np.testing.assert_allclose(d.info["class_weights"], want)
    np.testing.assert_allclose(loss.weight, want)
    with pytest.raises(UserError, match="gives 3 weights for 2 classes"):
        _load(tmp_path, text, class_weights=[1, 2, 3])
    with pytest.raises(UserError, match="applies to the cross_entropy loss"):
        _load(tmp_path, text, loss=Logistic(), output_shape=(1,), class_weights="balanced")
    with pytest.raises(DataError, match="class 2 has no example in the training split"):
        _load(tmp_path, text, class_weights="balanced", output_shape=(3,))


def test_weighted_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch", reason="compares with torch.nn.CrossEntropyLoss(weight=...)")
    rng = np.random.default_rng(0)
    h = rng.normal(size=(7, 3)) * 3
    y = np.array([0, 2, 1, 2, 2, 0, 1])
    w = np.array([0.5, 2.0, 1.25])
    loss = CrossEntropy()
    loss.set_class_weights(w)
    J = loss.forward(h.copy(), y)
    g = loss.backward()
    ht = torch.tensor(h, requires_grad=True)
    Jt = torch.nn.CrossEntropyLoss(weight=torch.tensor(w))(ht, torch.tensor(y))
    Jt.backward()
    assert pytest.approx(Jt.item(), rel=1e-12) == J
    np.testing.assert_allclose(g, ht.grad.numpy(), rtol=1e-10, atol=1e-15)
    assert loss.batch_weight(y) == pytest.approx(w[y].sum())


def test_weighted_cross_entropy_gradient_by_central_differences():
    rng = np.random.default_rng(1)
    h, y, w = rng.normal(size=(5, 4)), np.array([3, 0, 1, 3, 2]), np.array([1.0, 0.2, 3.0, 0.7])
    loss = CrossEntropy()
    loss.set_class_weights(w)
    loss.forward(h.copy(), y)
    g = loss.backward()
    eps, num = 1e-6, np.zeros_like(h)
    for idx in np.ndindex(h.shape):
        hp, hm = h.copy(), h.copy()
        hp[idx] += eps
        hm[idx] -= eps
        num[idx] = (loss.forward(hp, y) - loss.forward(hm, y)) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


# -- engines and Parquet through the data section ------------------------------------------------------


@pytest.mark.parametrize("engine", ["python", "pandas", "pyarrow"])
def test_every_engine_gives_the_same_dataset(tmp_path, engine):
    pytest.importorskip(engine if engine != "python" else "numpy", reason=f"engine {engine} needs {engine}")
    kw = dict(drop=["note"], categorical=["city"], missing="mean", val_split=0.2, standardize=True)
    ref = _load(tmp_path, HOUSES, engine="python", **kw)
    d = _load(tmp_path, HOUSES, engine=engine, **kw)
    np.testing.assert_array_equal(d.train.x, ref.train.x)
    np.testing.assert_array_equal(d.val.x, ref.val.x)
    assert d.info["preprocessing"] == ref.info["preprocessing"]


def test_a_parquet_file_through_the_data_section(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet files need pyarrow")
    import pyarrow.parquet as pq

    rows = [line.split(",") for line in HOUSES.splitlines()]
    cols = {name: [r[j] for r in rows[1:]] for j, name in enumerate(rows[0])}
    table = pa.table(
        {
            "size": [float(v) for v in cols["size"]],
            "age": [float(v) if v else None for v in cols["age"]],
            **{k: cols[k] for k in ("city", "note", "label")},
        }
    )
    pq.write_table(table, tmp_path / "h.parquet")
    kw = dict(drop=["note"], categorical=["city"], missing="median", val_split=0.2)
    (tmp_path / "h.csv").write_text(HOUSES)
    a = _load(tmp_path, HOUSES, **kw)
    b = load_dataset(
        DataConfig(source="h.parquet", standardize=False, **kw),
        input_shape=(5,),
        loss=CrossEntropy(),
        seed=0,
        base_dir=tmp_path,
        output_shape=(2,),
    )
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert b.info["class_names"] == ["no", "yes"] and b.info["kind"] == "parquet"


def test_numbers_only_need_no_copy_of_the_block():
    block = np.array([[1.0, np.nan], [3.0, 4.0]])
    spec = {
        "inputs": [{"column": c, "index": i, "kind": "number", "fill": 9.0} for i, c in enumerate("ab")],
        "missing_values": [""],
    }
    out = apply_preprocessing(spec, [block[:, 0], block[:, 1]])
    assert out is block and out[0, 1] == 9.0
    copy = apply_preprocessing(spec, [block[:, 1], block[:, 0]])  # another order: a new array
    assert copy is not block and list(copy[1]) == [4.0, 3.0]
