"""Grid sweeps: every combination of ``--grid`` values (× seeds) trained as an ordinary run.

Each trial is ``nncli train CONFIG --set ... --runs-dir SWEEP --name tNN-... --quiet --json`` in its
own process, so a trial is exactly what a user would get by running that command, and a crash in one
trial cannot take the others down. Trials run in parallel worker processes (``jobs``) on this machine,
or as Ray tasks (``backend="ray"``) on a local Ray instance or a cluster (``ray_address``; the config
and the runs folder must then be on a filesystem every node sees).

    runs/sweep-<name>-<UTC stamp>/
      t00-lr0.1-out64-<stamp>/      one ordinary run folder per trial
      ...
      sweep.json                    the grid, every trial's overrides, status, best metric, summary

Every combination is validated with the config loader before anything runs, so a misspelt grid path
fails at once with the loader's did-you-mean instead of after the first trials. How the trial
processes run and stop (Ctrl-C, SIGTERM) is in ``sweep_exec``.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from nncli.core.errors import ConfigError, UserError
from nncli.runs.folder import atomic_write_json, iso, new_folder, read_json, read_metrics, stamp, utc_now
from nncli.runs.listing import best_of, lookup
from nncli.training.metrics import higher_is_better

BACKENDS = ("local", "ray")


class SweepError(UserError):
    """A grid that cannot be run: bad syntax, an invalid combination, a missing optional dependency."""


# -- the grid ------------------------------------------------------------------------------------------
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
            raise SweepError(f"--grid {item!r}: expected path=value1,value2,... "
                             f"(e.g. --grid optimizer.lr=0.1,0.03)")
        vals = split_values(values)
        if any(v == "" for v in vals):
            raise SweepError(f"--grid {item!r}: empty value in the list {values!r}")
        if key in (k for k, _ in grid):
            raise SweepError(f"--grid {key} is given twice; list all its values in one --grid")
        if key == "seed":
            raise SweepError("use --seeds N to repeat every combination with several seeds, "
                             "not --grid seed=...")
        grid.append((key, vals))
    return grid


@dataclass
class Trial:
    """One combination: its grid values, seed, and the overrides that make it."""

    index: int
    params: dict[str, str]
    seed: int | None
    overrides: list[str]
    name: str = ""
    run_dir: str | None = None
    status: str = "pending"           # completed / diverged / failed / interrupted
    returncode: int | None = None
    error: str | None = None
    best: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None


def short_key(key: str) -> str:
    """The last name of a dotted path: ``model.layers[0].out`` → ``out``."""
    return re.split(r"[.\]]", key.rstrip("]"))[-1].split("[")[0] or key


def _slug(key: str, value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{short_key(key)}{value}").strip("_")


def expand(grid: list[tuple[str, list[str]]], base_sets: Sequence[str] = (),
           seeds: Sequence[int] | None = None) -> list[Trial]:
    """Every combination of the grid values (last key varying fastest), × ``seeds`` when given."""
    keys = [k for k, _ in grid]
    trials = []
    for combo in itertools.product(*(v for _, v in grid)):
        for seed in (seeds if seeds else [None]):
            params = dict(zip(keys, combo))
            overrides = list(base_sets) + [f"{k}={v}" for k, v in params.items()]
            parts = [_slug(k, v) for k, v in params.items()]
            if seed is not None:
                overrides.append(f"seed={seed}")
                parts.append(f"seed{seed}")
            i = len(trials)
            name = "-".join([f"t{i:02d}"] + parts)[:80].rstrip("-.")
            trials.append(Trial(index=i, params=params, seed=seed, overrides=overrides, name=name))
    return trials


def validate(config: Path, trials: list[Trial], build: bool = True):
    """Load (and build) every trial's config; the first problem raises, naming its combination.

    Returns the first trial's LoadedConfig (for the sweep's name and defaults).
    """
    from nncli.config.load import load_config

    first = None
    for t in trials:
        try:
            loaded = load_config(config, t.overrides)
            if build:
                from nncli.config.build import build_chain

                build_chain(loaded, with_loss=True)   # shape errors a grid value may cause
        except UserError as exc:
            if "--set" in str(exc):  # the loader already names the override it refused
                raise
            where = ", ".join(f"{k}={v}" for k, v in t.params.items()) or "the base config"
            raise SweepError(f"{exc} (in the grid combination {where})") from None
        first = first or loaded
    return first


# -- running --------------------------------------------------------------------------------------------
def train_args(config: Path, trial: Trial, sweep_dir: Path) -> list[str]:
    """The ``nncli train`` arguments of one trial (the Python executable is added where it runs)."""
    args = ["train", str(config)]
    for o in trial.overrides:
        args += ["--set", o]
    return args + ["--runs-dir", str(sweep_dir), "--name", trial.name, "--quiet", "--json"]


def collect(trial: Trial, result: tuple[int, str, str], sweep_dir: Path, metric: str) -> None:
    """Fill ``trial`` from its process result and run folder."""
    if result is None:  # never started: the sweep was stopped first
        return
    code, out, err = result
    trial.returncode = code
    summary = None
    for line in reversed(out.strip().splitlines()):
        try:
            summary = json.loads(line)
            break
        except ValueError:
            continue
    run_dir = summary.get("run_dir") if isinstance(summary, dict) else None
    if run_dir is None:  # crashed before printing: find the folder by its unique name
        hits = sorted(sweep_dir.glob(f"{trial.name}-*"))
        run_dir = str(hits[-1]) if hits else None
    trial.run_dir = run_dir
    trial.summary = summary if isinstance(summary, dict) else None
    trial.status = (summary or {}).get("status") or ("completed" if code == 0 else "failed")
    if code != 0 and trial.status == "completed":
        trial.status = "failed"
    if code != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        trial.error = lines[-1] if lines else f"exit code {code}"
    if run_dir:
        hit = best_of(read_metrics(Path(run_dir)), metric)
        if hit is not None:
            trial.best = {"metric": metric, "value": hit[0], "step": hit[1]}


def adopt(trial: Trial, sweep_dir: Path, metric: str) -> None:
    """Fill an unreported trial (a stopped Ray task) from its run folder, if it ever made one."""
    hits = sorted(sweep_dir.glob(f"{trial.name}-*"))
    if not hits:
        return
    run = hits[-1]
    trial.run_dir = str(run)
    trial.status = read_json(run / "run.json").get("status", "unknown")
    hit = best_of(read_metrics(run), metric)
    if hit is not None:
        trial.best = {"metric": metric, "value": hit[0], "step": hit[1]}


def rank(trials: list[Trial], metric: str) -> list[Trial]:
    """Best first by the metric; trials without it (failed before any evaluation) last."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    return sorted(trials, key=lambda t: (t.best is None, sign * t.best["value"] if t.best else 0.0, t.index))


