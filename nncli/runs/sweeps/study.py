"""A search's Optuna study: its sampler and pruner, created or loaded in its database, the budget it
counts, its summary, and the interrupted trials a resumed search runs again first."""

from __future__ import annotations

import time
from typing import Any

from nncli.runs.sweeps.checks import SweepError
from nncli.runs.sweeps.params import native, parse_param
from nncli.runs.sweeps.record import Sweep
from nncli.training.metrics import higher_is_better

SAMPLERS = ("random", "tpe")

PRUNERS = ("median", "asha", "none")


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
