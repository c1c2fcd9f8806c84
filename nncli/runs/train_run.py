"""Training a config into a run folder: the library call under ``nncli train``.

    outcome = nncli.train("configs/mnist1d_cnn.yaml", overrides=["optimizer.lr=0.005"], runs_dir="runs")
    outcome.status, outcome.run_dir, outcome.summary      # "completed", Path(...), summary.json's content

Nothing is written until the config, the data and the model have all been checked (a UserError
otherwise, and no run folder). Then the run folder is created (or reopened by ``resume``), SIGINT
and SIGTERM ask the trainer to stop after the current step and write a checkpoint (a second one
stops at once), and summary.json and run.json record how the run ended. It never prints: progress
displays are callbacks the caller passes.
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nncli.core.errors import UserError
from nncli.runs.session.prepare import Session, prepare
from nncli.runs.session.resume import prepare_resume
from nncli.training.loop import EXIT_DIVERGED

#: exit code of a run stopped by each signal (128 + its number), as shells report it
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A SIGINT or SIGTERM that stops training where it is; ``code`` is the exit code it gives."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason, self.code = reason, SIGNAL_EXIT.get(reason, 130)


def _raise_stopped(signum, frame):
    raise Stopped(signal.Signals(signum).name)


@contextmanager
def _handlers(handler) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM inside, the previous ones back afterwards however it ends
    (only the main thread can set handlers; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_at_once():
    """Inside, SIGINT / SIGTERM raise ``Stopped`` at once (start-up, the final evaluation, rendering)."""
    return _handlers(_raise_stopped)


def _unstoppable():
    """Inside, SIGINT / SIGTERM are ignored: while a stop is being recorded (run.json, the lock)."""
    return _handlers(signal.SIG_IGN)


@dataclass
class TrainOutcome:
    """How a training session ended.

    ``status``: completed, diverged, interrupted (a signal) or failed (a crash, or a write that
    failed, e.g. a full disk). ``summary`` is summary.json's content, None when the session ended
    before writing it (a crash, a second Ctrl-C). ``error`` is one line on a failed write: what could
    not be written and which checkpoint is kept; ``exception`` the crash itself; ``warnings`` what
    went wrong in a tracker (TensorBoard, MLflow) after the run itself was saved.
    """

    status: str
    reason: str | None
    run_dir: Path | None
    summary: dict[str, Any] | None = None
    error: str | None = None
    exception: BaseException | None = None
    warnings: list[str] = field(default_factory=list)  # trackers that failed after the run was saved

    @property
    def exit_code(self) -> int:
        """``nncli train``'s exit code: 0 completed, 1 failed, 3 diverged, 130 / 143 interrupted."""
        if self.status == "completed":
            return 0
        if self.status == "diverged":
            return EXIT_DIVERGED
        if self.status == "interrupted":
            return SIGNAL_EXIT.get(self.reason or "", 130)
        return 1

    @property
    def checkpoint_kept(self) -> bool:
        """Whether the run has a ``last`` checkpoint (after a divergence: the last good weights)."""
        return self.run_dir is not None and (self.run_dir / "checkpoints" / "last.safetensors").exists()


