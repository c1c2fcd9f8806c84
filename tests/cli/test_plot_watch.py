"""`nncli plot RUN --watch`: the records of train.watch per layer over the steps, as a PNG and in the
terminal, through the real CLI; a run without records or several runs are one line and exit 2."""

from __future__ import annotations

import struct

import pytest
from forked_cli import run_forked
from support import assert_refused, invoke, run_many, run_nncli, write_config

CONFIG = {
    "name": "pw",
    "seed": 0,
    "model": {
        "input_shape": [2],
        "layers": [
            {"type": "MM", "out": 8},
            {"type": "LN"},
            {"type": "Sigmoid"},
            {"type": "MM", "out": 8},
            {"type": "ReLU"},
            {"type": "MM", "out": 3},
        ],
    },
    "data": {"source": "spirals", "n_samples": 90, "batch_size": 16, "val_split": 0.2},
    "optimizer": {"type": "adam", "lr": 0.01},
    "train": {"steps": 20, "watch": {"every": 5}},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plot_watch")
    plain = {**CONFIG, "name": "plain", "train": {"steps": 5}}
    r = run_many(
        {
            # curves.png is not what these tests draw
            name: {
                "args": [
                    "train",
                    write_config(folder, cfg, f"{name}.yaml"),
                    "--runs-dir",
                    folder / name,
                    "--no-curves",
                ]
            }
            for name, cfg in (("watched", CONFIG), ("plain", plain))
        }
    )
    for res in r.values():
        assert res.code == 0, res
    return {name: next((folder / name).iterdir()) for name in r}


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_plot_watch_in_the_terminal_and_as_png(runs, tmp_path):
    run = runs["watched"]
    out = tmp_path / "w.png"
    r = run_many(
        {
            "terminal": {"args": ["plot", run, "--watch", "--terminal"], "env": {"COLUMNS": "100"}},
            "png": {"args": ["plot", run, "--watch", "-o", out, "--width", "900", "--height", "500"]},
        }
    )
    term = r["terminal"]
    assert term.code == 0, term
    for text in ("‖u‖/√N", "√N‖∂J/∂u‖", "‖ΔW‖/‖W‖", "dead ReLU", "σ̂ of the normalised input"):
        assert text in term.out, (text, str(term))
    for label in ("0 MM", "1 LN", "5 MM", "2 σ(sigmoid) saturated", "4 σ(relu) dead units"):
        assert label in term.out, (label, str(term))
    pytest.importorskip("matplotlib", reason="PNG plots need matplotlib (pip install 'nncli[plot]')")
    assert r["png"].code == 0, r["png"]
    assert _png_size(out) == (900, 500)
    res = run_nncli("plot", run, "--watch")
    assert res.code == 0 and "watch.png" in res.err, res
    assert _png_size(run / "watch.png") == (1500, 800)


def test_without_matplotlib_plot_watch_draws_in_the_terminal(runs, monkeypatch):
    import nncli.viz.curves as curves

    monkeypatch.setattr(curves, "have_matplotlib", lambda: False)
    res = invoke("plot", str(runs["watched"]), "--watch")
    assert res.exit_code == 0, res.output
    assert "√N‖∂J/∂u‖" in res.stdout and "matplotlib is not installed" in res.output


def test_plot_watch_refusals(runs, tmp_path):
    r = run_many(
        {
            "no records": {"args": ["plot", runs["plain"], "--watch", "--terminal"]},
            "two runs": {"args": ["plot", runs["plain"], runs["watched"], "--watch"]},
            "not a run": {"args": ["plot", tmp_path, "--watch"]},
        },
        run=run_forked,
    )
    assert_refused(r["no records"], "no watch records", "train.watch")
    assert_refused(r["two runs"], "--watch draws one run folder")
    assert_refused(r["not a run"], "not a run folder")
