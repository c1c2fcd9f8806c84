"""Telling configs apart: a config's hash, which a checkpoint records, and the values two configs
differ in, which a resumed run may not change (but for its budget, ``nncli.runs.session.extend``)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def config_dict(cfg) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def _sha(values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def config_hash(cfg) -> str:
    """SHA-256 of the config's values that differ from their defaults.

    Defaults are left out so that a setting a later nncli adds (with a default) leaves the hash of an
    existing run unchanged, and a run interrupted under the older version still resumes.
    """
    return _sha(cfg.model_dump(mode="json", exclude_defaults=True))


def _keys_as_in(values: Any, saved: Any) -> Any:
    """``values`` cut down to the mapping keys that ``saved`` (the same config, as written) has."""
    if isinstance(values, dict) and isinstance(saved, dict):
        return {k: _keys_as_in(v, saved[k]) for k, v in values.items() if k in saved}
    if isinstance(values, list) and isinstance(saved, list) and len(values) == len(saved):
        return [_keys_as_in(v, w) for v, w in zip(values, saved)]
    return values


def legacy_config_hash(cfg, saved: Any) -> str:
    """The hash nncli 0.1 recorded: every value, defaults included, of the keys its schema had.

    Those keys are the ones in the run's saved config.yaml (``saved``, parsed), which nncli wrote with
    every default filled in; keys added since are left out, so the old hash can be recomputed.
    """
    return _sha(_keys_as_in(config_dict(cfg), saved))


def flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list):
        out = {}
        for i, v in enumerate(d):
            out.update(flat(v, f"{prefix[:-1]}[{i}]."))
        return out or {prefix[:-1]: []}
    return {prefix[:-1]: d}


def config_changes(a, b, ignore: tuple[str, ...] = ()) -> list[str]:
    """``key: old → new`` for every value that differs between configs ``a`` and ``b``."""
    fa, fb = flat(config_dict(a)), flat(config_dict(b))
    keys = [k for k in dict.fromkeys([*fa, *fb]) if k not in ignore and fa.get(k) != fb.get(k)]
    return [f"{k}: {fa.get(k, '(unset)')!r} → {fb.get(k, '(unset)')!r}" for k in keys]
