"""Config files: YAML with positions → command-line overrides → a validated ``nncli.config.schema.Config``.

Every problem becomes a ConfigError whose ``field`` is a dotted path (``model.layers[3].kernel``) and
whose ``place`` is where that path was written (``config.yaml:12:5``), or ``<command line>`` when a
``--set`` override wrote it. When a config has several problems, all are reported, one per line.

Validation runs twice over the same data: pydantic's lax mode for ranges, literals and unknown keys,
and its strict mode only to refuse the conversions YAML users do not mean (``lr: "0.1"`` — a quoted
string — read as a number; ``seed: yes`` read as 1). Layer entries are checked by their own module's
``Config`` (see ``check_layer``), so the errors of a new module type need no change here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any, TypeVar

from nncli.config.extends import load_composed
from nncli.config.messages import describe, translate
from nncli.config.schema import Config, LossConfig, next_node, section_keys
from nncli.config.yaml_positions import (
    child_path,
    join_path,
    parent_path,
    parse_value,
    split_path,
)
from nncli.core.errors import ConfigError, Place, UserError, did_you_mean
from nncli.core.registry import losses, modules

E = TypeVar("E", bound=UserError)

#: the place of values written by ``--set``
COMMAND_LINE = "<command line>"


class ConfigErrors(ConfigError):
    """Several config problems at once: ``str()`` gives one ``place: field: message`` line each.

    ``field``, ``place`` and ``message`` are those of the first problem; ``errors`` holds them all.
    """

    def __init__(self, errors: list[ConfigError]):
        first = errors[0]
        super().__init__(first.message, field=first.field, place=first.place)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(ConfigError.__str__(e) for e in self.errors)


@dataclass
class LoadedConfig:
    """A validated config together with where each of its values came from."""

    config: Config
    raw: dict
    source: str | None
    positions: dict[str, Place]
    overrides: list[str]
    #: dotted path → the ``--set`` assignment that wrote it
    set_by: dict[str, str] = dc_field(default_factory=dict)

    def place(self, field: str) -> Place:
        """The position of ``field``, or of its nearest enclosing key that has one."""
        return _nearest_place(field, self.positions, self.source)

    def folder_of(self, field: str) -> Path:
        """The folder of the file that wrote ``field`` (a base's, when it came from a base); the
        config's own folder for a value of ``--set`` or a default. Relative paths in a value (the
        data file) are read from here."""
        file = self.place(field).file
        if file is None or file == COMMAND_LINE:
            file = self.source
        return Path(file).parent if file else Path(".")

    def locate(self, exc: UserError, prefix: str | None = None) -> UserError:
        """Fill in ``exc``'s place (and prefix its field with ``prefix``), then return it."""
        return locate_error(exc, prefix, self.positions, self.source, self.set_by)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> LoadedConfig:
    """Read ``path`` (with the bases it ``extends``, merged: ``nncli.config.extends``), apply
    ``overrides`` (``'optimizer.lr=0.05'``) and validate. Raises ConfigError."""
    data, positions = load_composed(path)
    return _finish(data, positions, str(path), overrides)


def config_from_dict(data: dict, overrides: Sequence[str] = (), source: str | None = None) -> LoadedConfig:
    """Validate plain data (e.g. a saved resolved config), after applying ``overrides``."""
    return _finish(copy.deepcopy(data), {}, source, overrides)


def apply_override(raw: dict, assignment: str) -> None:
    """Set ``raw[path] = value`` for ``'path=value'``, the value read as YAML (``0.05``, ``[1, 2]``).

    The path must exist in the schema (``optimizer.lrr`` is refused with a did-you-mean); missing
    sections on the way are created. Raises ConfigError placed at ``<command line>``.
    """
    _set(raw, assignment)


# -- loading and validation --------------------------------------------------------------------
def _finish(
    data: Any, positions: dict[str, Place], source: str | None, overrides: Sequence[str]
) -> LoadedConfig:
    if data is None:
        raise ConfigError(
            "the config is empty; it needs at least a 'model' section "
            "(model: {input_shape: [...], layers: [...]})",
            place=Place(source),
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of sections (model, loss, optimizer, ...) at the top "
            f"level, got {describe(data)}",
            place=positions.get("", Place(source)),
        )
    set_by: dict[str, str] = {}
    for assignment in overrides:
        path = _set(data, assignment)
        for p in [p for p in positions if p == path or p.startswith((path + ".", path + "["))]:
            del positions[p]
        positions[path] = Place(COMMAND_LINE)
        set_by[path] = assignment
    _one_budget(data, set_by)
    problems = validate_problems(data)
    if problems:
        errors = [
            locate_error(ConfigError(msg, field=f), None, positions, source, set_by) for f, msg in problems
        ]
        errors.sort(key=_command_line_first)
        raise ConfigErrors(errors)
    cfg = Config.model_validate(data)
    return LoadedConfig(cfg, data, source, positions, list(overrides), set_by)


