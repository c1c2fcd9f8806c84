"""Importing this package registers every layer type with ``nncli.core.registry.modules``.

Every module file in this folder is imported, in name order, so adding a layer is adding its file:
its class registers itself with ``@modules.register(...)``. Files whose names start with ``_`` are
private helpers and are skipped.
"""

import importlib
import pkgutil

from nncli.core.module import HParams, Module  # noqa: F401


def import_layer_files() -> None:
    """Import every module file of this package's folders (``__path__``), each registering its layers."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


import_layer_files()
