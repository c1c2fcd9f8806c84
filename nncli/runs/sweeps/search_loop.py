"""A search's loop: ask the study for values, run the trial, tell it the result, ``jobs`` trials at a time
until the budget is spent."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from nncli.runs.sweeps.params import parse_param, suggest
from nncli.runs.sweeps.pruning import Reporter
from nncli.runs.sweeps.record import Sweep
from nncli.runs.sweeps.study import budget_left, load_study, search_of, summarise, within_budget
from nncli.runs.sweeps.trial import Trial, slug

#: user attributes of failed trials that say why
BUDGET, INTERRUPTED = "budget", "interrupted"


def trial_name(number: int, values: dict[str, str]) -> str:
    """``t007-lr0.0123-out64``: the trial number and the values, floats to 3 significant figures."""

    def short(v: str) -> str:
        try:
            return f"{float(v):.3g}" if any(c in v for c in ".eE") else v
        except ValueError:
            return v

    parts = [slug(k, short(v)) for k, v in values.items()]
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
    from nncli.runs.sweeps.trial import collect, logger_args, train_args

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
