"""The ``nncli`` command line: thin typer commands that parse, call the library and render with rich.

Each command lives in its own file and registers itself on ``app``. Errors are rendered here, once:
a UserError prints one line ``file:line:col: field: message`` to stderr and exits 2; ``--debug``
shows the traceback instead. Command-line usage errors (unknown command or option, a bad option
value, a missing argument) are typer's own: its usage message, exit 2. nncli never imports click:
typer either depends on it or carries its own copy (``typer._click``), depending on the version.

Help texts are rich markup (``rich_markup_mode="rich"``, set explicitly since typer's default changed
between versions): a literal square bracket is written ``\\[``, as in ``nncli\\[torch]``.
"""

from __future__ import annotations

import os
import sys

import typer

from nncli.cli.textout import Console, ascii_fallback_streams
from nncli.core.errors import UserError

app = typer.Typer(
    name="nncli",
    help="Train small neural networks from YAML configs, with every gradient written out and checked.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def console(**kwargs) -> Console:
    """A rich console; when it writes to a pipe or a file (and COLUMNS is unset), 200 columns wide
    instead of rich's 80, so tables in logs are not folded into unreadable slivers."""
    probe = Console(highlight=False, **kwargs)
    if probe.is_terminal or os.environ.get("COLUMNS"):
        return probe
    return Console(highlight=False, width=200, **kwargs)


#: human output goes to stderr so that ``--json`` output on stdout stays clean
err_console = console(stderr=True)
out_console = console()

_state = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from nncli import __version__

        sys.stdout.write(f"nncli {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    code: list[str] = typer.Option(
        [],
        "--code",
        help="A Python file to import before the config is read, registering your own modules "
        "(repeatable; accepted before or after the command name, as in spaCy).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
):
    _state["debug"] = debug
    if not debugging():
        # numpy's RuntimeWarnings (overflow, invalid casts) would print before, and differently from,
        # the one-line message that reports the same problem; --debug shows them
        import warnings

        warnings.filterwarnings("ignore", category=RuntimeWarning)


def debugging() -> bool:
    return _state["debug"] or os.environ.get("NNCLI_DEBUG") == "1"


def _register_commands() -> None:
    # imported for their side effect of adding commands to `app`
    import importlib

    for name in ("train", "inspect", "gradcheck", "eval", "predict", "export", "sweep", "plot", "runs"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


def _split_code(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the ``--code FILE`` / ``--code=FILE`` values anywhere before ``--``, the other arguments)."""
    files, rest, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i:]
            break
        if a == "--code" and i + 1 < len(argv):
            files.append(argv[i + 1])
            i += 2
            continue
        if a.startswith("--code="):
            files.append(a[len("--code=") :])
        else:
            rest.append(a)
        i += 1
    return files, rest


def _load_user_code(files: list[str]) -> None:
    """Installed ``nncli.modules`` entry points, then each ``--code`` file (and those in
    ``NNCLI_CODE``, set for the nncli processes a command starts, such as sweep workers), before any
    command runs."""
    from importlib.metadata import entry_points

    from nncli.core import plugins

    inherited = [f for f in os.environ.get("NNCLI_CODE", "").split(os.pathsep) if f]
    files = inherited + [f for f in files if f not in inherited]
    if not files and not entry_points(group=plugins.ENTRY_POINT_GROUP):
        return
    import nncli  # noqa: F401  (the built-in names first, so a clash is reported in the user's file)

    plugins.load_entry_points()
    for f in files:
        plugins.load_code(f)
    if files:
        os.environ["NNCLI_CODE"] = os.pathsep.join(os.path.abspath(f) for f in files)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the app, turning user errors into one line and exit 2.

    typer runs in standalone mode, so it renders its own usage errors (exit 2), ``--help``,
    ``--version`` and completion, and ends with ``SystemExit``; only exceptions raised by the commands
    themselves reach the handlers below.
    """
    ascii_fallback_streams()
    _register_commands()
    code, argv = _split_code(list(sys.argv[1:] if argv is None else argv))
    inherited = os.environ.get("NNCLI_CODE")
    try:
        _load_user_code(code)
        # bare `nncli` is a request for help, not a usage error (click ≥ 8.2 exits 2 for it)
        app(args=argv or ["--help"], prog_name="nncli", standalone_mode=True)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
        # success returns normally, so that main() can be called from Python
    except UserError as exc:
        if debugging():
            raise
        # soft_wrap: never break the message at the console width, so it stays one line in logs
        err_console.print(f"[bold red]error:[/] {_escape(str(exc))}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    finally:  # main() called from Python leaves the environment as it found it
        if inherited is None:
            os.environ.pop("NNCLI_CODE", None)
        else:
            os.environ["NNCLI_CODE"] = inherited


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
