"""A label column's texts → class indices (N,) int64 and class names, or real targets (N,) float64.

Labels. A classifier's label column is read as text: when every label is a number it is a class id,
as before; otherwise the distinct labels, sorted, are the classes (``cat, dog`` → 0, 1) and their
names are saved in run.json as ``data.class_names``. ``label_map`` declares the mapping instead, as
``{raw label: class index}`` (``{-1: 0, 1: 1}`` for the logistic loss's −1/+1 labels) or as a list
(class i is the i-th entry); any other label is then an error. A label matches a key when the texts
agree or both are numbers and equal (``1.0`` matches ``1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from nncli.config.schema import DataConfig
from nncli.core.errors import ConfigError, DataError, did_you_mean


def label_key(value) -> str:
    """The text a label is compared by: numbers canonical (``1.0``, ``1`` and ``+1`` → ``1``), else the text."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return text
    return str(int(number)) if number == int(number) else repr(number)


def declared_classes(label_map, field: str = "data.label_map") -> list[str]:
    """Class names in class order from ``data.label_map`` (a list, or ``{raw label: class index}``)."""
    if isinstance(label_map, list):
        keys = [label_key(v) for v in label_map]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"lists a label twice: {label_map}", field=field)
        return keys
    by_index: dict[int, str] = {}
    for raw, index in label_map.items():
        if index < 0:
            raise ConfigError(f"class indices start at 0, got {index} for {raw!r}", field=field)
        by_index.setdefault(index, label_key(raw))
    missing = [i for i in range(max(by_index, default=-1) + 1) if i not in by_index]
    if missing or not by_index:
        raise ConfigError(
            f"every class 0 … {max(by_index, default=0)} needs a label; none maps to {missing}", field=field
        )
    return [by_index[i] for i in range(len(by_index))]


def _label_lookup(label_map, class_names: list[str]) -> dict[str, int]:
    if isinstance(label_map, dict):
        return {label_key(k): int(v) for k, v in label_map.items()}
    return {name: i for i, name in enumerate(class_names)}


def encode_labels(
    texts: np.ndarray,
    lookup: dict[str, int],
    class_names: list[str],
    where: str,
    line: Callable[[int], str],
    seen: str,
) -> np.ndarray:
    """Label texts (N,) → class indices (N,) int64; a label not in ``lookup`` is a DataError."""
    out = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        c = lookup.get(label_key(t), -1)
        if c < 0:
            shown = ", ".join(class_names[:20]) + (" …" if len(class_names) > 20 else "")
            raise DataError(
                f"{where}{line(i)}: label '{t}' is not one of the {seen} ({shown})"
                f"{did_you_mean(str(t), class_names)}",
                field="data.label_map" if seen.startswith("labels of data.label_map") else None,
            )
        out[i] = c
    return out


def map_labels(prep_texts, cfg: DataConfig, target_kind: str, where: str, line, target_name: str):
    """(y, class names or None) from the label column's texts (no missing ones left)."""
    if cfg.label_map is not None:
        if target_kind not in ("class", "binary"):
            raise ConfigError(
                "maps labels to classes, but the loss takes real-valued targets (use cross_entropy or logistic)",
                field="data.label_map",
            )
        names = declared_classes(cfg.label_map)
        lookup = _label_lookup(cfg.label_map, names)
        return encode_labels(prep_texts, lookup, names, where, line, "labels of data.label_map"), names
    numbers = as_numbers(prep_texts)
    if numbers is not None:
        return numbers, None
    if target_kind not in ("class", "binary"):
        i = next(i for i, t in enumerate(prep_texts) if as_numbers(np.array([t], dtype=object)) is None)
        raise DataError(f"{where}{line(i)}: {target_name}: '{prep_texts[i]}' is not a number")
    names = sorted({str(t) for t in prep_texts})
    return encode_labels(prep_texts, {n: i for i, n in enumerate(names)}, names, where, line, "labels"), names


def as_numbers(texts: np.ndarray) -> np.ndarray | None:
    try:
        return np.array(texts.tolist(), dtype=np.float64) if len(texts) else np.empty(0)
    except (ValueError, TypeError):
        return None
