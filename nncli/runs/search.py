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

import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nncli.runs.metrics_log import read_metrics
from nncli.runs.sweep import Sweep, SweepError, Trial, _slug, check_rank_metric, split_values
from nncli.training.metrics import EVAL_FIELDS, higher_is_better

SAMPLERS = ("random", "tpe")
PRUNERS = ("median", "asha", "none")
#: seconds between two reads of a running trial's metrics
POLL = 0.25
#: user attributes of failed trials that say why
BUDGET, INTERRUPTED = "budget", "interrupted"


@dataclass(frozen=True)
class Param:
    """One searched config path and its distribution."""

    key: str
    kind: str  # uniform / loguniform / int / logint / choice
    args: tuple

    def to_json(self) -> str:
        return f"{self.kind}({','.join(str(a) for a in self.args)})"


def parse_param(item: str) -> Param:
    """``optimizer.lr=loguniform(1e-4,1e-1)`` → Param; SweepError naming the problem otherwise."""
    key, sep, spec = item.partition("=")
    key, spec = key.strip(), spec.strip()
    m = re.fullmatch(r"([a-z]+)\((.*)\)", spec, flags=re.S)
    if not sep or not key or not m:
        raise SweepError(
            f"--param {item!r}: expected path=distribution, e.g. optimizer.lr=loguniform(1e-4,1e-1) "
            "or model.layers[0].out=choice(64,128)"
        )
    kind, body = m.group(1), m.group(2)
    kinds = ("uniform", "loguniform", "int", "logint", "choice")
    if kind not in kinds:
        from nncli.core.errors import did_you_mean

        raise SweepError(f"--param {item!r}: unknown distribution {kind!r}{did_you_mean(kind, kinds)}")
    values = split_values(body)
    if kind == "choice":
        if not values or any(v == "" for v in values):
            raise SweepError(f"--param {item!r}: choice() needs values, e.g. choice(64,128)")
        return Param(key, kind, tuple(values))
    if len(values) != 2:
        raise SweepError(f"--param {item!r}: {kind}() takes two bounds, low and high")
    try:
        low, high = (int(v) for v in values) if kind in ("int", "logint") else (float(v) for v in values)
    except ValueError:
        raise SweepError(
            f"--param {item!r}: bounds must be {'integers' if 'int' in kind else 'numbers'}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise SweepError(f"--param {item!r}: expected low < high, got {low} and {high}")
    if kind.startswith("log") and low <= 0:
        raise SweepError(f"--param {item!r}: a log scale needs low > 0")
    return Param(key, kind, (low, high))


def parse_params(items: Sequence[str]) -> list[Param]:
    params = [parse_param(i) for i in items]
    keys = [p.key for p in params]
    for k in keys:
        if keys.count(k) > 1:
            raise SweepError(f"--param {k} is given twice")
        if k == "seed":
            raise SweepError("the seed is not a hyper-parameter to search; use --seeds with a grid")
    return params


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise SweepError("--search needs the 'optuna' package: pip install 'nncli[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_sampler(name: str, seed: int | None):
    optuna = require_optuna()
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials running in parallel (or in other processes) are not all sent to one point
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, constant_liar=True)


def make_pruner(name: str, budget: int):
    optuna = require_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource="auto", reduction_factor=3)
    return optuna.pruners.NopPruner()


def load_study(search: dict[str, Any]):
    """The study ``search`` (sweep.json's "search") names, created when missing."""
    optuna = require_optuna()
    direction = "maximize" if higher_is_better(search["metric"]) else "minimize"
    # processes creating one new database at once race on its tables (a duplicate row, a locked
    # file, or "table ... already exists" from the loser's CREATE TABLE): wait and load it again
    races = ("IntegrityError", "locked", "already exists")
    for attempt in range(4):
        try:
            return _create(optuna, search, direction)
        except SweepError as exc:
            if attempt == 3 or not any(w in str(exc) for w in races):
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _create(optuna, search: dict[str, Any], direction: str):
    try:
        return optuna.create_study(
            study_name=search["study"],
            storage=search["storage"],
            sampler=make_sampler(search["sampler"], search.get("seed")),
            pruner=make_pruner(search["pruner"], search["trials"]),
            direction=direction,
            load_if_exists=True,
        )
    except ImportError as exc:  # a storage URL whose database driver is not installed
        raise SweepError(f"--storage {search['storage']}: {exc}") from None
    except Exception as exc:  # sqlalchemy: bad URL, unreachable database
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepError(f"--storage {search['storage']}: {first}") from None


