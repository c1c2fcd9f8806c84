"""What a run does to raw inputs before its network, and what its outputs mean, read for the exporters.

``nncli predict`` standardises raw rows with the training split's statistics before the network
(``LoadedRun.preprocess``); an export that leaves this out silently computes something else on the
same rows. ``Preprocessing`` gathers, from the run's ``run.json`` (``data`` section) and its loss,
everything an exporter must put in front of and behind the network:

- ``mean``, ``std``: the per-feature standardisation, shaped like one raw example (``raw_shape``);
- ``input_shape``: the network's per-example input shape (the raw example is reshaped to it);
- ``target_kind``: "class" (softmax over C logits), "binary" (one logit) or "real" (regression);
- ``class_names``: the label of each class id (run.json ``data.class_names``), or None;
- ``table``: for a run trained on a table (.csv, .parquet), how its columns become the model's
  inputs (run.json ``data.preprocessing``, format ``nncli.tabular/1``: columns chosen, missing cells
  filled, categories one-hot encoded; see ``nncli.training.tables.spec``), else None.

    prep = Preprocessing.of_run(loaded_run)
    prep.standardize              # True when the graph must standardise its inputs
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nncli.training.tables.spec import FORMAT


@dataclass(frozen=True)
class Preprocessing:
    input_shape: tuple[int, ...]
    target_kind: str = "real"
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    table: dict | None = None

    @property
    def standardize(self) -> bool:
        return self.mean is not None

    @property
    def raw_shape(self) -> tuple[int, ...]:
        """The per-example shape of the raw inputs: the statistics' shape (the data's layout), else the
        network's input shape."""
        return tuple(int(n) for n in self.mean.shape) if self.mean is not None else self.input_shape

    @property
    def encoded_shape(self) -> tuple[int, ...]:
        """The per-example shape the standardisation applies to: the table's encoded inputs
        (n_inputs,), else ``raw_shape``."""
        return (int(self.table["n_inputs"]),) if self.table is not None else self.raw_shape

    @property
    def classifier(self) -> bool:
        return self.target_kind in ("class", "binary")

    @classmethod
    def of_run(cls, run) -> Preprocessing:
        """From a ``nncli.runs.loaded_run.LoadedRun`` (its run.json was type-checked when read)."""
        data = run.info.get("data") or {}
        stats = run.standardization
        names = data.get("class_names")
        loss = run.chain.loss
        return cls(
            input_shape=tuple(int(n) for n in run.chain.input_shape),
            target_kind=getattr(loss, "target_kind", "real") if loss is not None else "real",
            mean=None if stats is None else np.asarray(stats["mean"], dtype=np.float64),
            std=None if stats is None else np.asarray(stats["std"], dtype=np.float64),
            class_names=tuple(str(n) for n in names) if isinstance(names, list) and names else None,
            table=_table(data.get("preprocessing")),
        )

    def without_standardization(self) -> Preprocessing:
        """The same run as the bare network sees it: inputs already standardised."""
        return Preprocessing(self.input_shape, self.target_kind, None, None, self.class_names, self.table)

    def stats_json(self) -> dict | None:
        """``{"mean", "std"}`` as nested lists of floats (JSON), or None."""
        if self.mean is None or self.std is None:
            return None
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def _table(spec) -> dict | None:
    """run.json ``data.preprocessing`` when it is the format the exporters understand, else None;
    a table spec of another format is refused rather than silently ignored."""
    if spec is None:
        return None
    from nncli.export import ExportError

    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        shown = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise ExportError(f"run.json: data.preprocessing has format {shown!r}; this nncli exports {FORMAT!r}")
    problem = _table_problem(spec)
    if problem:
        raise ExportError(f"run.json: data.preprocessing: {problem}")
    return spec


def _table_problem(spec: dict) -> str | None:
    """What is wrong with a table spec read from a run folder (which may come from anyone), or None."""
    inputs = spec.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return "'inputs' must be a non-empty list"
    width = 0
    for i, e in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(e, dict) or e.get("kind") not in ("number", "onehot"):
            return f"{where} must be an object whose kind is number or onehot"
        if not isinstance(e.get("index"), int) or not isinstance(e.get("column"), (str, type(None))):
            return f"{where} needs an integer 'index' and a string (or null) 'column'"
        fill = e.get("fill")
        if e["kind"] == "number":
            if fill is not None and (not isinstance(fill, (int, float)) or not np.isfinite(fill)):
                return f"{where}.fill must be a finite number or null"
            width += 1
            continue
        cats = e.get("categories")
        if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats):
            return f"{where}.categories must be a non-empty list of strings"
        if fill is not None and fill not in cats:
            return f"{where}.fill must be one of its categories or null"
        width += len(cats)
    if spec.get("n_inputs") != width:
        return f"'n_inputs' is {spec.get('n_inputs')!r}, but the inputs encode to {width} values"
    texts = spec.get("missing_values", [])
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return "'missing_values' must be a list of strings"
    if spec.get("unknown_category", "error") not in ("error", "ignore"):
        return "'unknown_category' must be error or ignore"
    return None
