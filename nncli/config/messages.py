"""pydantic validation errors → plain, placed messages (``expected a number, got the string '0.1'``).

``translate(cls, data, prefix)`` validates ``data`` against the pydantic model ``cls`` and returns one
(dotted field, message) pair per problem, with a did-you-mean for unknown keys; ``describe(value)`` is
how a received value is shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from nncli.config.schema import node_at, section_keys
from nncli.config.yaml_positions import join_path
from nncli.core.errors import UserError, did_you_mean

_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "tuple": "a list",
    "set": "a list",
    "dict": "a mapping",
    "model": "a mapping",
    "model_attributes": "a mapping",
    "none": "null",
}
_OPS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": ("≥", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("≤", "le"),
}


def describe(value: Any) -> str:
    """How a received value is shown: ``the string '0.1'``, ``the boolean true``, ``0``."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null (an empty value)"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, (list, tuple)):
        text = repr(list(value))
        return f"the list {text}" if len(text) <= 40 else f"a list of {len(value)} entries"
    return repr(value)


def translate(cls, data: Any, prefix: str, extra_keys: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Validate ``data`` against the pydantic model ``cls``: (dotted field, message) per problem."""
    try:
        errors = [e for e in _errors(cls, data, strict=True) if _is_kind_error(e)]
        errors += _errors(cls, data, strict=False)
    except UserError as exc:  # a validator that raises ConfigError itself, with its own advice
        rel = exc.field or ""
        return [(prefix + ("" if not prefix or not rel or rel.startswith("[") else ".") + rel, exc.message)]
    grouped: dict[str, list] = {}
    for err in errors:
        parts = _data_path(err, data)
        grouped.setdefault(join_path(parts), []).append((parts, err))
    out = []
    for rel, items in grouped.items():
        if _only_types(items) and any(o.startswith((rel + "[", rel + ".")) for o in grouped if rel):
            continue  # a union's other branch went deeper: its error (e.g. kernel[1]) says more
        parts, err = items[0]
        field = prefix + ("" if not prefix or not rel or rel.startswith("[") else ".") + rel
        wants = list(dict.fromkeys(w for _, e in items for w in [_expected(e) or _one_of(e)] if w))
        if len(wants) > 1:  # a union: 'expected an integer or one of 'same' or 'valid''
            value = err.get("input")
            hint = "".join(_hint(e) for _, e in items if e["type"] == "literal_error")
            message = f"expected {', '.join(wants[:-1])} or {wants[-1]}, got {describe(value)}{hint}"
        else:
            message = _message(cls, data, parts, err, extra_keys)
        out.append((field, message))
    return out


def _only_types(items) -> bool:
    return all(_expected(e) for _, e in items)


def _one_of(err: dict) -> str | None:
    if err["type"] != "literal_error":
        return None
    return f"one of {(err.get('ctx') or {}).get('expected')}"


def _hint(err: dict) -> str:
    value = err.get("input")
    choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
    return did_you_mean(value, choices) if isinstance(value, str) else ""


def _errors(cls, data, strict: bool) -> list[dict[str, Any]]:
    try:
        cls.model_validate(data, strict=strict)
    except ValidationError as exc:
        return [dict(e) for e in exc.errors()]
    return []


def _is_kind_error(err: dict) -> bool:
    """Strict-mode errors that lax mode would silently 'fix': '0.1' → 0.1, yes → 1, 'yes' → True."""
    t, value = err["type"], err.get("input")
    if t in ("int_type", "float_type"):
        return isinstance(value, (str, bool))
    return t == "bool_type" and not isinstance(value, bool)


def _data_path(err: dict, data: Any) -> list:
    """The error's location as keys into ``data`` (pydantic adds union member names; drop them)."""
    parts, cur, loc = [], data, err["loc"]
    for i, el in enumerate(loc):
        if (
            isinstance(cur, dict)
            and el in cur
            or isinstance(cur, list)
            and isinstance(el, int)
            and 0 <= el < len(cur)
        ):
            parts.append(el)
            cur = cur[el]
        elif err["type"] == "missing" and i == len(loc) - 1:
            parts.append(el)
    return parts


def _expected(err: dict) -> str | None:
    t = err["type"]
    if t == "int_from_float":
        return "an integer"
    for suffix in ("_type", "_parsing"):
        if t.endswith(suffix):
            return _KINDS.get(t[: -len(suffix)])
    return None


def _message(cls, data, parts: list, err: dict, extra_keys) -> str:
    t, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    key = parts[-1] if parts else ""
    kind = _expected(err)
    if kind == "a mapping" and len(parts) > 1 and parts[-2] == "layers" and isinstance(key, int):
        return f"expected a layer mapping such as {{type: ReLU}}, got {describe(value)}"
    if kind:
        return f"expected {kind}, got {describe(value)}"
    if t == "missing":
        return f"missing required key '{key}'"
    if t == "extra_forbidden":
        node, cur = node_at(cls, data, parts[:-1])
        allowed = sorted(set(section_keys(node, cur) or {}) | set(extra_keys))
        hint = did_you_mean(key, allowed)
        return f"unknown key '{key}'{hint}; allowed keys: {', '.join(allowed) or '(none)'}"
    if t == "literal_error":
        return f"expected {_one_of(err)}, got {describe(value)}{_hint(err)}"
    if t == "finite_number":
        return f"expected a finite number, got {describe(value)}"
    if t in _OPS:
        op, bound = _OPS[t]
        return f"expected a value {op} {ctx.get(bound)}, got {describe(value)}"
    if t in ("too_short", "too_long"):
        if t == "too_short" and ctx.get("actual_length") == 0:
            extra = "; list at least one layer, e.g. - {type: MM, out: 10}" if key == "layers" else ""
            return f"must not be empty{extra}"
        word, limit = (
            ("at least", ctx.get("min_length")) if t == "too_short" else ("at most", ctx.get("max_length"))
        )
        return f"expected {word} {limit} entries, got {ctx.get('actual_length')}"
    if t in ("value_error", "assertion_error"):
        return str(ctx.get("error") or err["msg"])
    if t == "string_pattern_mismatch":
        return f"expected text matching {ctx.get('pattern')}, got {describe(value)}"
    msg = err["msg"]
    return f"{msg[:1].lower()}{msg[1:]}, got {describe(value)}"
