"""Grid sweeps: every combination of ``--grid`` values (× seeds) trained as an ordinary run.

Each trial is ``nncli train CONFIG --set ... --runs-dir SWEEP --name tNN-... --quiet --json`` in its
own process, so a trial is exactly what a user would get by running that command, and a crash in one
trial cannot take the others down. Trials run in parallel worker processes (``jobs``) on this machine,
or as Ray tasks (``backend="ray"``) on a local Ray instance or a cluster (``ray_address``; see
``sweep_ray`` for the address checks and the shared filesystem a multi-node cluster needs). Paths are
made absolute before anything is dispatched, so trials land in the sweep folder wherever they run.

    runs/sweep-<name>-<UTC stamp>/
      t00-lr0.1-out64-<stamp>/      one ordinary run folder per trial
      ...
      sweep.json                    the grid, every trial's overrides, status, best metric, summary

Every combination is validated with the config loader before anything runs, so a misspelt grid path
fails at once with the loader's did-you-mean instead of after the first trials. How the trial
processes run and stop (Ctrl-C, SIGTERM) is in ``sweep_workers``. ``resume_sweep(SWEEP_DIR)`` runs
again what an interrupted sweep left: trials never started, stopped (continued from their last
checkpoint) or lost with a worker.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from nncli.core.errors import ConfigError, UserError
from nncli.runs.atomic import atomic_write_json
from nncli.runs.listing import best_of, lookup
from nncli.runs.metrics_log import read_metrics
from nncli.runs.run_dir import iso, new_folder, stamp, utc_now
from nncli.runs.safe_read import read_json
from nncli.training.metrics import Fit, check_metric, higher_is_better, run_metrics

BACKENDS = ("local", "ray")


class SweepError(UserError):
    """A grid that cannot be run: bad syntax, an invalid combination, a missing optional dependency."""


#: trials in one sweep; each is validated up front and gets a run folder
MAX_TRIALS = 1000


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


@dataclass
class Trial:
    """One combination: its grid values, seed, and the overrides that make it."""

    index: int
    params: dict[str, str]
    seed: int | None
    overrides: list[str]
    name: str = ""
    run_dir: str | None = None
    status: str = "pending"  # completed / diverged / failed / interrupted
    returncode: int | None = None
    error: str | None = None
    best: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None


def short_key(key: str) -> str:
    """The last name of a dotted path: ``model.layers[0].out`` → ``out``."""
    return re.split(r"[.\]]", key.rstrip("]"))[-1].split("[")[0] or key


def _slug(key: str, value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{short_key(key)}{value}").strip("_")


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

                build_chain(loaded, with_loss=True)  # shape errors a grid value may cause
        except UserError as exc:
            if "--set" in str(exc):  # the loader already names the override it refused
                raise
            where = ", ".join(f"{k}={v}" for k, v in t.params.items()) or "the base config"
            raise SweepError(f"{exc} (in the grid combination {where})") from None
        first = first or loaded
    return first


# -- running --------------------------------------------------------------------------------------------
#: each trial's output: its summary as JSON, nothing else printed, and no curves.png (matplotlib costs
#: about a second per trial, often more than a small trial's training; `nncli plot SWEEP_DIR` draws
#: all the trials' curves together)
TRIAL_OUTPUT = ("--quiet", "--json", "--no-curves")


def train_args(config: Path, trial: Trial, sweep_dir: Path) -> list[str]:
    """The ``nncli train`` arguments of one trial (the Python executable is added where it runs)."""
    args = ["train", str(config)]
    for o in trial.overrides:
        args += ["--set", o]
    return args + ["--runs-dir", str(sweep_dir), "--name", trial.name, *TRIAL_OUTPUT]


def logger_args(loggers: Sequence[str]) -> list[str]:
    return [a for name in loggers for a in ("--logger", name)]


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
    run = Path(trial.run_dir) if trial.run_dir and Path(trial.run_dir).is_dir() else None
    hits = sorted(sweep_dir.glob(f"{trial.name}-*"))
    run = run or (hits[-1] if hits else None)
    if run is None:
        return
    trial.run_dir = str(run)
    trial.status = read_json(run / "run.json").get("status", "unknown")
    hit = best_of(read_metrics(run), metric)
    if hit is not None:
        trial.best = {"metric": metric, "value": hit[0], "step": hit[1]}


def rank(trials: list[Trial], metric: str) -> list[Trial]:
    """Best first by the metric; pruned trials after the others, trials without it (failed before any
    evaluation, or requeued by a resumed search) last."""
    sign = -1.0 if higher_is_better(metric) else 1.0
    return sorted(
        trials,
        key=lambda t: (
            t.best is None,
            t.status == "pruned",
            sign * t.best["value"] if t.best else 0.0,
            t.index,
        ),
    )


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
    #: a search (``nncli.runs.search``): sampler, pruner, budget, params, storage, study, results
    search: dict[str, Any] | None = None
    #: trackers every trial logs to (``nncli train --logger``)
    loggers: list[str] = field(default_factory=list)

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
            out.append(
                {
                    "params": dict(key),
                    "mean": mean,
                    "std": std,
                    "n": len(vals),
                    "trials": len(ts),
                    "indices": [t.index for t in ts],
                }
            )
        sign = -1.0 if higher_is_better(self.metric) else 1.0
        return sorted(out, key=lambda c: (c["mean"] is None, sign * (c["mean"] or 0.0)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        """The Sweep a ``sweep.json`` describes (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        trial_names = {f.name for f in fields(Trial)}
        kw = {k: v for k, v in data.items() if k in names}
        kw["grid"] = [(k, list(v)) for k, v in (data.get("grid") or {}).items()]
        kw["trials"] = [
            Trial(**{k: v for k, v in t.items() if k in trial_names}) for t in data.get("trials", [])
        ]
        return cls(**kw)

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


def check_rank_metric(loaded, metric: str) -> None:
    """A UserError naming ``--metric`` unless the trials log ``metric`` at each evaluation (train_loss
    or val_<scalar metric> that fits the config's loss), before any trial runs: an unknown name
    would otherwise leave every trial without a value to rank by."""
    from nncli.config.build import build_chain

    chain = build_chain(loaded, dtype="float32")
    fit = Fit.of(chain.loss, chain.output_shape())
    try:
        name = check_metric(metric, "--metric", True, fit)
    except ConfigError as exc:
        raise UserError(exc.message, field="--metric") from None
    if metric.startswith("val_") and name != "loss" and name not in run_metrics(loaded.config, fit, True):
        raise UserError(
            f"the trials do not log {metric}: add {name} to the config's metrics: list "
            f"(or --set 'metrics=[..., {name}]')",
            field="--metric",
        )


def run_sweep(
    config: Path | str,
    grid_items: Sequence[str],
    *,
    seeds: int | None = None,
    jobs: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    runs_dir: Path | str = "runs",
    sets: Sequence[str] = (),
    metric: str | None = None,
    on_done: Callable[[Trial], None] | None = None,
    dry_run: bool = False,
    loggers: Sequence[str] = (),
) -> Sweep:
    """Validate every combination, run them all, write ``sweep.json``; return the Sweep (ranked later)."""
    check_options(backend, jobs, seeds)
    from nncli.runs.trackers import check_trackers

    loggers = check_trackers(list(loggers))  # every trial would fail without the package: refuse now
    config = Path(config)
    if not config.is_file():
        raise ConfigError(f"{config}: no such config file")
    config = config.resolve()  # absolute: trials run in other working directories (Ray workers)
    grid = parse_grid(grid_items)
    count = math.prod(len(v) for _, v in grid) * (seeds or 1)
    if count > MAX_TRIALS:  # before a list of them is made, or each is validated
        sizes = " × ".join([str(len(v)) for _, v in grid] + ([f"{seeds:,} seeds"] if seeds else []))
        raise SweepError(
            f"--grid and --seeds make {count:,} trials ({sizes}), more than the "
            f"{MAX_TRIALS:,} one sweep may run; split it into several sweeps"
        )
    from nncli.config.load import load_config

    loaded = load_config(config, list(sets))
    base = loaded.config
    seed_list = [base.seed + i for i in range(seeds)] if seeds else None
    trials = expand(grid, sets, seed_list)
    validate(config, trials)
    if metric is not None:
        check_rank_metric(loaded, metric)
    metric = metric or base.train.best_metric
    sweep = Sweep(
        config=str(config),
        grid=grid,
        seeds=seed_list,
        metric=metric,
        backend=backend,
        jobs=jobs,
        trials=trials,
        loggers=list(loggers),
    )
    if dry_run:
        return sweep
    with runner(backend, ray_address, jobs) as run:  # a bad cluster address fails before any folder exists
        folder = make_sweep_dir(Path(runs_dir).resolve(), base.name)
        sweep.folder, sweep.started = str(folder), iso(utc_now())
        execute(sweep, run, {t.index: train_args(config, t, folder) for t in trials}, on_done)
    return sweep


def check_options(backend: str, jobs: int, seeds: int | None = None) -> None:
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {jobs}")
    if seeds is not None and seeds < 1:
        raise SweepError(f"--seeds must be at least 1, got {seeds}")


#: runs trials: ``run(arg_lists, on_result, sweep_dir)``
Runner = Callable[[list[list[str]], Callable[[int, Any], None], Path], None]


@contextmanager
def runner(backend: str, ray_address: str | None, jobs: int):
    """The function that runs trials on ``backend``; for Ray, connected (and the address checked) first."""
    from nncli.runs.sweep_workers import run_local

    if backend != "ray":
        yield lambda arg_lists, on_result, folder: run_local(arg_lists, jobs, on_result)
        return
    from nncli.runs.sweep_ray import connect, run_ray

    with connect(ray_address, jobs):
        yield lambda arg_lists, on_result, folder: run_ray(
            arg_lists, jobs, bool(ray_address), on_result, sweep_dir=str(folder)
        )


def execute(
    sweep: Sweep, run: Runner, args: dict[int, list[str]], on_done: Callable[[Trial], None] | None = None
) -> None:
    """Run the trials ``args`` names (index → train arguments), keeping sweep.json up to date."""
    folder, metric = Path(sweep.folder), sweep.metric
    by_index = {t.index: t for t in sweep.trials}
    order = list(args)
    extra = logger_args(sweep.loggers)
    atomic_write_json(folder / "sweep.json", sweep.to_json())

    def on_result(i: int, result: tuple | None) -> None:
        if result is None:  # never started: the sweep is being stopped
            return
        trial = by_index[order[i]]
        collect(trial, result, folder, metric)
        atomic_write_json(folder / "sweep.json", sweep.to_json())  # progress visible while the sweep runs
        if on_done is not None:
            on_done(trial)

    try:
        for i in order:
            t = by_index[i]
            t.status, t.returncode, t.error = "pending", None, None
        run([args[i] + extra for i in order], on_result, folder)
    finally:  # also on Ctrl-C: sweep.json says how each trial ended, "pending" if it never ran
        for i in order:
            if by_index[i].status == "pending":
                adopt(by_index[i], folder, metric)
        sweep.ended = iso(utc_now())
        atomic_write_json(folder / "sweep.json", sweep.to_json())


#: trial statuses a resume leaves alone
FINISHED = ("completed", "diverged")


def load_sweep(sweep_dir: Path | str) -> Sweep:
    folder = Path(sweep_dir)
    data = read_json(folder / "sweep.json")
    if not data:
        raise SweepError(f"{folder}: not a sweep folder (no readable sweep.json)")
    sweep = Sweep.from_json(data)
    sweep.folder = str(folder.resolve())
    return sweep


def resume_sweep(
    sweep_dir: Path | str,
    *,
    jobs: int | None = None,
    backend: str | None = None,
    ray_address: str | None = None,
    on_done: Callable[[Trial], None] | None = None,
) -> Sweep:
    """Run again the trials of ``sweep_dir`` that did not finish: a stopped trial with a checkpoint
    continues (``nncli train --resume``), the others start afresh. Finished trials are kept."""
    sweep = load_sweep(sweep_dir)
    jobs, backend = jobs or sweep.jobs, (backend or sweep.backend)
    check_options(backend, jobs)
    if sweep.search:
        from nncli.runs.search import resume_search

        return resume_search(sweep, jobs=jobs, backend=backend, ray_address=ray_address, on_done=on_done)
    folder, config = Path(sweep.folder), Path(sweep.config)
    args: dict[int, list[str]] = {}
    for t in sweep.trials:
        if t.status in FINISHED:
            continue
        if t.run_dir and (Path(t.run_dir) / "checkpoints" / "last.safetensors").exists():
            args[t.index] = ["train", "--resume", t.run_dir, *TRIAL_OUTPUT]
        else:
            if not config.is_file():
                raise SweepError(f"{config}: the sweep's config file is gone; trial {t.name} cannot start")
            args[t.index] = train_args(config, t, folder)
    if not args:
        return sweep
    with runner(backend, ray_address, jobs) as run:
        execute(sweep, run, args, on_done)
    return sweep
