"""Human output on ordinary terminals: 80 and 100 columns keep every count whole, and a stream that is
not UTF-8 gets ASCII renderings (``sigma``, ``dJ/dz``) instead of a UnicodeEncodeError."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from rich.cells import cell_len  # display width: σ̂ is two code points, one column
from support import run_main, run_nncli

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


def _run_on_ascii_streams(*args) -> tuple[int, str, str]:
    """``nncli *args`` in this process with stdout and stderr that can only encode ASCII."""
    from nncli.cli import main

    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    err = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    texts = []
    for stream in (out, err):
        stream.flush()
        texts.append(stream.buffer.getvalue().decode("ascii"))  # raises if anything is not ASCII
    return code, texts[0], texts[1]


def test_human_output_on_an_ascii_stream(tmp_path, tiny_config_file, monkeypatch):
    """Every command's human output on ASCII-only streams: no crash, ASCII renderings (in this process,
    and once through PYTHONIOENCODING in a real one)."""
    runs = tmp_path / "runs"
    config = next(c for c in CONFIGS if c.stem == "spirals_ln")
    code, out, err = _run_on_ascii_streams("train", tiny_config_file, "--runs-dir", runs, "--no-curves")
    assert code == 0 and "run folder" in err, err
    run = next(runs.iterdir())
    outputs = {}
    for name, args in {
        "inspect": ["inspect", config],
        "trace": ["inspect", config, "--trace"],
        "gradcheck": ["gradcheck", "--module", "LN"],
        "runs": ["runs", runs],
        "plot": ["plot", run, "--terminal"],
        "help": ["gradcheck", "--help"],
    }.items():
        code, out, err = _run_on_ascii_streams(*args)
        assert code == 0, (name, out, err)
        outputs[name] = out
    assert "sigma" in outputs["inspect"] and "dJ/dz" in outputs["trace"]
    assert "PASS" in outputs["gradcheck"] and run.name in outputs["runs"]
    assert "*" in outputs["plot"]  # braille dots drawn as ASCII
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _run_on_ascii_streams("inspect", config, "--trace")
    assert code == 0 and "dJ/dz" in out and max(map(len, out.splitlines())) <= 80, out
    real = run_nncli("inspect", config, "--trace", env={"PYTHONIOENCODING": "ascii"})
    assert real.code == 0 and "Traceback" not in real.err and real.out.isascii() and "dJ/dz" in real.out, real
