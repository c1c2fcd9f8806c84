"""Configs that compose: ``extends: base.yaml`` (or a list of bases) deep-merges other config files.

    # configs/exp/wide.yaml
    extends: ../base.yaml          # relative to this file; a list merges left to right
    model: {layers: [...]}         # this file's values win over every base's

Merging: mappings merge key by key, recursively; anything else (a number, a string, a list such as
``model.layers``) written in the child replaces the base's value whole. ``train.epochs`` and
``train.steps`` are two ways to give one budget, so a file that writes one drops the other one
inherited from its bases (a child's ``epochs: 2`` is never silently beaten by a base's ``steps``).

Every merged value keeps the position of the file that wrote it, so an error in a value inherited
from a base names the base file and its line. A base is another YAML config, read with the same
limits as the child (nothing in it runs); it must be a relative ``.yaml`` / ``.yml`` path, bases
may nest at most MAX_DEPTH levels, at most MAX_FILES files are read, and a cycle is refused with
the chain of files that makes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nncli.config.yaml_positions import child_path, load_yaml_file
from nncli.core.errors import ConfigError, Place, UserError
from nncli.core.files import check_regular_file

KEY = "extends"
#: bases extending bases; a family of experiments needs two or three levels
MAX_DEPTH = 8
#: files read for one config (bases reached twice, in a diamond, count twice)
MAX_FILES = 64
#: keys of which a file gives one: writing one drops the other inherited from a base
ALTERNATIVES = {("train", "epochs"): "steps", ("train", "steps"): "epochs"}


def load_composed(path: str | Path) -> tuple[Any, dict[str, Place]]:
    """Read the config ``path`` with its bases merged in: (plain data, positions by dotted path),
    each position in the file that wrote the value. Raises ConfigError (placed)."""
    return _Composer().load(str(path), [])


class _Composer:
    def __init__(self) -> None:
        self.files = 0

    def load(self, name: str, chain: list[tuple[str, str]]) -> tuple[Any, dict[str, Place]]:
        """``name`` (as shown in messages) with its bases; ``chain``: (shown, real path) of the files
        that extend it, outermost first."""
        self.files += 1
        data, positions = load_yaml_file(name)
        if not isinstance(data, dict) or KEY not in data:
            return data, positions
        bases = self._bases(data.pop(KEY), positions, name)
        own = {p: v for p, v in positions.items() if not _under(p, KEY)}
        chain = [*chain, (name, os.path.realpath(name))]
        merged: dict[str, Any] = {}
        merged_positions: dict[str, Place] = {}
        for base, where, field in bases:
            base_data, base_positions = self._load_base(base, where, field, chain)
            merge(merged, merged_positions, base_data, base_positions)
        merge(merged, merged_positions, data, own)
        merged_positions[""] = positions[""]
        return merged, merged_positions

    def _bases(self, spec: Any, positions: dict[str, Place], name: str) -> list[tuple[str, Place, str]]:
        """(path as shown, place of its entry, field) for each base named by ``extends``."""
        where = positions.get(KEY, Place(name))
        items = spec if isinstance(spec, list) else [spec]
        out = []
        for i, item in enumerate(items):
            field = child_path(KEY, i) if isinstance(spec, list) else KEY
            at = positions.get(field, where)
            if not isinstance(item, str) or not item.strip():
                from nncli.config.messages import describe

                raise ConfigError(
                    f"expected the path of a base config (extends: base.yaml) or a list of them, "
                    f"got {describe(item)}",
                    field=field,
                    place=at,
                )
            out.append((_shown(name, item.strip(), field, at), at, field))
        return out

    def _load_base(
        self, base: str, where: Place, field: str, chain: list[tuple[str, str]]
    ) -> tuple[dict, dict[str, Place]]:
        try:
            check_regular_file(base, "a YAML config file")
        except UserError as exc:
            raise ConfigError(f"base config {base}: {exc.message}", field=field, place=where) from None
        real = os.path.realpath(base)
        if any(real == seen for _, seen in chain):
            cycle = " → ".join([shown for shown, _ in chain] + [base])
            raise ConfigError(
                f"these configs extend each other in a cycle: {cycle}", field=field, place=where
            )
        if len(chain) > MAX_DEPTH:
            raise ConfigError(
                f"bases extend bases more than {MAX_DEPTH} levels deep "
                f"({' → '.join(shown for shown, _ in chain)} → …); merge some of them",
                field=field,
                place=where,
            )
        if self.files >= MAX_FILES:
            raise ConfigError(
                f"reading {base} would make more than {MAX_FILES} config files for one config; "
                f"merge some of its bases",
                field=field,
                place=where,
            )
        data, positions = self.load(base, chain)
        if data is None:
            return {}, {}
        if not isinstance(data, dict):
            from nncli.config.messages import describe

            raise ConfigError(
                f"expected a mapping of sections (model, data, train, ...), got {describe(data)}",
                place=positions.get("", Place(base)),
            )
        return data, positions


def _shown(child: str, base: str, field: str, where: Place) -> str:
    """The path of ``base`` (written in the file ``child``) as messages show it: joined to the
    child's folder and normalised (``configs/exp/../base.yaml`` → ``configs/base.yaml``)."""
    if "\0" in base:
        raise ConfigError(
            "the path contains a NUL byte (\\x00), which no file name can hold", field=field, place=where
        )
    if os.path.isabs(base) or base.startswith("~") or "://" in base:
        raise ConfigError(
            f"'{base}': write a base as a path relative to this file (e.g. ../base.yaml), so that "
            f"the family of configs can move together",
            field=field,
            place=where,
        )
    if Path(base).suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"'{base}': a base config is a .yaml or .yml file", field=field, place=where)
    return os.path.normpath(os.path.join(os.path.dirname(child), base))


def _under(path: str, top: str) -> bool:
    """Whether the dotted ``path`` is ``top`` or below it."""
    return path == top or path.startswith((top + ".", top + "["))


def merge(
    into: dict, into_positions: dict[str, Place], data: dict, positions: dict[str, Place], path: str = ""
) -> None:
    """Deep-merge ``data`` (with its ``positions``) into ``into``, in place: mappings key by key,
    anything else replaced whole, its old positions dropped."""
    for key, value in data.items():
        p = child_path(path, key)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            if p in positions:
                into_positions[p] = positions[p]
            merge(into[key], into_positions, value, positions, p)
            continue
        other = ALTERNATIVES.get((path, key)) if isinstance(key, str) else None
        if other is not None and other not in data and other in into:
            del into[other]  # one budget: this file's epochs replaces a base's steps (and the reverse)
            _drop(into_positions, child_path(path, other))
        _drop(into_positions, p)
        into[key] = value
        into_positions.update({q: v for q, v in positions.items() if _under(q, p)})


def _drop(positions: dict[str, Place], path: str) -> None:
    for q in [q for q in positions if _under(q, path)]:
        del positions[q]