def validate_problems(data: dict) -> list[tuple[str, str]]:
    """Every (dotted field, message) wrong with ``data``; the first message per field wins."""
    model, layers = data.get("model"), None
    if isinstance(model, dict) and isinstance(model.get("layers"), list):
        layers = model["layers"]
        limits = _layer_limits(layers, "model.layers")
        if limits:  # checked first: validating 10⁵ layers one by one would take minutes
            return limits
    problems = translate(Config, data, "")
    for i, spec in enumerate(layers or []):
        if isinstance(spec, dict):
            problems += _layer_problems(spec, f"model.layers[{i}]")
    loss = data.get("loss", "cross_entropy")
    if isinstance(loss, (str, dict)):
        problems += _loss_problems({"type": loss} if isinstance(loss, str) else loss)
    seen: dict[str, str] = {}
    for f, msg in problems:
        seen.setdefault(f, msg)
    return list(seen.items())


#: layers in one list (the model's or a Residual body's) and Residual blocks nested in one another;
#: both far beyond a model this trainer can train, low enough to keep every step linear and shallow
MAX_LAYERS = 4096
MAX_NESTING = 64


def _layer_limits(layers: list, field: str) -> list[tuple[str, str]]:
    """A problem when a layer list is longer than MAX_LAYERS or bodies nest deeper than MAX_NESTING."""
    todo = [(layers, field, 1)]  # iterative: the depth is what is being checked
    while todo:
        items, where, depth = todo.pop()
        if len(items) > MAX_LAYERS:
            return [(where, f"has {len(items):,} layers, more than the {MAX_LAYERS:,} a model may have")]
        for j, spec in enumerate(items):
            nested = spec.get("layers") if isinstance(spec, dict) else None
            if isinstance(nested, list):
                if depth > MAX_NESTING:
                    return [
                        (
                            f"{where}[{j}]",
                            f"blocks with their own layers (Residual) are nested more than "
                            f"{MAX_NESTING} deep",
                        )
                    ]
                todo.append((nested, f"{where}[{j}].layers", depth + 1))
    return []


def check_layer(spec: Any, field: str):
    """Validate one layer entry; return (registry entry, hyper-parameters without ``type``).

    Raises ConfigError(s) with fields under ``field`` (no places: the caller adds them).
    """
    if not isinstance(spec, dict):
        raise ConfigError(
            f"expected a layer mapping such as {{type: ReLU}}, got {describe(spec)}", field=field
        )
    problems = _layer_problems(spec, field)
    if problems:
        raise ConfigErrors([ConfigError(m, field=f) for f, m in problems])
    return modules.lookup(spec["type"]), {k: v for k, v in spec.items() if k != "type"}


def _layer_problems(spec: dict, field: str) -> list[tuple[str, str]]:
    if "type" not in spec:
        return [(field, "this layer has no 'type' (e.g. type: MM, or type: ReLU)")]
    try:
        entry = modules.lookup(spec["type"])
    except ConfigError as exc:
        return [(f"{field}.type", exc.message)]
    hparams = {k: v for k, v in spec.items() if k != "type"}
    full = {**getattr(entry, "defaults", {}), **hparams}
    problems = translate(entry.Config, full, field, extra_keys=("type",))
    nested = hparams.get("layers")
    if isinstance(nested, list):  # a Residual's body: same rules, one level down
        for j, sub in enumerate(nested):
            if isinstance(sub, dict):
                problems += _layer_problems(sub, f"{field}.layers[{j}]")
    return problems


def _loss_problems(spec: dict) -> list[tuple[str, str]]:
    try:
        entry = losses.lookup(spec.get("type", "cross_entropy"))
    except ConfigError as exc:
        return [("loss.type", exc.message)]
    rest = {k: v for k, v in spec.items() if k != "type"}
    return translate(entry.Config, rest, "loss", extra_keys=("type",))


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis: messages quote what the user wrote,
    but a 10,000-character value would bury the error in it."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- places ------------------------------------------------------------------------------------
def _command_line_first(exc: UserError) -> tuple[bool, int, int]:
    """Sort key of located errors: those of --set first, then by line and column."""
    place = exc.place or Place()
    return (place.file != COMMAND_LINE, place.line or 0, place.column or 0)


def _nearest_place(field: str | None, positions: dict[str, Place], source: str | None) -> Place:
    p: str | None = field or ""
    while p is not None:
        if p in positions:
            return positions[p]
        p = parent_path(p)
    return Place(source)