@dataclass
class Sweep:
    config: str
    grid: list[tuple[str, list[str]]]
    seeds: list[int] | None
    metric: str
    backend: str = "local"
    jobs: int = 1
    folder: str = ""
    started: str = ""
    ended: str = ""
    trials: list[Trial] = field(default_factory=list)

    def combinations(self) -> list[dict[str, Any]]:
        """Per grid combination, the mean and spread of the best metric over its seeds, best first."""
        groups: dict[tuple, list[Trial]] = {}
        for t in self.trials:
            groups.setdefault(tuple(t.params.items()), []).append(t)
        out = []
        for key, ts in groups.items():
            vals = [t.best["value"] for t in ts if t.best]
            mean = sum(vals) / len(vals) if vals else None
            std = (sum((v - mean) ** 2 for v in vals) / len(vals)) ** 0.5 if vals else None
            out.append({"params": dict(key), "mean": mean, "std": std, "n": len(vals), "trials": len(ts),
                        "indices": [t.index for t in ts]})
        sign = -1.0 if higher_is_better(self.metric) else 1.0
        return sorted(out, key=lambda c: (c["mean"] is None, sign * (c["mean"] or 0.0)))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["grid"] = {k: v for k, v in self.grid}
        d["ranking"] = [t.index for t in rank(self.trials, self.metric)]
        if self.seeds:
            d["combinations"] = self.combinations()
        for t in d["trials"]:
            t["test_acc"] = lookup(t["summary"] or {}, "test_acc")
        return d


def make_sweep_dir(runs_dir: Path, name: str) -> Path:
    """A new ``runs_dir/sweep-<name>-<stamp>[-n]`` folder (never an existing one)."""
    return new_folder(runs_dir, f"sweep-{name}-{stamp()}", what="sweep")


def run_sweep(config: Path | str, grid_items: Sequence[str], *, seeds: int | None = None,
              jobs: int = 1, backend: str = "local", ray_address: str | None = None,
              runs_dir: Path | str = "runs", sets: Sequence[str] = (), metric: str | None = None,
              on_done: Callable[[Trial], None] | None = None, dry_run: bool = False) -> Sweep:
    """Validate every combination, run them all, write ``sweep.json``; return the Sweep (ranked later)."""
    config = Path(config)
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {jobs}")
    if seeds is not None and seeds < 1:
        raise SweepError(f"--seeds must be at least 1, got {seeds}")
    if not config.is_file():
        raise ConfigError(f"{config}: no such config file")
    grid = parse_grid(grid_items)
    from nncli.config.load import load_config

    base = load_config(config, list(sets)).config
    seed_list = [base.seed + i for i in range(seeds)] if seeds else None
    trials = expand(grid, sets, seed_list)
    validate(config, trials)
    metric = metric or base.train.best_metric
    sweep = Sweep(config=str(config.resolve()), grid=grid, seeds=seed_list, metric=metric,
                  backend=backend, jobs=jobs, trials=trials)
    if dry_run:
        return sweep
    folder = make_sweep_dir(Path(runs_dir), base.name)
    sweep.folder, sweep.started = str(folder), iso(utc_now())
    atomic_write_json(folder / "sweep.json", sweep.to_json())
    arg_lists = [train_args(config.resolve(), t, folder) for t in trials]

    def on_result(i: int, result: tuple | None) -> None:
        if result is None:  # never started: the sweep is being stopped
            return
        collect(trials[i], result, folder, metric)
        atomic_write_json(folder / "sweep.json", sweep.to_json())   # progress visible while the sweep runs
        if on_done is not None:
            on_done(trials[i])

    from nncli.runs.sweep_workers import run_local, run_ray

    try:
        if backend == "ray":
            run_ray(arg_lists, jobs, ray_address, on_result)
        else:
            run_local(arg_lists, jobs, on_result)
    finally:  # also on Ctrl-C: sweep.json says how each trial ended, "pending" if it never ran
        for t in trials:
            if t.status == "pending":
                adopt(t, folder, metric)
        sweep.ended = iso(utc_now())
        atomic_write_json(folder / "sweep.json", sweep.to_json())
    return sweep
