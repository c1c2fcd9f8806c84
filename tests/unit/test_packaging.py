"""Packaging: the third-party modules nncli imports are exactly its declared dependencies (runtime or
an extra's), extras are imported only inside functions or guarded, and the wheel's licence files and
dataset attributions are declared.

An AST scan of ``nncli/``: every ``import x`` / ``from x import y`` outside the standard library and
nncli itself, mapped to its distribution, against pyproject's ``dependencies`` and
``optional-dependencies``. Fast, and needs no second environment; ``tests/smoke/smoke.py`` then runs
the installed command in a virtual environment with the runtime dependencies only (``.ci/run``).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: import name -> distribution name, for the modules whose names differ from their distribution's
DISTRIBUTION = {"yaml": "pyyaml", "grpc": "grpcio"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


RUNTIME = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
EXTRAS = {
    extra: {_name(r) for r in reqs} for extra, reqs in PYPROJECT["project"]["optional-dependencies"].items()
}


def _imports():
    """(distribution, file, line, guarded) for every third-party import in nncli/."""
    found = []
    for path in sorted((ROOT / "nncli").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "nncli" or top in sys.stdlib_module_names or top == "__future__":
                    continue
                guarded, up = False, parents.get(node)
                while up is not None:
                    if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Try)):
                        guarded = True
                    if isinstance(up, ast.If) and "TYPE_CHECKING" in ast.unparse(up.test):
                        guarded = True
                    up = parents.get(up)
                found.append(
                    (DISTRIBUTION.get(top, top).lower(), path.relative_to(ROOT), node.lineno, guarded)
                )
    return found


IMPORTS = _imports()


def test_every_imported_distribution_is_declared():
    declared = RUNTIME.union(*EXTRAS.values())
    missing = [f"{file}:{line}: {dist}" for dist, file, line, _ in IMPORTS if dist not in declared]
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(missing)


def test_every_runtime_dependency_is_imported():
    imported = {dist for dist, *_ in IMPORTS}
    assert imported >= RUNTIME, f"declared but never imported: {sorted(RUNTIME - imported)}"


def test_click_is_never_imported_directly():
    # typer carries its own copy of click in recent versions; nncli must work with either
    assert not [f"{f}:{line}" for dist, f, line, _ in IMPORTS if dist == "click"]


def test_extras_are_imported_only_inside_functions_or_guarded():
    optional = set().union(*EXTRAS.values()) - RUNTIME
    eager = [f"{f}:{line}: {dist}" for dist, f, line, guarded in IMPORTS if dist in optional and not guarded]
    assert not eager, "an extra imported at module level breaks `pip install .`:\n" + "\n".join(eager)


def test_licence_metadata_and_files_are_declared():
    project = PYPROJECT["project"]
    assert isinstance(project["license"], str) and "MIT" in project["license"]
    assert "LICENSE" in project["license-files"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    build = PYPROJECT["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(\d+)", r) and int(r.split(">=")[1]) >= 77 for r in build)
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["nncli.training.datasets"]
    folder = ROOT / "nncli" / "training" / "datasets"
    for name in ("README.md", "LICENSE-digits-CC-BY-4.0.txt", "LICENSE-mnist1d-Apache-2.0.txt", "digits.npz"):
        assert (folder / name).exists()
        assert any(Path(name).match(pattern) for pattern in data), (
            f"{name} is not in the wheel's package-data"
        )
    assert "CC BY 4.0" in (folder / "LICENSE-digits-CC-BY-4.0.txt").read_text()
    assert "Apache License" in (folder / "LICENSE-mnist1d-Apache-2.0.txt").read_text()
