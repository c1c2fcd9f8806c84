"""Searches that learn from earlier trials: random search and TPE on Optuna, with pruning.

    nncli sweep CONFIG --search tpe --trials 20 \\
        --param 'optimizer.lr=loguniform(1e-4,1e-1)' --param 'model.layers[0].out=choice(64,128,256)'

Each trial is an ordinary ``nncli train`` run in the sweep folder (as in a grid sweep), started with the
values the sampler asked for. While it runs, its evaluations (metrics.jsonl's eval rows) are reported
to Optuna as intermediate values; when the pruner finds them poor (``median``: below the median of
earlier trials at the same step; ``asha``: successive halving), the trial is stopped at a checkpoint
and told *pruned*. The study lives in a real database: ``study.db`` (SQLite) in the sweep folder by
default, any SQLAlchemy URL with ``storage``. Several ``nncli sweep`` processes given the same
``--storage`` and ``--study`` (on one machine or several) work on one study, Optuna's own distributed
mode; ``--trials N`` is the study's budget, shared by all of them.

The budget is kept exactly: after asking for a trial, a process counts the trials numbered up to it
that are finished, pruned or running; a trial beyond the budget is told failed at once (user attribute
``budget``) and never runs. Interrupted trials (Ctrl-C, a lost worker) are told failed with
``interrupted`` and run again first by ``nncli sweep --resume SWEEP_DIR``.

Parameter syntax (values of ``choice`` are YAML, as in ``--set``)::

    uniform(a,b)  loguniform(a,b)  int(a,b)  logint(a,b)  choice(v1,v2,...)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

from nncli.runs.sweeps.checks import SweepError, check_rank_metric
from nncli.runs.sweeps.params import parse_params, validate_params
from nncli.runs.sweeps.record import Sweep
from nncli.runs.sweeps.search_loop import run_search
from nncli.runs.sweeps.study import PRUNERS, SAMPLERS, load_study, requeue_interrupted, require_optuna
from nncli.runs.sweeps.trial import Trial


def search_sweep(
    config: Path | str,
    *,
    sampler: str,
    trials: int,
    param_items: Sequence[str],
    pruner: str = "median",
    storage: str | None = None,
    study: str | None = None,
    jobs: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    runs_dir: Path | str = "runs",
    sets: Sequence[str] = (),
    metric: str | None = None,
    on_done: Callable[[Trial], None] | None = None,
    loggers: Sequence[str] = (),
) -> Sweep:
    """Check everything, make the sweep folder, run the search; return the Sweep (``search`` filled)."""
    from nncli.config.load import load_config
    from nncli.core.errors import ConfigError
    from nncli.runs.folder.run_dir import iso, utc_now
    from nncli.runs.sweeps.checks import check_options
    from nncli.runs.sweeps.record import make_sweep_dir

    check_options(backend, jobs)
    from nncli.runs.trackers import check_trackers

    loggers = check_trackers(list(loggers))  # every trial would fail without the package: refuse now
    if sampler not in SAMPLERS:
        raise SweepError(f"unknown search {sampler!r}; choose one of {', '.join(SAMPLERS)} (or use --grid)")
    if pruner not in PRUNERS:
        raise SweepError(f"unknown pruner {pruner!r}; choose one of {', '.join(PRUNERS)}")
    if trials < 1:
        raise SweepError(f"--trials must be at least 1, got {trials}")
    require_optuna()
    config = Path(config)
    if not config.is_file():
        raise ConfigError(f"{config}: no such config file")
    config = config.resolve()
    params = parse_params(param_items)
    if not params:
        raise SweepError("--search needs at least one --param path=distribution")
    loaded = load_config(config, list(sets))
    base = loaded.config
    validate_params(config, params, sets)
    if metric is not None:
        check_rank_metric(loaded, metric)
    metric = metric or base.train.best_metric
    search = {
        "sampler": sampler,
        "pruner": pruner,
        "trials": trials,
        "params": {p.key: p.to_json() for p in params},
        "storage": storage,
        "study": study or base.name,
        # the config's seed makes a search in its own database repeatable; processes sharing a study
        # must not draw the same points, so there each process seeds its sampler differently
        "seed": None if storage else base.seed,
        "sets": list(sets),
        "metric": metric,
    }
    if storage:  # a shared database: refuse a bad URL before any folder exists
        load_study(search)
    sweep = Sweep(
        config=str(config),
        grid=[],
        seeds=None,
        metric=metric,
        backend=backend,
        jobs=jobs,
        search=search,
        loggers=list(loggers),
    )
    with trial_runner(backend, ray_address, jobs) as run_one:
        folder = make_sweep_dir(Path(runs_dir).resolve(), base.name)
        search["storage"] = storage or f"sqlite:///{folder / 'study.db'}"
        sweep.folder, sweep.started = str(folder), iso(utc_now())
        _run(sweep, config, run_one, jobs, on_done)
    return sweep


def resume_search(sweep: Sweep, *, jobs: int, backend: str, ray_address: str | None, on_done=None) -> Sweep:
    """Run the interrupted trials of ``sweep`` again, then go on until the study's budget is spent."""
    config = Path(sweep.config)
    if not config.is_file():
        raise SweepError(f"{config}: the sweep's config file is gone")
    require_optuna()
    with trial_runner(backend, ray_address, jobs) as run_one:
        requeue_interrupted(sweep)
        _run(sweep, config, run_one, jobs, on_done)
    return sweep


def _run(sweep: Sweep, config: Path, run_one, jobs: int, on_done) -> None:
    from nncli.runs.atomic import atomic_write_json
    from nncli.runs.folder.run_dir import iso, utc_now

    folder = Path(sweep.folder)
    atomic_write_json(folder / "sweep.json", sweep.to_json())
    try:
        run_search(sweep, config, lambda args, stop: run_one(args, stop, folder), jobs, on_done)
    finally:
        sweep.ended = iso(utc_now())
        atomic_write_json(folder / "sweep.json", sweep.to_json())


@contextmanager
def trial_runner(backend: str, ray_address: str | None, jobs: int):
    """``run_one(train_args, should_stop, sweep_dir)`` → (exit code, stdout, stderr) on ``backend``."""
    from nncli.runs.sweeps.processes import run_process, thread_env

    if backend != "ray":
        env = thread_env(jobs)
        yield lambda args, should_stop, folder: run_process(args, env, should_stop=should_stop)
        return
    from nncli.runs.sweeps.ray_tasks import connect, run_ray_one

    with connect(ray_address, jobs):
        yield lambda args, should_stop, folder: run_ray_one(
            args, bool(ray_address), jobs, should_stop, str(folder)
        )
