"""The table readers: every engine gives the same numbers and texts, a file a fast engine refuses is
read (or refused, at its line) by the python engine, Parquet goes through the same path."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.config.schema import MISSING_VALUES
from nncli.core.errors import DataError
from nncli.training.tables import engines
from nncli.training.tables.head import read_head
from nncli.training.tables.read import read_table

MESSY = (
    "\ufeffx,y,city,label\r\n"
    "1.5,2,north,yes\r\n"
    "\r\n"
    '-0.1,NA," south ",no\r\n'
    '1e-3,,"east, far",yes\r\n'
    "3,0.30000000000000004,?,no\r\n"
)


def _engines():
    out = ["python"]
    for name in ("pandas", "pyarrow"):
        if engines.importable(name):
            out.append(name)
    return out


def _read(path, engine, numeric=(0, 1), text=(2, 3)):
    head = read_head(path, True, str(path))
    return read_table(
        path,
        head,
        numeric=list(numeric),
        text=list(text),
        where=path.name,
        engine=engine,
        missing_values=MISSING_VALUES,
    )


@pytest.mark.parametrize("engine", _engines())
def test_every_engine_reads_the_same_values(tmp_path, engine):
    path = tmp_path / "m.csv"
    path.write_bytes(MESSY.encode())
    t = _read(path, engine)
    np.testing.assert_array_equal(t.block[:, 0], [1.5, -0.1, 1e-3, 3.0])
    np.testing.assert_array_equal(t.block[:, 1], [2.0, np.nan, np.nan, 0.30000000000000004])
    assert list(t.text[2]) == ["north", "south", "east, far", None]
    assert list(t.text[3]) == ["yes", "no", "yes", "no"]
    assert t.head.names == ["x", "y", "city", "label"] and t.line(2) == ":5"


def test_the_engines_agree_on_random_numbers_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 4)) * 10.0 ** rng.integers(-8, 8, size=(500, 4))
    path = tmp_path / "r.csv"
    np.savetxt(path, values, delimiter=",", header="a,b,c,d", comments="", fmt="%.17g")
    for engine in _engines():
        got = _read(path, engine, numeric=(0, 1, 2, 3), text=()).block
        np.testing.assert_array_equal(got, values, err_msg=engine)


@pytest.mark.parametrize("engine", _engines())
@pytest.mark.parametrize(
    "text,message",
    [
        (
            "x,y\n1,2\n3,oops\n",
            r"bad.csv:3: column 2 \('y'\): 'oops' is not a number; list the column in data.categorical",
        ),
        ("x,y\n1,2\n3\n", r"bad.csv:3: expected 2 columns \(as on line 1\), got 1"),
        ("x,y\n", r"bad.csv: no data rows after the header"),
    ],
)
def test_a_file_a_fast_engine_refuses_is_refused_at_its_line(tmp_path, engine, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        _read(path, engine, numeric=(0, 1), text=())


def test_parquet_reads_like_the_csv(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet files need pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "m.csv"
    path.write_bytes(MESSY.encode())
    table = pa.table(
        {
            "x": [1.5, -0.1, 1e-3, 3.0],
            "y": [2.0, None, None, 0.30000000000000004],
            "city": ["north", " south ", "east, far", "?"],
            "label": ["yes", "no", "yes", "no"],
        }
    )
    pq.write_table(table, tmp_path / "m.parquet")
    a, b = _read(path, "auto"), _read(tmp_path / "m.parquet", "auto")
    np.testing.assert_array_equal(a.block, b.block)
    assert all(list(a.text[j]) == list(b.text[j]) for j in (2, 3))
    pq.write_table(pa.table({"x": [1.0], "when": ["2020-01-01"]}), tmp_path / "s.parquet")
    with pytest.raises(DataError, match=r"column 2 \('when'\) holds string values, not numbers"):
        _read(tmp_path / "s.parquet", "auto", numeric=(0, 1), text=())


def test_a_missing_engine_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "importable", lambda name: False)
    path = tmp_path / "m.csv"
    path.write_bytes(MESSY.encode())
    with pytest.raises(DataError, match=r"pip install 'nncli\[data\]'") as err:
        _read(path, "pyarrow")
    assert err.value.field == "data.engine"
    assert engines.pick_engine("auto", "m.csv") == "python"  # auto falls back, and reads
    assert len(_read(path, "auto")) == 4
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    with pytest.raises(
        DataError, match=r"m.parquet: reading Parquet files needs pyarrow; pip install 'nncli\[data\]'"
    ):
        read_head(tmp_path / "m.parquet", True, "m.parquet")