def train(
    config: Path | str | None = None,
    *,
    overrides: Iterable[str] = (),
    runs_dir: Path | str = "runs",
    name: str | None = None,
    resume: Path | str | None = None,
    init_from: Path | str | None = None,
    callbacks: Iterable[Any] = (),
    loggers: Iterable[str] = (),
    threads: int | str | None = "auto",
    raise_errors: bool = False,
) -> TrainOutcome:
    """Train ``config`` (a YAML file) into a new run folder in ``runs_dir``, or continue the run
    ``resume`` exactly where its last checkpoint stopped (``config`` may then be omitted; if given
    it must match the run's). ``overrides`` may raise a resumed run's budget
    (``train.steps=N`` or ``train.epochs=N``, nothing else): a completed run then continues exactly
    as a run given N steps from the start would (``nncli.runs.session.extend``). ``init_from``
    (``"RUN[:best|last]"``) starts a new run from that run's weights (``nncli.runs.session.init_from``).

    ``overrides`` are ``path=value`` strings as ``--set`` takes; ``callbacks`` are trainer callbacks
    (``nncli.training.loop``) such as a progress display; ``loggers`` trackers to log to as well
    (``tensorboard``, ``mlflow``; see ``nncli.runs.trackers``); ``threads`` limits BLAS threads ("auto":
    ``auto_threads``; None: BLAS's own setting). A UserError (bad config, data or runs folder) is raised before anything is written;
    a crash is raised when ``raise_errors``, else returned as a failed outcome.
    """
    overrides = list(overrides)
    if resume is not None and init_from is not None:
        raise UserError(
            "--init-from starts a new run from another run's weights; it cannot be combined with --resume"
        )
    if resume is not None:
        session = prepare_resume(Path(resume), None if config is None else Path(config), overrides)
    elif config is None:
        raise UserError("give a CONFIG file to train, or --resume RUN_DIR to continue a run")
    else:
        session = prepare(Path(config), overrides, name, init_from=init_from)
    return run_session(
        session, runs_dir, callbacks=callbacks, loggers=loggers, threads=threads, raise_errors=raise_errors
    )


def run_session(
    session: Session,
    runs_dir: Path | str,
    *,
    callbacks: Iterable[Any] = (),
    loggers: Iterable[str] = (),
    threads: int | str | None = "auto",
    raise_errors: bool = False,
) -> TrainOutcome:
    """Create (or reopen) the prepared ``session``'s run folder, train with signal handling and write
    the summary (see ``train``)."""
    from threadpoolctl import threadpool_limits

    from nncli.core.batch_split import split_in_processes
    from nncli.core.kernels.denormals import wanted
    from nncli.runs.trackers import make_trackers

    wanted()  # a bad NNCLI_DENORMALS is refused before any folder, as a missing tracker package is
    split_in_processes()  # and a bad NNCLI_SPLIT
    trackers = make_trackers(list(loggers), session, runs_dir)  # a missing package: refused before any folder
    session.trainer.callbacks.extend(trackers)
    session.trainer.callbacks.extend(callbacks)
    if threads == "auto":
        threads = auto_threads(session.chain, session.trainer.batch_size)
    elif isinstance(threads, str):
        raise UserError(f"threads: expected a number of threads or 'auto', got {threads!r}")
    with threadpool_limits(limits=threads, user_api="blas"):
        return _run(session, Path(runs_dir), trackers, raise_errors, threads)


#: FLOPs per training step (forward and backward) from which ``--threads auto`` uses every core numpy's
#: BLAS may use. Measured on 2 cores (ms per step, 1 / 2 threads): the MNIST-1D CNN (19 MFLOP) 0.45 /
#: 0.48 and the digits CNN (123 MFLOP) 1.58 / 1.60 run faster on one; the 784-256-256-10 MLP (155
#: MFLOP) 1.01 / 0.73, the LN-heavy MLP (550 MFLOP) 4.2 / 3.3, the three-stage CNN (560 MFLOP) 10.1 / 7.9 and
#: the CIFAR-sized CNN (2.1 GFLOP) 30.1 / 19.9 on two (benchmarks/bench.py, docs/performance.md).
AUTO_THREADS_MIN_FLOPS = 150e6


def auto_threads(chain, batch_size: int) -> int:
    """``--threads auto``: one thread for a model whose step needs less than AUTO_THREADS_MIN_FLOPS
    (waking a second thread costs more than it gains), else BLAS's own setting (all cores, or what
    ``OPENBLAS_NUM_THREADS`` and the like allow, as a sweep's parallel trials set)."""
    from nncli.core.kernels.threads import blas_threads

    facts = chain.describe()
    flops = 2 * (facts["macs_forward"] + facts["macs_backward"]) * batch_size
    return 1 if flops < AUTO_THREADS_MIN_FLOPS else blas_threads()


