"""Human output on ordinary terminals: 80 and 100 columns keep every count whole, and a stream that is
not UTF-8 gets ASCII renderings (``sigma``, ``dJ/dz``) instead of a UnicodeEncodeError."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.cells import cell_len  # display width: σ̂ is two code points, one column
from support import run_main, run_many

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def _whole(number: int, text: str) -> bool:
    return re.search(rf"(?<![\d,.]){re.escape(f'{number:,}')}(?![\d,])", text) is not None


@pytest.mark.parametrize("columns", [80, 100])
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_inspect_shows_every_count_whole(config, columns, monkeypatch):
    facts = json.loads(run_main("inspect", config, "--json").out)["summary"]
    monkeypatch.setenv("COLUMNS", str(columns))
    res = run_main("inspect", config)
    assert res.code == 0, res
    assert "…" not in res.out, res
    assert max(map(cell_len, res.out.splitlines())) <= columns, res
    for row in facts["rows"]:
        for key in ("weight", "bias", "macs_forward", "macs_backward", "saved"):
            assert _whole(row[key], res.out), (
                f"{row['name']} {key} {row[key]:,} not whole at {columns}:\n{res.out}"
            )
    assert _whole(facts["params"], res.out), res


@pytest.mark.parametrize("columns", [80, 100])
def test_inspect_trace_keeps_equations_readable(columns, monkeypatch):
    config = next(c for c in CONFIGS if c.stem == "spirals_ln")
    facts = json.loads(run_main("inspect", config, "--trace", "--json").out)
    monkeypatch.setenv("COLUMNS", str(columns))
    res = run_main("inspect", config, "--trace")
    assert res.code == 0 and "…" not in res.out, res
    lines = res.out.splitlines()
    assert max(map(cell_len, lines)) <= columns, res
    flat = re.sub(r"\s+", " ", res.out)
    for module in facts["trace"]["modules"]:
        for eq in (module["forward_eq"], module["backward_eq"]):
            # each equation reads on whole lines: words are never split between cells or lines
            words = eq.split()
            assert all(w in flat for w in words), (eq, res.out)
            start = words[0]
            assert any(line.strip().startswith(start) or f" {start}" in line for line in lines), (eq, res.out)


def test_human_output_on_an_ascii_stream(tmp_path, tiny_config_file):
    """Every command's human output with PYTHONIOENCODING=ascii: no crash, ASCII renderings."""
    ascii_env = {"PYTHONIOENCODING": "ascii"}
    runs = tmp_path / "runs"
    trained = run_main("train", tiny_config_file, "--runs-dir", runs, "-q", "--no-curves")
    assert trained.code == 0, trained
    run = next(runs.iterdir())
    config = next(c for c in CONFIGS if c.stem == "spirals_ln")
    results = run_many(
        {
            "inspect": {"args": ["inspect", config], "env": ascii_env},
            "trace": {"args": ["inspect", config, "--trace"], "env": ascii_env},
            "trace 80": {"args": ["inspect", config, "--trace"], "env": {**ascii_env, "COLUMNS": "80"}},
            "gradcheck": {"args": ["gradcheck", "--module", "LN"], "env": ascii_env},
            "train": {
                "args": ["train", tiny_config_file, "--runs-dir", tmp_path / "r2", "--no-curves"],
                "env": ascii_env,
            },
            "runs": {"args": ["runs", runs], "env": ascii_env},
            "plot": {"args": ["plot", run, "--terminal"], "env": ascii_env},
            "help": {"args": ["gradcheck", "--help"], "env": ascii_env},
        }
    )
    for res in results.values():
        assert res.code == 0, res
        assert "Traceback" not in res.err and "UnicodeEncodeError" not in res.err, res
        assert (res.out + res.err).isascii(), res
    assert "sigma" in results["inspect"].out and "dJ/dz" in results["trace"].out
    assert "dJ/dz" in results["trace 80"].out
    assert "PASS" in results["gradcheck"].out
    assert "*" in results["plot"].out  # braille dots drawn as ASCII