def suggest(trial, params: Sequence[Param]) -> dict[str, str]:
    """The sampled value of every param, as ``--set`` text."""
    out = {}
    for p in params:
        if p.kind == "choice":
            value = trial.suggest_categorical(p.key, list(p.args))
        elif p.kind in ("int", "logint"):
            value = trial.suggest_int(p.key, p.args[0], p.args[1], log=p.kind == "logint")
        else:
            value = trial.suggest_float(p.key, p.args[0], p.args[1], log=p.kind == "loguniform")
        out[p.key] = repr(value) if isinstance(value, float) else str(value)
    return out


def native(p: Param, text: str) -> Any:
    """A value of ``p`` back from its ``--set`` text, as Optuna holds it (choices stay text)."""
    if p.kind == "choice":
        return text
    return int(text) if p.kind in ("int", "logint") else float(text)


def within_budget(study, number: int, budget: int) -> bool:
    """Whether trial ``number`` is one of the first ``budget`` trials that count (not failed)."""
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    trials = study.get_trials(deepcopy=False, states=counted)
    return sum(1 for t in trials if t.number <= number) <= budget


def budget_left(study, budget: int) -> bool:
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return len(study.get_trials(deepcopy=False, states=counted)) < budget


class Reporter:
    """Reads a running trial's eval rows and reports them; ``__call__`` → True once it should be pruned."""

    def __init__(self, trial, metric: str, folder: Path, name: str):
        self.trial, self.metric, self.folder, self.name = trial, metric, folder, name
        self.field = EVAL_FIELDS.get(metric, metric)
        self.reported: set[int] = set()
        self.pruned = False

    def __call__(self, final: bool = False) -> bool:
        """Report the evaluations not reported yet; ``final`` (the trial has ended): report, never prune."""
        if self.pruned:
            return True
        hits = sorted(self.folder.glob(f"{self.name}-*"))
        if not hits:
            return False
        for rec in read_metrics(hits[-1]):
            if rec.get("event") != "eval" or not isinstance(rec.get("step"), int):
                continue
            value = rec.get(self.field)
            if (
                rec["step"] in self.reported
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                continue
            self.reported.add(rec["step"])
            self.trial.report(float(value), rec["step"])
            if not final and self.trial.should_prune():
                self.pruned = True
                return True
        return False


def trial_name(number: int, values: dict[str, str]) -> str:
    """``t007-lr0.0123-out64``: the trial number and the values, floats to 3 significant figures."""

    def short(v: str) -> str:
        try:
            return f"{float(v):.3g}" if any(c in v for c in ".eE") else v
        except ValueError:
            return v

    parts = [_slug(k, short(v)) for k, v in values.items()]
    return "-".join([f"t{number:03d}"] + parts)[:80].rstrip("-.")


def run_search(
    sweep: Sweep,
    config: Path,
    run_one: Callable[[list[str], Callable[[], bool]], tuple[int, str, str] | None],
    jobs: int,
    on_done: Callable[[Trial], None] | None = None,
) -> None:
    """Ask, run, tell with ``jobs`` trials at a time until the study's budget is spent.

    ``run_one(train_args, should_stop)`` runs one trial, stopping it at a checkpoint once
    ``should_stop()`` is True; it returns (exit code, stdout, stderr).
    """
    from optuna.trial import TrialState

    from nncli.runs.atomic import atomic_write_json
    from nncli.runs.sweep import collect, logger_args, train_args

    search = search_of(sweep)
    params = [parse_param(f"{k}={v}") for k, v in search["params"].items()]
    study = load_study(search)
    folder = Path(sweep.folder)
    lock, stopping = threading.Lock(), threading.Event()
    errors: list[BaseException] = []

    def save():
        with lock:
            atomic_write_json(folder / "sweep.json", sweep.to_json())

    def worker():
        while not stopping.is_set():
            with lock:
                if not budget_left(study, search["trials"]):
                    return
                trial = study.ask()
            if not within_budget(study, trial.number, search["trials"]):
                trial.set_user_attr("reason", BUDGET)
                study.tell(trial, state=TrialState.FAIL)
                return
            values = suggest(trial, params)
            t = Trial(index=trial.number, params=values, seed=None, overrides=[], name="")
            t.overrides = list(search.get("sets", [])) + [f"{k}={v}" for k, v in values.items()]
            t.name = trial_name(trial.number, values)
            t.status = "running"
            trial.set_user_attr("run_name", t.name)
            with lock:
                sweep.trials.append(t)
            save()
            reporter = Reporter(trial, sweep.metric, folder, t.name)
            result = None
            try:
                result = run_one(
                    train_args(config, t, folder) + logger_args(sweep.loggers),
                    lambda r=reporter: stopping.is_set() or r(),
                )
            finally:
                if result is not None:
                    collect(t, result, folder, sweep.metric)
                    reporter(final=True)  # the last evaluations, written after the last poll
                if reporter.pruned:
                    t.status, t.error = "pruned", None
                    study.tell(trial, state=TrialState.PRUNED)
                elif t.status == "completed" and t.best is not None:
                    study.tell(trial, t.best["value"])
                else:
                    interrupted = stopping.is_set() or result is None
                    t.status = (
                        "interrupted" if interrupted else (t.status if t.status != "completed" else "failed")
                    )
                    trial.set_user_attr("reason", INTERRUPTED if interrupted else t.status)
                    study.tell(trial, state=TrialState.FAIL)
                save()
                if on_done is not None and not stopping.is_set():
                    on_done(t)

    def guarded():
        try:
            worker()
        except BaseException as exc:
            errors.append(exc)
            stopping.set()

    threads = [threading.Thread(target=guarded, daemon=True) for _ in range(jobs)]
    for th in threads:
        th.start()
    try:
        for th in threads:
            while th.is_alive():
                th.join(timeout=0.2)
    except BaseException:
        stopping.set()  # each running trial stops at a checkpoint and is told failed ("interrupted")
        for th in threads:
            th.join()
        raise
    if errors:
        raise errors[0]
    summarise(sweep, study)


def search_of(sweep: Sweep) -> dict[str, Any]:
    """The ``search`` section of a search sweep (a grid sweep has none)."""
    if sweep.search is None:
        raise ValueError(f"{sweep.folder}: a grid sweep, not a search")
    return sweep.search


def summarise(sweep: Sweep, study) -> None:
    """The best trial and the parameter importances into ``sweep.search``."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    search = search_of(sweep)
    search["best_trial"] = study.best_trial.number if done else None
    search["importances"] = None
    if len(done) >= 2 and len(search["params"]) >= 1:
        try:
            import warnings

            import optuna

            with warnings.catch_warnings():  # "importances will be equal" on tiny studies: shown as such
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(study)
            search["importances"] = {k: float(v) for k, v in imp.items()}
        except Exception:  # too few distinct values to fit the importance model: leave it out
            search["importances"] = None
    search["counts"] = {
        s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    }


def requeue_interrupted(sweep: Sweep) -> int:
    """Enqueue the parameters of this sweep's interrupted trials so that they run again first.

    Their study trials were told failed (or, after a kill, are still marked running): they are marked
    failed and left out of the budget, so the study still ends with ``--trials`` counted trials."""
    from optuna.trial import TrialState

    search = search_of(sweep)
    study = load_study(search)
    params = {p.key: p for p in (parse_param(f"{k}={v}") for k, v in search["params"].items())}
    stale = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    n = 0
    for t in sweep.trials:
        if t.status not in ("interrupted", "running", "pending"):
            continue
        if t.index in stale:  # killed outright: nobody will ever tell it
            study._storage.set_trial_state_values(stale[t.index]._trial_id, state=TrialState.FAIL)
        values = {k: native(params[k], v) for k, v in t.params.items() if k in params}
        study.enqueue_trial(values, user_attrs={"requeued_from": t.index})
        t.status = "requeued"
        n += 1
    return n


# -- the sweep ------------------------------------------------------------------------------------------
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
    from nncli.runs.run_dir import iso, utc_now
    from nncli.runs.sweep import check_options, make_sweep_dir

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
    from nncli.runs.run_dir import iso, utc_now

    folder = Path(sweep.folder)
    atomic_write_json(folder / "sweep.json", sweep.to_json())
    try:
        run_search(sweep, config, lambda args, stop: run_one(args, stop, folder), jobs, on_done)
    finally:
        sweep.ended = iso(utc_now())
        atomic_write_json(folder / "sweep.json", sweep.to_json())


def validate_params(config: Path, params: Sequence[Param], sets: Sequence[str]) -> None:
    """Load and build the config with each bound and each choice of every param (the others unset)."""
    from nncli.runs.sweep import validate

    trials = []
    for p in params:
        for v in p.args:
            text = repr(v) if isinstance(v, float) else str(v)
            trials.append(
                Trial(index=0, params={p.key: text}, seed=None, overrides=[*sets, f"{p.key}={text}"])
            )
    validate(config, trials)


@contextmanager
def trial_runner(backend: str, ray_address: str | None, jobs: int):
    """``run_one(train_args, should_stop, sweep_dir)`` → (exit code, stdout, stderr) on ``backend``."""
    from nncli.runs.sweep_workers import run_process, thread_env

    if backend != "ray":
        env = thread_env(jobs)
        yield lambda args, should_stop, folder: run_process(args, env, should_stop=should_stop)
        return
    from nncli.runs.sweep_ray import connect, run_ray_one

    with connect(ray_address, jobs):
        yield lambda args, should_stop, folder: run_ray_one(
            args, bool(ray_address), jobs, should_stop, str(folder)
        )
