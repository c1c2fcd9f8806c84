"""A setting read from an environment variable that takes one of a few words.

A misspelt value would otherwise be ignored silently, so anything but the known words (or an unset
or empty variable, which means the default) is refused as a ``UserError`` naming the variable.
"""

from __future__ import annotations

import os
from typing import TypeVar

from nncli.core.errors import UserError

T = TypeVar("T")


def env_choice(name: str, choices: dict[str, T], default: T) -> T:
    """``choices[value]`` for the variable's value (case and surrounding spaces ignored), ``default``
    when it is unset or empty; anything else raises ``UserError`` listing ``choices``' words."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in choices:
        return choices[value]
    words = " or ".join(repr(w) for w in choices)
    raise UserError(f"expected {words}, got {os.environ[name]!r}", field=name)
