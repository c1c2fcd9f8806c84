"""Datasets: shapes and splits, stratification, seeding, batching, standardisation and bad data."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.config.schema import DataConfig
from nncli.core.errors import ConfigError, DataError
from nncli.core.losses import CrossEntropy, Logistic, Squared
from nncli.training.data import load_dataset
from nncli.training.data_seeds import epoch_permutation
from nncli.training.splits import Split, batches
from nncli.training.standardization import apply_standardization
from nncli.training.userdata import load_arrays

CE = CrossEntropy()


def _load(source, shape, loss=CE, seed=0, **kw):
    out = kw.pop("output_shape", None)
    base = kw.pop("base_dir", None)
    return load_dataset(
        DataConfig(source=str(source), **kw),
        input_shape=shape,
        loss=loss,
        seed=seed,
        base_dir=base,
        output_shape=out,
    )


# -- built-ins --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 40), (40,)])
def test_mnist1d_keeps_its_published_test_set(shape):
    d = _load("mnist1d", shape)
    assert d.train.x.shape == (3600, *shape) and d.val.x.shape == (400, *shape)
    assert d.test.x.shape == (1000, *shape) and d.test.y.shape == (1000,)
    assert d.train.y.dtype == np.int64 and d.train.x.dtype == np.float64
    assert d.info["split"]["test"] == "published"
    assert d.info["sizes"] == {"train": 3600, "val": 400, "test": 1000}


@pytest.mark.parametrize("shape", [(1, 8, 8), (64,)])
def test_digits_default_split(shape):
    d = _load("digits", shape)
    sizes = d.info["sizes"]
    assert sizes == {"train": 1797 - 359 - 180, "val": 180, "test": 359}  # 0.2 and 0.1 of 1797
    assert d.train.x.shape[1:] == shape and d.info["split"]["test_fraction"] == 0.2
    assert d.info["split"]["method"] == "stratified"


def test_digits_test_split_override_and_no_standardisation():
    d = _load("digits", (64,), test_split=0.3, val_split=0.0, standardize=False)
    assert d.info["sizes"] == {"train": 1797 - 539, "val": 0, "test": 539} and d.val is None
    assert d.train.x.max() == 16.0 and d.info["standardization"] is None


def test_synthetic_sets():
    s = _load("spirals", (2,), n_samples=300, classes=4, noise=0.0, val_split=0.2)
    assert s.train.x.shape == (240, 2) and set(np.unique(s.train.y)) == {0, 1, 2, 3}
    r = _load(
        "regression1d", (1,), loss=Squared(), n_samples=50, noise=0.0, standardize=False, output_shape=(1,)
    )
    assert r.train.y.shape == (45, 1) and r.train.y.dtype == np.float64
    np.testing.assert_allclose(r.train.y, np.sin(r.train.x) + 0.3 * r.train.x)
    # the synthetic data itself depends on the seed
    other = _load("spirals", (2,), seed=1, n_samples=300, classes=4, noise=0.1)
    again = _load("spirals", (2,), seed=1, n_samples=300, classes=4, noise=0.1)
    np.testing.assert_array_equal(other.train.x, again.train.x)
    assert not np.allclose(
        other.train.x, _load("spirals", (2,), seed=2, n_samples=300, classes=4, noise=0.1).train.x
    )


def test_stratified_split_keeps_class_proportions():
    d = _load("digits", (64,), standardize=False)
    y_all = np.concatenate([d.train.y, d.val.y, d.test.y])
    totals = np.bincount(y_all, minlength=10)
    for part, frac in ((d.test, 0.2), (d.val, 0.1)):
        counts = np.bincount(part.y, minlength=10)
        assert np.all(np.abs(counts - frac * totals) <= 1), (counts, frac * totals)
    # an unbalanced binary set: 10 % positives stay 10 % in each part
    y = np.r_[np.ones(50), np.zeros(450)].astype(np.int64)
    x = np.arange(500.0)[:, None]
    split = _npz_dataset(x, y, loss=Logistic(), val_split=0.2, test_split=0.2)
    assert [int(s.y.sum()) for s in (split.train, split.val, split.test)] == [30, 10, 10]


def test_same_seed_same_split_other_seed_other_split():
    a, b, c = (_load("digits", (64,), seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    assert a.info["split"]["train_indices_sha256"] == b.info["split"]["train_indices_sha256"]
    assert a.info["split"]["train_indices_sha256"] != c.info["split"]["train_indices_sha256"]


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
    p = epoch_permutation(100, 3, 5)
    assert sorted(p) == list(range(100))
    np.testing.assert_array_equal(p, epoch_permutation(100, 3, 5))
    assert not np.array_equal(p, epoch_permutation(100, 3, 6))
    assert not np.array_equal(p, epoch_permutation(100, 4, 5))


def test_batches_cover_every_example_once_and_resume():
    split = Split(np.arange(10.0)[:, None], np.arange(10))
    order = epoch_permutation(10, 0, 0)
    got = list(batches(split, 4, order))
    assert [len(x) for x, _ in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), order)
    resumed = list(batches(split, 4, order, start=1))
    assert len(resumed) == 2 and all(np.array_equal(a[1], b[1]) for a, b in zip(resumed, got[1:]))
    plain = list(batches(split, 3, None))
    np.testing.assert_array_equal(plain[-1][1], [9])


def test_standardisation_uses_training_statistics_only():
    raw = _load("digits", (64,), standardize=False)
    d = _load("digits", (64,))
    mean, std = np.asarray(d.info["standardization"]["mean"]), np.asarray(d.info["standardization"]["std"])
    np.testing.assert_allclose(mean, raw.train.x.mean(axis=0))
    varying = raw.train.x.std(axis=0) > 0
    np.testing.assert_allclose(d.train.x.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(d.train.x.std(axis=0)[varying], 1)
    assert np.all(std[~varying] == 1.0) and (~varying).any()  # constant pixels: divided by 1, not 1e-8
    np.testing.assert_allclose(apply_standardization(raw.test.x, d.info), d.test.x)
    # the validation part was standardised with the training statistics, so its mean is not exactly 0
    assert np.abs(d.val.x.mean(axis=0)).max() > 1e-3
    # eval data in another layout of the same size is reshaped
    np.testing.assert_allclose(apply_standardization(raw.test.x.reshape(-1, 8, 8), d.info), d.test.x)
    with pytest.raises(DataError, match=r"\(63,\).*\(64,\)"):
        apply_standardization(np.zeros((2, 63)), d.info)


# -- user files -------------------------------------------------------------------------------------


def _npz_dataset(x, y, loss=CE, shape=None, tmp=None, **kw):
    import tempfile
    from pathlib import Path

    folder = Path(tmp or tempfile.mkdtemp())
    np.savez(folder / "d.npz", x=x, y=y)
    return _load(folder / "d.npz", shape or x.shape[1:], loss=loss, **kw)


def test_user_npz_with_test_arrays_and_relative_path(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), rng.integers(0, 2, size=20)
    np.savez(tmp_path / "mine.npz", x=x, y=y, x_test=x[:5], y_test=y[:5])
    d = _load("mine.npz", (3,), base_dir=tmp_path, val_split=0.25, standardize=False)
    assert d.info["sizes"] == {"train": 15, "val": 5, "test": 5} and d.info["split"]["test"] == "published"
    np.testing.assert_array_equal(d.test.x, x[:5])
    xs, ys = load_arrays(tmp_path / "mine.npz", DataConfig(source="mine.npz"))
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, y)


def test_user_csv_header_and_target_by_name_or_index(tmp_path):
    (tmp_path / "a.csv").write_text("f1,label,f2\n1,0,2\n3,1,4\n\n5,1,6\n")
    x, y = load_arrays(tmp_path / "a.csv", DataConfig(source="a.csv", target_column="label"))
    np.testing.assert_array_equal(x, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(y, [0, 1, 1])
    (tmp_path / "b.csv").write_text("1,2,0\n3,4,1\n")
    for header in (False, True):  # a numeric first line is data even when a header is expected
        d = _load(tmp_path / "b.csv", (2,), csv_header=header, val_split=0.0, standardize=False)
        np.testing.assert_array_equal(d.train.x, [[1, 2], [3, 4]])
        assert d.train.y.dtype == np.int64 and list(d.train.y) == [0, 1]
    with pytest.raises(DataError, match="is a name, but the file has no header"):
        load_arrays(tmp_path / "b.csv", DataConfig(source="b.csv", target_column="y", csv_header=False))
    x, y = load_arrays(tmp_path / "b.csv", DataConfig(source="b.csv", target_column=0))
    np.testing.assert_array_equal(y, [1, 3])
    np.testing.assert_array_equal(x, [[2, 0], [4, 1]])


BAD_CSV = [
    ("a,b,y\n1,2,0\n3,4\n", r"bad\.csv:3: expected 3 columns \(as on line 1\), got 2"),
    ("a,b,y\n1,2,0\n3,x,1\n", r"bad\.csv:3: column 2 \('b'\): 'x' is not a number"),
    ("a,b,y\n1,,0\n", r"bad\.csv:2: column 2 \('b'\): a missing value; data\.missing is 'error'"),
    ("a,b,y\n1,nan,0\n", r"bad\.csv:2: column 2 \('b'\): a missing value"),
    ("a,b,y\n1,2,0\n1,-inf,0\n", r"bad\.csv:3: column 2 \('b'\): -inf is not a finite number"),
    ("a,b,y\n", r"bad\.csv: no data rows after the header"),
    ("a,b,y\n1,2,0\n", r"no column named 'label'"),
]


@pytest.mark.parametrize("text,message", BAD_CSV, ids=[m[:40] for _, m in BAD_CSV])
def test_bad_csv(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    target = "label" if "label" in message else -1
    with pytest.raises(DataError, match=message):
        _load(tmp_path / "bad.csv", (2,), target_column=target)


BAD_NPZ = [
    ({"x": np.zeros((0, 3)), "y": np.zeros(0, dtype=int)}, (3,), {}, "inputs are empty"),
    (
        {"x": np.array([[1.0, np.nan, 0]] * 2), "y": np.zeros(2, dtype=int)},
        (3,),
        {},
        "NaN or Inf in 2 example",
    ),
    ({"x": np.array([["a", "b", "c"]]), "y": np.zeros(1, dtype=int)}, (3,), {}, "inputs must be numeric"),
    ({"x": np.zeros((4, 3)), "y": np.zeros(3, dtype=int)}, (3,), {}, "4 examples but targets have 3"),
    (
        {"x": np.zeros((4, 3)), "y": np.zeros(4, dtype=int)},
        (1, 5),
        {},
        r"shape \(3,\) \(3 values\), but the model's input_shape is \[1, 5\] \(5 values\)",
    ),
    ({"x": np.zeros((4, 3)), "y": np.array([0, 1, 0.5, 1])}, (3,), {}, "whole numbers.*0.5 at index 2"),
    (
        {"x": np.zeros((4, 3)), "y": np.array([0, 1, 2, 7])},
        (3,),
        {"output_shape": (3,)},
        r"train targets: cross_entropy labels must lie in \[0, 2\]",
    ),
    (
        {"x": np.zeros((4, 3)), "y": np.zeros(4, dtype=int)},
        (3,),
        {"x_key": "inputs"},
        "no array named 'inputs'",
    ),
    (
        {"x": np.zeros((4, 3)), "y": np.zeros(4, dtype=int), "x_test": np.zeros((2, 3))},
        (3,),
        {},
        "test array 'x_test' but no 'y_test'",
    ),
    (
        {"x": np.array([[1, 2, 3]], dtype=object), "y": np.zeros(1, dtype=int)},
        (3,),
        {},
        r"Python objects \(dtype=object\)",
    ),
]


@pytest.mark.parametrize("arrays,shape,kw,message", BAD_NPZ, ids=[case[-1][:40] for case in BAD_NPZ])
def test_bad_npz(tmp_path, arrays, shape, kw, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        _load(tmp_path / "bad.npz", shape, val_split=0.0, standardize=False, **kw)
    assert "bad.npz" in str(info.value)


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="nothere.npz: file not found"):
        _load(tmp_path / "nothere.npz", (3,))
    with pytest.raises(DataError, match="nothere.csv: file not found"):
        _load(tmp_path / "nothere.csv", (3,))
    with pytest.raises(ConfigError, match="did you mean 'digits'"):
        _load("digts", (64,))
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        _load(tmp_path / "junk.npz", (3,))


def test_split_fractions_that_leave_nothing_to_train_on(tmp_path):
    with pytest.raises(DataError, match="none for training"):
        _npz_dataset(np.zeros((4, 2)), np.array([0, 1, 0, 1]), tmp=tmp_path, val_split=0.5, test_split=0.5)
