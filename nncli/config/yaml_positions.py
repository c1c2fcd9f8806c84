"""YAML loading that remembers where every key and list item was written.

PyYAML's safe loader builds plain data but forgets positions. Here the node tree is composed with
``yaml.SafeLoader`` and walked by hand, so every mapping key and sequence item gets a
``Place(file, line, column)`` (1-based) under its dotted path, e.g. ``model.layers[3].kernel``.
The walk also refuses what a config should never contain:

- tags outside plain YAML data (``!!python/object:...``) — a ConfigError naming the tag and line;
- duplicate keys in one mapping — a ConfigError naming both lines (PyYAML silently keeps the last);
- recursive aliases, and alias expansions so large they look like a "billion laughs" document.

Two YAML 1.1 surprises are fixed in the resolver: ``1e-3`` (no dot) is a float, not the string
``'1e-3'``; and dates such as ``2024-01-01`` stay strings instead of becoming ``datetime.date``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from nncli.core.errors import ConfigError, Place, UserError
from nncli.core.files import read_limited

_STD = "tag:yaml.org,2002:"
#: the tags a config may use: plain data, plus merge keys (``<<: *base``)
_ALLOWED_TAGS = {_STD + t for t in ("null", "bool", "int", "float", "str", "seq", "map", "merge")}
#: nodes visited again while expanding aliases; far beyond any real config
_MAX_NODES = 200_000
#: mappings and lists nested in one another; a real config needs fewer than 10 levels, a model of
#: 64 nested Residual blocks about 130
MAX_DEPTH = 200
#: mappings, lists and scalars written in one document (4,096 layers of a few keys each fit);
#: checked while composing, so an enormous config is refused in seconds, not parsed for minutes
MAX_VALUES = 50_000
#: the largest config file read (a config is text of a few kB; this also stops reading a device)
MAX_BYTES = 16 * 2**20

# YAML 1.2's float syntax: digits with an exponent but no dot (1e-3, 2E5) are floats too
_FLOAT_RE = re.compile(r"^[-+]?(?:\d[\d_]*)(?:\.[\d_]*)?[eE][-+]?\d+$")


class _Limit(yaml.MarkedYAMLError):
    """A document over one of the composer's limits; ``text`` says which."""

    text = ""


class _TooDeep(_Limit):
    """Raised at a node nested deeper than MAX_DEPTH, before Python's stack runs out."""

    text = (
        f"mappings and lists are nested more than {MAX_DEPTH} levels deep here; a config this deep "
        f"is not supported"
    )


