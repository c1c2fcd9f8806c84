"""The classes of the labels: an array source's text labels as class indices, their number checked
against the model, and per-class weights for the cross-entropy (``data.class_weights``)."""

from __future__ import annotations

import numpy as np

from nncli.config.schema import DataConfig
from nncli.core.errors import ConfigError, DataError
from nncli.training.tables.labels import encode_labels, label_key, map_labels
from nncli.training.userdata import coerce_targets


def array_labels(y, cfg: DataConfig, kind: str, where: str, part: str = "", names: list[str] | None = None):
    """(labels, class names or None) of an array source: text labels (or ``data.label_map``) become
    class indices; numbers are returned as they are (``coerce_targets`` checks them)."""
    y = np.asarray(y)
    if y.dtype.kind not in "US" and cfg.label_map is None:
        return coerce_targets(y, kind, where, part), None
    if y.ndim != 1:
        raise DataError(f"{where}: {part + ' ' if part else ''}labels must be one per example, got {y.shape}")
    texts = y.astype(str).astype(object)
    if names is not None:  # the test array of an .npz: the classes of its training array
        lookup = {n: i for i, n in enumerate(names)}
        if isinstance(cfg.label_map, dict):
            lookup = {label_key(k): int(v) for k, v in cfg.label_map.items()}
        out = encode_labels(texts, lookup, names, where, lambda i: f" (test example {i})", "labels")
        return out, names
    out, class_names = map_labels(texts, cfg, kind, where, lambda i: f" (example {i})", "labels")
    return coerce_targets(out, kind, where, part), class_names


def check_class_count(names: list[str] | None, kind: str, output_shape: tuple[int, ...], where: str) -> None:
    """DataError when the class names the labels gave are not as many as the model has classes."""
    if names is None:
        return
    want = 2 if kind == "binary" else (output_shape[0] if kind == "class" and output_shape else len(names))
    if len(names) != want:
        shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        model = "the logistic loss needs 2" if kind == "binary" else f"the model outputs {want} logits"
        raise DataError(f"{where}: the labels name {len(names)} classes ({shown}), but {model}")


def class_weights(setting, kind: str, y_train: np.ndarray, output_shape, names, where: str) -> list[float]:
    """Per-class weights for the cross-entropy: a list as given, or ``balanced``: N / (C · N_c) with
    N_c the class's examples in the training split (scikit-learn's ``balanced``)."""
    if kind != "class":
        raise ConfigError(
            "applies to the cross_entropy loss (weights per class of the softmax)", field="data.class_weights"
        )
    n_classes = int(output_shape[0]) if output_shape else (len(names) if names else int(y_train.max()) + 1)
    if isinstance(setting, list):
        if len(setting) != n_classes:
            raise ConfigError(
                f"gives {len(setting)} weights for {n_classes} classes", field="data.class_weights"
            )
        return [float(w) for w in setting]
    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=n_classes)
    if (counts == 0).any():
        c = int(np.argmin(counts))
        label = f"'{names[c]}'" if names else str(c)
        raise DataError(
            f"{where}: class {label} has no example in the training split, so 'balanced' cannot weigh it",
            field="data.class_weights",
        )
    return [float(w) for w in len(y_train) / (n_classes * counts)]
