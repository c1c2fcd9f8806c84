"""The grid of a sweep: ``--grid`` text parsed, and every combination of its values (× seeds) as a trial."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from nncli.runs.sweeps.checks import SweepError
from nncli.runs.sweeps.trial import Trial, slug

#: trials in one sweep; each is validated up front and gets a run folder
MAX_TRIALS = 1000


def split_values(text: str) -> list[str]:
    """Split ``0.1,0.03`` on the commas outside brackets, so ``[1,40],[1,20]`` gives two lists."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[{("
        depth -= ch in "]})"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return out


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["optimizer.lr=0.1,0.03"]`` → ``[("optimizer.lr", ["0.1", "0.03"])]``; values stay YAML text."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepError(
                f"--grid {item!r}: expected path=value1,value2,... (e.g. --grid optimizer.lr=0.1,0.03)"
            )
        vals = split_values(values)
        if any(v == "" for v in vals):
            raise SweepError(f"--grid {item!r}: empty value in the list {values!r}")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid {key} is given twice; list all its values in one --grid")
        if key == "seed":
            raise SweepError(
                "use --seeds N to repeat every combination with several seeds, not --grid seed=..."
            )
        grid.append((key, vals))
    return grid


def expand(
    grid: list[tuple[str, list[str]]], base_sets: Sequence[str] = (), seeds: Sequence[int] | None = None
) -> list[Trial]:
    """Every combination of the grid values (last key varying fastest), × ``seeds`` when given."""
    keys = [k for k, _ in grid]
    trials: list[Trial] = []
    for combo in itertools.product(*(v for _, v in grid)):
        for seed in seeds if seeds else [None]:
            params = dict(zip(keys, combo))
            overrides = list(base_sets) + [f"{k}={v}" for k, v in params.items()]
            parts = [slug(k, v) for k, v in params.items()]
            if seed is not None:
                overrides.append(f"seed={seed}")
                parts.append(f"seed{seed}")
            i = len(trials)
            name = "-".join([f"t{i:02d}"] + parts)[:80].rstrip("-.")
            trials.append(Trial(index=i, params=params, seed=seed, overrides=overrides, name=name))
    return trials