class _TooBig(_Limit):
    """Raised at the node after the first MAX_VALUES."""

    text = (
        f"the document holds more than {MAX_VALUES:,} values (mappings, lists, numbers, strings), "
        f"far more than a config needs (a model has at most 4,096 layers); it is not read further"
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-style exponent floats, without the timestamp resolver, and with a
    nesting limit (PyYAML composes nested nodes recursively: 10,000 ``[`` would be a RecursionError)."""

    _depth = 0
    _values = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._values += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(problem_mark=self.peek_event().start_mark)
            if self._values > MAX_VALUES:
                raise _TooBig(problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _STD + "timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_STD + "float", _FLOAT_RE, list("-+0123456789"))


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes strings the loader above would read as numbers (``'1e-3'``)."""


_Dumper.add_implicit_resolver(_STD + "float", _FLOAT_RE, list("-+0123456789"))


def dump_yaml(data: Any) -> str:
    """YAML text that ``parse_yaml`` reads back to ``data`` (keys in the given order)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=None)


# -- dotted paths ------------------------------------------------------------------------------
def child_path(parent: str, key: Any) -> str:
    """``child_path('model.layers', 3) == 'model.layers[3]'``; ``child_path('', 'seed') == 'seed'``."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


_PART_RE = re.compile(r"\[(-?\d+)\]|\.?([^.\[\]]+)")


def split_path(path: str) -> list[str | int]:
    """``'model.layers[0].out'`` → ``['model', 'layers', 0, 'out']``; ValueError if malformed."""
    parts: list[str | int] = []
    pos = 0
    path = path.strip()
    while pos < len(path):
        m = _PART_RE.match(path, pos)
        if not m or (m.group(2) is not None and pos > 0 and path[pos] != "."):
            raise ValueError(f"malformed path '{path}' at character {pos + 1}")
        parts.append(int(m.group(1)) if m.group(1) is not None else m.group(2).strip())
        pos = m.end()
    if not parts or (path.startswith(".") or path.endswith(".")):
        raise ValueError(f"malformed path '{path}'")
    return parts


def join_path(parts) -> str:
    out = ""
    for p in parts:
        out = child_path(out, p)
    return out


def parent_path(path: str) -> str | None:
    """The enclosing path (``'a.b[2]'`` → ``'a.b'`` → ``'a'`` → ``''``); None above the root."""
    if not path:
        return None
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


# -- loading -----------------------------------------------------------------------------------
def load_yaml_file(path: str | Path) -> tuple[Any, dict[str, Place]]:
    """Read and parse a YAML file: (plain data, positions by dotted path). Raises ConfigError."""
    name = str(path)
    try:
        text = read_limited(path, MAX_BYTES, "a YAML config file").decode("utf-8")
    except UserError as exc:
        raise ConfigError(exc.message, place=Place(name)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not a UTF-8 text file (byte {exc.start + 1} cannot be decoded)", place=Place(name)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", place=Place(name)) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, source: str | None = None) -> tuple[Any, dict[str, Place]]:
    """Parse one YAML document: (plain data, positions). Empty text gives (None, {})."""
    try:
        loader = _Loader(text)  # the reader refuses control characters here, before parsing
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        positions: dict[str, Place] = {"": _place(node.start_mark, source)}
        data = _Walker(loader, source, positions).walk(node, "")
        return data, positions
    except _Limit as exc:
        raise ConfigError(exc.text, place=_place(exc.problem_mark, source)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and "while" not in exc.problem:
            problem = (
                f"{problem} ({exc.context}"
                + (f" on line {exc.context_mark.line + 1}" if exc.context_mark is not None else "")
                + ")"
            )
        raise ConfigError(f"YAML syntax error: {problem}", place=_place(mark, source)) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", place=Place(source)) from None
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, source: str | None) -> ConfigError:
    """A character YAML does not allow (a control character), placed at its line and column."""
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = exc.position - (before.rfind("\n") + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return ConfigError(
        f"YAML syntax error: control character {chr(code)!r} (#x{code:04x}) is not allowed "
        f"in YAML; delete it",
        place=Place(source, line, column),
    )


def parse_value(text: str, source: str | None = None) -> Any:
    """A single YAML value (``0.05``, ``true``, ``[1, 2]``, ``{type: ReLU}``) with the same rules."""
    data, _ = parse_yaml(text, source)
    return data


def _place(mark, source: str | None) -> Place:
    if mark is None:
        return Place(source)
    return Place(source, mark.line + 1, mark.column + 1)


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


class _Walker:
    """Turns a composed node tree into dicts, lists and scalars, recording positions as it goes."""

    def __init__(self, loader: _Loader, source: str | None, positions: dict[str, Place]):
        self.loader, self.source, self.positions = loader, source, positions
        self.active: set[int] = set()  # nodes on the current path, to catch recursive aliases
        self.visited = 0
        self.seen: set[int] = set()

    def error(self, node, message: str, field: str | None = None) -> ConfigError:
        return ConfigError(message, field=field or None, place=_place(node.start_mark, self.source))

    def walk(self, node, path: str) -> Any:
        if id(node) in self.seen:  # an alias expanded once more: count it (billion laughs)
            self.visited += 1
        self.seen.add(id(node))
        if self.visited > _MAX_NODES:
            raise self.error(
                node, f"the document expands to more than {_MAX_NODES} values (aliases repeated too often)"
            )
        if node.tag not in _ALLOWED_TAGS:
            raise self.error(
                node,
                f"unsupported YAML tag '{_show_tag(node.tag)}': a config may only "
                f"hold plain data (mappings, lists, strings, numbers, booleans, null)",
                path,
            )
        if id(node) in self.active:
            raise self.error(node, "recursive alias: this value contains itself", path)
        if isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                out = []
                for i, item in enumerate(node.value):
                    p = child_path(path, i)
                    self.positions[p] = _place(item.start_mark, self.source)
                    out.append(self.walk(item, p))
                return out
            return self.walk_mapping(node, path)
        finally:
            self.active.discard(id(node))

    def walk_mapping(self, node, path: str) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == _STD + "merge":
                continue
            key = self.scalar_key(key_node, path)
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise self.error(
                    key_node, f"duplicate key '{key}' (first defined on line {first})", child_path(path, key)
                )
            seen[key] = key_node
        try:
            self.loader.flatten_mapping(node)  # resolves `<<: *base` merges in place
        except yaml.constructor.ConstructorError as exc:
            raise self.error(node, f"bad merge key: {exc.problem}", path) from None
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.scalar_key(key_node, path)
            p = child_path(path, key)
            self.positions[p] = _place(key_node.start_mark, self.source)
            out[key] = self.walk(value_node, p)
        return out

    def scalar_key(self, key_node, path: str):
        if not isinstance(key_node, yaml.ScalarNode):
            raise self.error(key_node, "mapping keys must be plain names, not lists or mappings", path)
        if key_node.tag not in _ALLOWED_TAGS:
            raise self.error(key_node, f"unsupported YAML tag '{_show_tag(key_node.tag)}'", path)
        key = self.loader.construct_object(key_node)
        return key
