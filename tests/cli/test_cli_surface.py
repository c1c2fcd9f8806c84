"""The command line's own surface, run as a user runs it: usage errors, help, version, and texts that
survive rich's markup.

Usage errors (unknown command or option, a bad option value, a missing argument, ``--set`` without
``=``) go through a real subprocess: exit 2, no traceback, one message (typer's usage block or one
``error:`` line). The help of every command is scanned for text rich would swallow: every bracketed
piece of a help text (``[default: …]``, ``nncli[torch]``) must appear literally in the rendered help.
"""

from __future__ import annotations

import re
import sys

import pytest
from forked_cli import run_forked
from support import run_main, run_many

import nncli
from nncli.cli import _register_commands, app


def _one_message(res) -> bool:
    """One ``error:`` line, or typer's usage message: one error box (rich) or ``Error:`` line (plain)."""
    err = res.err.strip()
    if err.startswith("error:"):
        return "\n" not in err
    return len(re.findall(r"─ Error ─|^Error:", err, flags=re.M)) == 1


USAGE_ERRORS = {
    "unknown command": ["trian"],
    "unknown option": ["train", "--nope"],
    "unknown option of the app": ["--nope"],
    "bad option value": ["sweep", "c.yaml", "--grid", "optimizer.lr=0.1", "--jobs", "abc"],
    "bad float value": ["gradcheck", "--eps", "tiny"],
    "missing argument": ["eval"],
    "missing option": ["sweep", "c.yaml"],
    "--set key value": ["train", "c.yaml", "--set", "optimizer.lr", "0.1"],
    "--set key": ["inspect", "c.yaml", "--set", "optimizer.lr"],
    "option without its value": ["train", "c.yaml", "--set"],
}


@pytest.fixture(scope="module")
def usage_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("usage")
    (folder / "c.yaml").write_text("name: x\n")
    return run_many(
        {name: {"args": args, "cwd": folder} for name, args in USAGE_ERRORS.items()}, run=run_forked
    )


@pytest.mark.parametrize("name", list(USAGE_ERRORS))
def test_usage_error_exits_2_with_one_message_and_no_traceback(usage_results, name):
    res = usage_results[name]
    assert res.code == 2, res
    assert "Traceback" not in res.out + res.err, res
    assert res.out == "", res
    assert _one_message(res), res


def test_help_short_and_long_version_and_bare(monkeypatch):
    # as a user runs them (the console script's path) ...
    real = run_many({"h": {"args": ["-h"]}, "version": {"args": ["--version"]}})
    assert real["h"].code == 0 and "train" in real["h"].out and "Traceback" not in real["h"].err, real["h"]
    assert real["version"].code == 0 and real["version"].out == f"nncli {nncli.__version__}\n", real[
        "version"
    ]
    # ... and the rest in this process
    long, short = run_main("--help"), run_main("-h")
    assert long.code == 0 and long.out == short.out, (long, short)
    for command in ("train", "inspect", "gradcheck", "eval", "export", "sweep", "plot", "runs"):
        assert command in long.out, long
    sub = run_main("train", "-h")
    assert sub.code == 0 and "--set" in sub.out, sub
    bare = run_main()  # the help on stdout, exit 0 (as --help), whatever click's own rule for no arguments
    assert bare.code == 0 and "train" in bare.out, bare
    monkeypatch.setenv("SHELL", "/bin/bash")
    try:  # typer asks shellingham, which looks for a shell among this process's ancestors: a test run
        # started without one (a detached job) would get "Shell  not supported"
        import shellingham

        monkeypatch.setattr(shellingham, "detect_shell", lambda *a, **k: ("bash", "/bin/bash"))
    except ImportError:  # older typer: it reads $SHELL
        pass
    completion = run_main("--show-completion")
    assert completion.code == 0 and "_NNCLI_COMPLETE" in completion.out, completion


# -- texts that survive rich ----------------------------------------------------------------------------
def _commands():
    _register_commands()
    import typer.main

    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():
        names.append([name])
        for sub in getattr(command, "commands", {}):
            names.append([name, sub])
    return group, names


def _bracketed(text: str) -> list[str]:
    """The bracketed pieces of a help text as they should read: ``\\[x]`` is a literal ``[x]``."""
    return [m.replace("\\[", "[") for m in re.findall(r"\\?\[[^\]\n]*\]", text or "")]


def _flat(text: str) -> str:
    return re.sub(r"[\s│┃|]+", "", text)


def test_every_help_text_shows_its_brackets_literally(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    group, names = _commands()
    checked = 0
    for path in [[]] + names:
        command = group
        for part in path:
            command = command.commands[part]
        texts = [command.help] + [getattr(p, "help", None) for p in command.params]
        res = run_main(*path, "--help")
        assert res.code == 0, res
        shown = _flat(res.out)
        for text in texts:
            for piece in _bracketed(text):
                checked += 1
                assert _flat(piece) in shown, f"{' '.join(path)} --help lost {piece!r}:\n{res.out}"
    assert checked >= 6  # the [default: …] of inspect and gradcheck, nncli[torch]/[onnx]/[plot]
    for path, wanted in (
        (["export"], ["nncli[torch]", "nncli[onnx]"]),
        (["plot"], ["nncli[plot]"]),
        (["inspect"], ["[default: data.batch_size or 64]"]),
    ):
        out = _flat(run_main(*path, "--help").out)
        for text in wanted:
            assert _flat(text) in out, (path, text)


def test_messages_that_name_an_extra_show_it(tmp_path, monkeypatch, tiny_config_file):
    """export without torch/onnx, plot without matplotlib, sweep --backend ray without ray."""
    from nncli.viz import curves

    res = run_main("train", tiny_config_file, "--runs-dir", tmp_path / "runs", "-q", "--no-curves")
    assert res.code == 0, res
    run = next((tmp_path / "runs").iterdir())
    for module in ("torch", "onnx"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)  # `import torch` / `import onnx` now fails
            res = run_main("export", run, "--format", module)
        assert res.code == 2 and f"pip install 'nncli[{module}]'" in res.err, res
    monkeypatch.setattr(curves, "have_matplotlib", lambda: False)
    res = run_main("plot", run)
    assert res.code == 0 and "pip install 'nncli[plot]'" in res.err, res
    monkeypatch.setitem(sys.modules, "ray", None)
    res = run_main(
        "sweep",
        tiny_config_file,
        "--grid",
        "optimizer.lr=0.1",
        "--backend",
        "ray",
        "--runs-dir",
        tmp_path / "s",
    )
    assert res.code == 2 and "pip install 'nncli[ray]'" in res.err, res