def _run(
    session: Session, runs_dir: Path, trackers: list[Any], raise_errors: bool, threads: int | None
) -> TrainOutcome:
    from nncli.core.kernels import denormals
    from nncli.core.kernels.threads import blas_threads
    from nncli.runs.trackers import finish_trackers

    try:
        with _stop_on_signals(session.trainer):
            session.open(runs_dir)
            if session.info is not None:  # the threads this session trains with (the last session's)
                session.info.update(threads=threads or blas_threads(), denormals=denormals.mode_name())
            result = session.trainer.run()
    except BaseException as exc:
        with _unstoppable():  # a third Ctrl-C must not cut the record of the stop short
            session.fail(exc)
            session.release()
            finish_trackers(trackers, None)
        if isinstance(exc, KeyboardInterrupt):  # a second signal: stopped at once, the first one's code
            reason = exc.reason if isinstance(exc, Stopped) else session.trainer.stop_request or "SIGINT"
            return TrainOutcome("interrupted", reason, session.folder, exception=exc)
        if isinstance(exc, UserError) or raise_errors:
            raise
        if isinstance(exc, OSError) and exc.filename is not None and session.folder is not None:
            return _write_failed(exc, session)
        return TrainOutcome("failed", f"{type(exc).__name__}: {exc}", session.folder, exception=exc)
    try:
        # training is over: a signal during the test evaluation or the summary stops at once; the
        # run is marked interrupted (its final checkpoint is written) and --resume finishes it
        with stop_at_once():
            summary = session.finish(result)
            problems = finish_trackers(trackers, summary)
    except Stopped as exc:
        with _unstoppable():
            session.fail(exc)
            finish_trackers(trackers, None)
        return TrainOutcome("interrupted", exc.reason, session.folder, exception=exc)
    except OSError as exc:  # summary.json or run.json on a disk that just filled up
        if exc.filename is None or raise_errors:
            raise
        return _write_failed(exc, session)
    finally:
        session.release()
    return TrainOutcome(
        result.status,
        result.reason,
        session.folder,
        summary,
        warnings=[*session.warnings, *(f"tracker: {p}" for p in problems)],
    )


def _write_failed(exc: OSError, session: Session) -> TrainOutcome:
    return TrainOutcome("failed", str(exc), session.folder, error=write_failure(exc, session), exception=exc)


@contextmanager
def _stop_on_signals(trainer) -> Iterator[None]:
    """SIGINT / SIGTERM ask ``trainer`` to stop after the current step (a second one: stop now).

    Installed before the run folder is created, so a signal then still ends as a clean interrupt.
    Signal handlers can only be set from the main thread; elsewhere the defaults stay.
    """

    def on_signal(signum, frame):
        if trainer.stop_request is not None:  # a second signal: stop now, with the first one's code
            raise Stopped(trainer.stop_request)
        trainer.request_stop(signal.Signals(signum).name)

    with _handlers(on_signal):
        yield


def write_failure(exc: OSError, session: Session) -> str:
    """One line for a write that failed mid-run (full disk, quota, read-only): what, and what is kept."""
    from nncli.runs.checkpoint import CheckpointError, load_checkpoint

    folder = session.folder
    assert folder is not None, "a write can only fail once the run folder exists"
    try:
        kept = f"the last good checkpoint (step {load_checkpoint(folder / 'checkpoints', 'last').state['step']}) is kept"
    except (CheckpointError, KeyError, OSError):
        kept = "no checkpoint had been written yet"
    full = exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    return (
        f"cannot write {exc.filename}: {exc.strerror or exc}; training stopped at step "
        f"{session.trainer.state.step}; {kept}; {'make room' if full else 'once it can be written'}, "
        f"then continue with nncli train --resume {folder}"
    )