def locate_error(
    exc: E,
    prefix: str | None,
    positions: dict[str, Place],
    source: str | None = None,
    set_by: dict[str, str] | None = None,
) -> E:
    """Prefix ``exc.field`` with ``prefix`` and set its place from ``positions`` (nearest parent)."""
    set_by = set_by or {}
    if prefix:
        exc.field = (
            prefix + ("" if (exc.field or "").startswith("[") else ".") + exc.field if exc.field else prefix
        )
    if isinstance(exc, ConfigErrors):
        exc.errors = [locate_error(e, prefix, positions, source, set_by) for e in exc.errors]
        exc.place = exc.errors[0].place
        return exc
    exc.place = _nearest_place(exc.field, positions, source)
    if exc.place.file == COMMAND_LINE:
        p: str | None = exc.field or ""
        while p is not None and p not in set_by:
            p = parent_path(p)
        if p is not None and "--set" not in exc.message:
            exc.message += f" (from --set {shorten(set_by[p])})"
            exc.args = (exc.message,)
    return exc


# -- overrides ---------------------------------------------------------------------------------
BUDGETS = ("train.epochs", "train.steps")


def _one_budget(data: dict, set_by: dict[str, str]) -> None:
    """``train.epochs`` and ``train.steps`` are two ways to give one budget (``steps`` wins when both
    are set). An override of one clears the other, so that ``--set train.epochs=2`` on a config
    with ``steps: 3000`` trains 2 epochs instead of being silently ignored; overriding both at once
    is an error."""
    train = data.get("train")
    if not isinstance(train, dict):
        return
    given = [p for p in BUDGETS if p in set_by and train.get(p.split(".")[1]) is not None]
    if len(given) == 2:
        raise ConfigError(
            f"--set {set_by['train.epochs']} and --set {set_by['train.steps']}: give the training "
            f"budget one way, epochs or steps (steps would win)",
            field="train.steps",
            place=Place(COMMAND_LINE),
        )
    if given:
        other = BUDGETS[1 - BUDGETS.index(given[0])].split(".")[1]
        train.pop(other, None)
        if other == "epochs":
            train["epochs"] = None  # not the default 10: the steps override alone sets the budget


def _set(raw: dict, assignment: str) -> str:
    where = Place(COMMAND_LINE)
    path_text, eq, value_text = assignment.partition("=")
    shown = shorten(assignment)  # messages quote what was written, cut to a readable length
    if not eq or not path_text.strip():
        raise ConfigError(f"--set {shown}: expected path=value, e.g. optimizer.lr=0.05", place=where)
    try:
        parts = split_path(path_text)
    except ValueError as exc:
        raise ConfigError(f"--set {shown}: {exc}", place=where) from None
    try:
        value = parse_value(value_text) if value_text.strip() else None
    except ConfigError as exc:
        raise ConfigError(f"--set {shown}: the value is not valid YAML: {exc.message}", place=where) from None
    node: Any = ("model", Config)
    cur: Any = raw
    for i, part in enumerate(parts):
        here, path = join_path(parts[:i]), join_path(parts[: i + 1])
        last = i == len(parts) - 1
        allowed = section_keys(node, cur)
        if isinstance(part, int):
            if allowed is not None or not isinstance(cur, list):
                what = "a section" if allowed is not None else "a single value"
                raise ConfigError(
                    f"'{here}' is {what}, not a list (in --set {shown})", field=path, place=where
                )
            if not 0 <= part <= len(cur) or (part == len(cur) and not last):
                raise ConfigError(
                    f"index {part} is out of range: '{here}' has {len(cur)} entries (in --set {shown})",
                    field=path,
                    place=where,
                )
        else:
            if allowed is None or not isinstance(cur, dict):
                raise ConfigError(
                    f"'{here}' is a single value, it has no key '{part}' (in --set {shown})",
                    field=path,
                    place=where,
                )
            if allowed and part not in allowed:
                hint = did_you_mean(path, [child_path(here, k) for k in allowed])
                raise ConfigError(f"unknown setting '{path}' in --set {shown}{hint}", field=path, place=where)
            for alias in [k for k in cur if k != part and allowed.get(k, k) == allowed.get(part)]:
                del cur[alias]  # `out` replaces `units` rather than clashing with it
        if last:
            if isinstance(part, int) and part == len(cur):
                cur.append(value)
            else:
                cur[part] = value
            return path
        node = next_node(node, part, allowed)
        nxt = cur[part] if isinstance(part, int) else cur.get(part)  # an int part indexes a list (checked)
        if nxt is None or (isinstance(nxt, str) and node == ("model", LossConfig)):
            nxt = {"type": nxt} if isinstance(nxt, str) else {}
            cur[part] = nxt
        cur = nxt
    return join_path(parts)
