"""YAML names → what they name, case-insensitive, with aliases and did-you-mean.

One registry per kind of thing a config names: layers (``model.layers[i].type``), losses (``loss``),
optimisers (``optimizer.type``), learning-rate schedules (``schedule.type``) and data sources
(``data.source``). The classes and functions register themselves where they are defined
(``@optimizers.register("adam")``); importing ``nncli`` imports them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from nncli.core.errors import ConfigError, did_you_mean

T = TypeVar("T", bound=Callable[..., Any])


class Registry:
    """A case-insensitive name → class (or function) map. ``canonical`` names are the ones shown to users."""

    def __init__(self, kind: str):
        self.kind = kind
        self._by_key: dict[str, Any] = {}  # a class, a function or a _Preset
        self._canonical: dict[Any, str] = {}
        self._defaults: dict[Any, dict] = {}

    @staticmethod
    def _key(name: str) -> str:
        return str(name).strip().lower().replace("-", "_").replace(" ", "")

    def register(self, name: str, *aliases: str, defaults: dict | None = None) -> Callable[[T], T]:
        """Class (or function) decorator. ``defaults`` pre-fill hyper-parameters (``ReLU`` = σ with fn=relu)."""

        def deco(cls: T) -> T:
            for n in (name, *aliases):
                k = self._key(n)
                if k in self._by_key:
                    raise ValueError(f"{self.kind} name {n!r} is registered twice")
                self._by_key[k] = cls if not defaults else _Preset(cls, defaults, n)
            if not defaults:
                self._canonical.setdefault(cls, name)
            return cls

        return deco

    def unregister(self, cls: type) -> None:
        """Forget ``cls``: every name (presets too) that creates it. For tests and reloaded plugins."""
        for key, entry in list(self._by_key.items()):
            if entry is cls or getattr(entry, "cls", None) is cls:
                del self._by_key[key]
        self._canonical.pop(cls, None)

    def lookup(self, name: object) -> Any:
        """The class (or preset) for ``name``; raise ConfigError with a did-you-mean otherwise."""
        if not isinstance(name, str):
            raise ConfigError(f"expected a {self.kind} type name (a string), got {name!r}")
        try:
            return self._by_key[self._key(name)]
        except KeyError:
            hint = did_you_mean(name, self.names(), cutoff=0.5)
            raise ConfigError(f"unknown {self.kind} type '{name}'{hint}") from None

    def create(self, name: str, **hparams):
        return self.lookup(name)(**hparams)

    def names(self) -> list[str]:
        """Every accepted name, in registration order (canonical and aliases)."""
        seen = []
        for k, v in self._by_key.items():
            seen.append(v.display if isinstance(v, _Preset) else k)
        return seen

    def canonical_classes(self) -> dict[str, type]:
        """One entry per class: canonical name → class."""
        return {n: c for c, n in self._canonical.items()}

    def presets(self) -> dict[str, _Preset]:
        return {v.display: v for v in self._by_key.values() if isinstance(v, _Preset)}

    def canonical_name(self, cls: type) -> str:
        return self._canonical.get(cls, cls.__name__)

    def canonical(self, name: object) -> str | None:
        """The canonical name ``name`` stands for (``"Adam"`` → ``"adam"``), or None when it names nothing."""
        entry = self._by_key.get(self._key(name)) if isinstance(name, str) else None
        if entry is None:
            return None
        return entry.display if isinstance(entry, _Preset) else self.canonical_name(entry)


class _Preset:
    """A registered name that is a class with some hyper-parameters fixed (``ReLU`` → σ(fn=relu))."""

    def __init__(self, cls: Any, defaults: dict, display: str):
        self.cls, self.defaults, self.display = cls, dict(defaults), display
        self.Config = cls.Config

    def __call__(self, **hparams):
        return self.cls(**{**self.defaults, **hparams})


modules = Registry("layer")
losses = Registry("loss")
optimizers = Registry("optimizer")  # nncli/training/optimizers.py
schedules = Registry("schedule")  # nncli/training/schedules.py
data_sources = Registry("data source")  # nncli/training/sources.py: built-in and synthetic datasets
