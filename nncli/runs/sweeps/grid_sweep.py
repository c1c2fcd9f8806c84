"""Grid sweeps: every combination of ``--grid`` values (× seeds) trained as an ordinary run.

Each trial is ``nncli train CONFIG --set ... --runs-dir SWEEP --name tNN-... --quiet --json`` in its
own process, so a trial is exactly what a user would get by running that command, and a crash in one
trial cannot take the others down. Trials run in parallel worker processes (``jobs``) on this machine,
or as Ray tasks (``backend="ray"``) on a local Ray instance or a cluster (``ray_address``; see
``ray_tasks`` for the address checks and the shared filesystem a multi-node cluster needs). Paths are
made absolute before anything is dispatched, so trials land in the sweep folder wherever they run.

    runs/sweep-<name>-<UTC stamp>/
      t00-lr0.1-out64-<stamp>/      one ordinary run folder per trial
      ...
      sweep.json                    the grid, every trial's overrides, status, best metric, summary

Every combination is validated with the config loader before anything runs, so a misspelt grid path
fails at once with the loader's did-you-mean instead of after the first trials. How the trial
processes run and stop (Ctrl-C, SIGTERM) is in ``processes``. ``resume_sweep(SWEEP_DIR)`` runs
again what an interrupted sweep left: trials never started, stopped (continued from their last
checkpoint) or lost with a worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nncli.core.errors import ConfigError
from nncli.runs.atomic import atomic_write_json
from nncli.runs.folder.run_dir import iso, utc_now
from nncli.runs.sweeps.checks import SweepError, check_options, check_rank_metric, validate
from nncli.runs.sweeps.grid import MAX_TRIALS, expand, parse_grid
from nncli.runs.sweeps.record import Sweep, load_sweep, make_sweep_dir
from nncli.runs.sweeps.trial import TRIAL_OUTPUT, Trial, adopt, collect, logger_args, train_args


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


#: runs trials: ``run(arg_lists, on_result, sweep_dir)``
Runner = Callable[[list[list[str]], Callable[[int, Any], None], Path], None]


@contextmanager
def runner(backend: str, ray_address: str | None, jobs: int):
    """The function that runs trials on ``backend``; for Ray, connected (and the address checked) first."""
    from nncli.runs.sweeps.processes import run_local

    if backend != "ray":
        yield lambda arg_lists, on_result, folder: run_local(arg_lists, jobs, on_result)
        return
    from nncli.runs.sweeps.ray_tasks import connect, run_ray

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
        from nncli.runs.sweeps.search import resume_search

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
