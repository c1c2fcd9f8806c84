"""Running sweep trials: ``python -m nncli train ...`` processes, in parallel here or as Ray tasks.

Each trial runs in its own session, so a Ctrl-C at the terminal reaches only the sweep, which then
stops each running trial with exactly one SIGINT: a trial writes a checkpoint and stops on the first
(a second would stop it at once, without one). Trials not started yet are never started.

    run_local(arg_lists, jobs, on_result)            jobs worker processes on this machine
    ray_tasks.run_ray(...)                           one Ray task (1 CPU) per trial

``on_result(i, (exit code, stdout, stderr))`` is called as each trial ends, in completion order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager

#: BLAS thread variables set for each trial when several run at once (unless the user set them)
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: seconds between two asks of ``should_stop()`` while a trial runs (a search reads the trial's
#: evaluations and asks its pruner this often)
POLL = 0.25


def run_process(
    args: list[str],
    env: dict[str, str] | None = None,
    started: Callable[[subprocess.Popen], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[int, str, str]:
    """Run ``python -m nncli ARGS`` in a new session; (exit code, stdout, stderr). Also a Ray task's body.

    ``started(proc)`` lets the caller track the process to stop it. ``should_stop()`` is asked every
    ``POLL`` seconds; once it is True the trial gets one SIGINT (it stops at a checkpoint): pruning.
    """
    # a Ray worker runs tasks with SIGINT blocked, and a child inherits the mask: unblock it there
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    # output to files, not pipes: the wait below can then poll without a full pipe blocking the trial
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nncli", *args],
            stdout=out,
            stderr=err,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=_unblock_stop_signals if blocked else None,
        )
        if started is not None:
            started(proc)
        try:
            stopped = False
            while True:  # short waits keep this thread in Python, where a cancelled Ray task is interrupted
                try:
                    proc.wait(timeout=0.5 if should_stop is None else POLL)
                    break
                except subprocess.TimeoutExpired:
                    if should_stop is not None and not stopped and should_stop():
                        proc.send_signal(signal.SIGINT)
                        stopped = True
        except BaseException:  # the sweep was interrupted (a Ray task cancelled): stop the trial too
            stop_process(proc)
            raise
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read()


def _unblock_stop_signals() -> None:  # runs in the child between fork and exec: one system call
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT, signal.SIGTERM])


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGINT (the trial writes a checkpoint and stops), then a kill if it is still alive after ``grace``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def thread_env(jobs: int) -> dict[str, str]:
    """Split the cores among parallel trials so that BLAS threads do not oversubscribe them."""
    if jobs <= 1:
        return {}
    per = str(max(1, (os.cpu_count() or 1) // jobs))
    return {v: per for v in THREAD_VARS if v not in os.environ}


@contextmanager
def sigterm_as_interrupt():
    """Inside, SIGTERM raises KeyboardInterrupt (main thread only), so the trials are stopped too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_local(arg_lists: list[list[str]], jobs: int, on_result: Callable[[int, tuple], None]) -> None:
    """Run the trials as ``jobs`` parallel processes; ``on_result(i, result)`` as each one ends.

    On Ctrl-C / SIGTERM: trials not started yet never start, running ones get one SIGINT each.
    """
    env = thread_env(jobs)
    running: set[subprocess.Popen] = set()
    lock, stopping = threading.Lock(), threading.Event()

    def started(proc):
        with lock:
            running.add(proc)
        if stopping.is_set():  # started while the sweep was being stopped
            proc.send_signal(signal.SIGINT)

    def one(args):
        if stopping.is_set():
            return None
        return run_process(args, env, started)

    pool = ThreadPoolExecutor(max_workers=jobs)  # threads only wait on their process
    futures: dict = {}
    reported: set[int] = set()
    try:
        with sigterm_as_interrupt():
            futures = {pool.submit(one, a): i for i, a in enumerate(arg_lists)}
            for f in as_completed(futures):
                on_result(futures[f], f.result())
                reported.add(futures[f])
    except BaseException:
        stopping.set()
        with lock:
            for proc in running:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        for f, i in futures.items():  # the stopped trials: record how they ended
            if i not in reported and f.done() and not f.cancelled() and f.exception() is None:
                on_result(i, f.result())
        raise
    pool.shutdown()
