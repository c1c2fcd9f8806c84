"""The data sources, registered by name, and reading ``data.source``.

Sources: the packaged ``mnist1d`` and ``digits`` (see training/datasets/README.md), the synthetic
``spirals`` and ``regression1d`` (training/synthetic.py), each a loader registered by name in
``core.registry.data_sources``; any other ``data.source`` is a user ``.npz`` / ``.csv`` / ``.parquet``
file (training/userdata.py, tables in training/tables/). Importing this module registers them.
"""

from __future__ import annotations

from pathlib import Path

from nncli.config.memory import check_data_fits
from nncli.config.schema import DataConfig
from nncli.core.errors import ConfigError, did_you_mean
from nncli.core.registry import data_sources
from nncli.training import synthetic
from nncli.training.data_seeds import GENERATE, seeded_rng
from nncli.training.datasets import load_packaged
from nncli.training.tables.prepared import read_prepared
from nncli.training.tables.table_files import is_table
from nncli.training.userdata import USER_SUFFIXES, check_data_file, read_user_file

# A data source is a function registered by name: (data config, seed) → (arrays with x, y and
# optionally x_test, y_test; info about the source for run.json). A name that is not registered is
# read as a path to the user's .npz or .csv file.


@data_sources.register("mnist1d")
def mnist1d(cfg: DataConfig, seed: int):
    return load_packaged("mnist1d"), {"kind": "builtin"}


@data_sources.register("digits")
def digits(cfg: DataConfig, seed: int):
    return load_packaged("digits"), {"kind": "builtin"}


def _check_synthetic_size(cfg: DataConfig, values_per_example: int) -> None:
    """Refuse, before anything is generated, a synthetic set that cannot fit in memory."""
    check_data_fits(
        cfg.n_samples * values_per_example, f"{cfg.n_samples:,} synthetic examples", field="data.n_samples"
    )


@data_sources.register("spirals")
def spirals(cfg: DataConfig, seed: int):
    if cfg.classes > cfg.n_samples:
        raise ConfigError(
            f"{cfg.classes:,} classes need at least as many examples, but data.n_samples is "
            f"{cfg.n_samples:,}",
            field="data.classes",
        )
    _check_synthetic_size(cfg, 3)  # x (N, 2) and y (N,)
    x, y = synthetic.spirals(cfg.n_samples, cfg.classes, cfg.noise, seeded_rng(seed, GENERATE))
    params = {"n_samples": cfg.n_samples, "noise": cfg.noise, "seed": seed, "classes": cfg.classes}
    return {"x": x, "y": y}, {"kind": "synthetic", "params": params}


@data_sources.register("regression1d")
def regression1d(cfg: DataConfig, seed: int):
    _check_synthetic_size(cfg, 2)  # x (N, 1) and y (N, 1)
    x, y = synthetic.regression1d(cfg.n_samples, cfg.noise, seeded_rng(seed, GENERATE))
    return {"x": x, "y": y}, {
        "kind": "synthetic",
        "params": {"n_samples": cfg.n_samples, "noise": cfg.noise, "seed": seed},
    }


def builtins() -> list[str]:
    """The names of the registered data sources (built-in and synthetic datasets)."""
    return list(data_sources.canonical_classes())


def read_source(cfg: DataConfig, seed: int, base_dir: Path | None, target_kind: str = "real"):
    """(arrays with x, y[, x_test, y_test] — or ``prepared``, a table read by training/tables/prepared.py —,
    description for messages, info about the source)."""
    name = cfg.source.strip()
    key = data_sources.canonical(name)
    if key is not None:
        raw, info = data_sources.lookup(key)(cfg, seed)
        return raw, key, {"source": key, **info}
    if "\0" in name:
        raise ConfigError(
            "the path contains a NUL byte (\\x00), which no file name can hold", field="data.source"
        )
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.suffix.lower() not in USER_SUFFIXES:
        raise ConfigError(
            f"unknown data source '{name}'{did_you_mean(name, builtins())}: expected one of "
            f"{', '.join(builtins())} or a path to a .npz, .csv or .parquet file",
            field="data.source",
        )
    info = {"source": name, "kind": path.suffix.lower()[1:], "path": str(path.resolve())}
    if is_table(path):
        check_data_file(path, name)
        return {"prepared": read_prepared(path, cfg, name, target_kind)}, name, info
    return read_user_file(path, cfg, name), name, info
