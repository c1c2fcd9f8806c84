"""The user's own modules: a Python file given with ``--code`` or an installed package's entry point.

Either way the code runs before any config is read, and its ``@modules.register("Cube")`` (or
``@losses.register``, ``@optimizers.register``, …) makes the name usable in configs and on the
command line (``nncli gradcheck --code my_layers.py -m Cube``) like a built-in's:

    # my_layers.py
    from nncli.core.module import Module
    from nncli.core.registry import modules

    @modules.register("Cube")
    class Cube(Module): ...

An installed package declares its file in the ``nncli.modules`` entry-point group:

    [project.entry-points."nncli.modules"]
    mypkg = "mypkg.layers"

A mistake inside the user's file (a syntax error, an exception while it runs, a registered class
that is not a ``Module``) is a ``UserError`` placed at the file and line, as spaCy's ``--code`` does.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from nncli.core.errors import Place, UserError
from nncli.core.registry import modules

#: the entry-point group installed packages add modules through
ENTRY_POINT_GROUP = "nncli.modules"

_loaded: dict[Path, object] = {}  # --code files already imported
_entry_points: set[str] = set()  # entry-point values already imported


class CodeError(UserError):
    """An error inside the user's own code (``--code`` file or ``nncli.modules`` entry point)."""


def load_code(path: Path | str) -> None:
    """Import the Python file ``path`` once (its registrations take effect); CodeError on a missing
    file or an error inside it, placed at its file and line."""
    path = Path(path)
    if not path.is_file():
        raise CodeError(f"--code: no such Python file: {path}")
    key = path.resolve()
    if key in _loaded:
        return
    name = f"nncli_code_{len(_loaded)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, key)
    if spec is None or spec.loader is None:
        raise CodeError(f"--code: cannot import {path} (not a Python file?)")
    module = importlib.util.module_from_spec(spec)
    before = set(modules.canonical_classes().values())
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise CodeError(f"SyntaxError: {exc.msg}", place=Place(str(path), exc.lineno, exc.offset)) from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise CodeError(f"{type(exc).__name__}: {exc}", place=Place(str(path), _line_in(exc, key))) from exc
    _loaded[key] = module
    _check_registered(before, str(path))


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Import every installed ``group`` entry point (each once); their names. A failing one is a
    CodeError naming the entry point and the package's file and line."""
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group=group):
        if ep.value in _entry_points:
            continue
        before = set(modules.canonical_classes().values())
        try:
            ep.load()
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{tb[-1].filename}:{tb[-1].lineno}: " if tb else ""
            if isinstance(exc, SyntaxError) and exc.filename:
                where = f"{exc.filename}:{exc.lineno}: "
            raise CodeError(
                f"{where}entry point {ep.name!r} ({group}: {ep.value}): {type(exc).__name__}: {exc}"
            ) from exc
        _entry_points.add(ep.value)
        _check_registered(before, f"entry point {ep.value}")
        names.append(ep.name)
    return names


def _line_in(exc: BaseException, path: Path) -> int | None:
    """The line of the innermost traceback frame inside ``path`` (where the user's code failed)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return line


def _check_registered(before: set, where: str) -> None:
    """Every layer registered by the user's code must be a ``Module`` (the protocol the tools use)."""
    from nncli.core.module import Module

    for name, cls in modules.canonical_classes().items():
        if cls in before:
            continue
        if not (isinstance(cls, type) and issubclass(cls, Module)):
            raise CodeError(f"{where}: layer {name!r} is not a subclass of nncli.core.module.Module")
