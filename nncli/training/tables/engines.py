"""The readers (``data.engine``): which one reads a file, checked to be installed, and what they share:
the sizes they read at a time and the row count their blocks are preallocated from."""

from __future__ import annotations

from pathlib import Path

from nncli.core.errors import DataError

ENGINES = ("pyarrow", "pandas", "python")
#: rows converted at a time by the python and pandas engines (bounds their temporary memory)
CHUNK_ROWS = 8192
#: bytes read at a time when counting lines; pyarrow's block size (larger blocks: more memory read ahead, little speed)
BLOCK_BYTES = 1 << 20


def count_lines(path: Path) -> int:
    """An upper bound on the number of data rows: the newlines in the file, plus one."""
    n = 1
    with open(path, "rb") as fh:
        while chunk := fh.read(BLOCK_BYTES):
            n += chunk.count(b"\n")
    return n


def pick_engine(engine: str, where: str, parquet: bool = False) -> str:
    """The engine ``engine`` names (``auto``: the fastest installed), checked to be importable."""
    if parquet:
        import_parquet(where)
        return "pyarrow"
    if engine == "auto":
        for name in ("pyarrow", "pandas"):
            if importable(name):
                return name
        return "python"
    if engine != "python" and not importable(engine):
        raise DataError(
            f"data.engine {engine}: {engine} is not installed; pip install 'nncli[data]' "
            f"(or use engine: python)",
            field="data.engine",
        )
    return engine


def importable(name: str) -> bool:
    """Whether package ``name`` is installed (found without importing it)."""
    import importlib.util

    return importlib.util.find_spec(name) is not None


def import_parquet(where: str):
    """``pyarrow.parquet``, or a DataError saying how to install it."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{where}: reading Parquet files needs pyarrow; pip install 'nncli[data]'") from None
    return pq
