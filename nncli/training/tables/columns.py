"""Choosing a table's columns: the target, the inputs in the model's order and the categorical ones,
each given by header name or 0-based index (negative from the end); an unknown name is a DataError
with the closest names (``data.target_column``, ``features`` / ``drop``, ``categorical``)."""

from __future__ import annotations

from nncli.config.schema import DataConfig
from nncli.core.errors import ConfigError, DataError, did_you_mean
from nncli.training.tables.head import Head


def column_index(ref, head: Head, where: str, field: str) -> int:
    """File column ``ref`` (a header name, or a 0-based index, negative from the end)."""
    names, width = head.names, head.width
    if isinstance(ref, str) and (names is None or ref not in names) and not ref.lstrip("-").isdigit():
        if names is None:
            raise DataError(
                f"{where}: '{ref}' is a name, but the file has no header (data.csv_header is "
                f"false or the first line is all numbers); give the column's 0-based index instead",
                field=field,
            )
        raise DataError(
            f"{where}: no column named '{ref}'; the header has {names}{did_you_mean(ref, names)}", field=field
        )
    if isinstance(ref, str) and names is not None and ref in names:
        return names.index(ref)
    j = int(ref)
    if not -width <= j < width:
        raise DataError(f"{where}: column index {j} is out of range for {width} columns", field=field)
    return j % width


def choose_columns(cfg: DataConfig, head: Head, where: str) -> tuple[int, list[int], set[int]]:
    """(target column, input columns in model order, the categorical ones) for ``cfg`` and the file's head."""
    if head.width < 2:
        raise DataError(f"{where}: needs at least two columns (inputs and a target), got {head.width}")
    target = column_index(cfg.target_column, head, where, "data.target_column")
    label = _label(head, target)
    if cfg.features is not None:
        inputs: list[int] = []
        for i, ref in enumerate(cfg.features):
            j = column_index(ref, head, where, f"data.features[{i}]")
            if j == target:
                raise ConfigError(
                    f"{where}: {label} is the target column, not an input", field=f"data.features[{i}]"
                )
            if j in inputs:
                raise ConfigError(f"{where}: {_label(head, j)} is listed twice", field=f"data.features[{i}]")
            inputs.append(j)
        if not inputs:
            raise ConfigError("lists no column; the model needs at least one input", field="data.features")
    else:
        dropped = set()
        for i, ref in enumerate(cfg.drop):
            j = column_index(ref, head, where, f"data.drop[{i}]")
            if j == target:
                raise ConfigError(
                    f"{where}: {label} is the target column (data.target_column); it is never an input",
                    field=f"data.drop[{i}]",
                )
            dropped.add(j)
        inputs = [j for j in range(head.width) if j != target and j not in dropped]
        if not inputs:
            raise ConfigError(f"{where}: every input column is dropped", field="data.drop")
    categorical = set()
    for i, ref in enumerate(cfg.categorical):
        j = column_index(ref, head, where, f"data.categorical[{i}]")
        if j not in inputs:
            why = "the target column" if j == target else "not an input (see data.features / data.drop)"
            raise ConfigError(f"{where}: {_label(head, j)} is {why}", field=f"data.categorical[{i}]")
        categorical.add(j)
    return target, inputs, categorical


def _label(head: Head, j: int) -> str:
    return f"column {j + 1}" + (f" ('{head.names[j]}')" if head.names else "")
