"""Which data sources are tables: the file suffixes read as tables, and the data keys only a table can use."""

from __future__ import annotations

from pathlib import Path

TABLE_SUFFIXES = (".csv", ".parquet")
#: the data keys that only a table (.csv, .parquet) can use
TABLE_KEYS = ("features", "drop", "categorical")


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES
