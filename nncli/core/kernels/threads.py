"""Row blocks of large work, run on a small persistent thread pool; BLAS threads held where they lose.

numpy's ufuncs, copies and BLAS calls release the GIL while they loop, so two Python threads each
working on their own rows of an array run on two cores. Used by LN (``kernels.layernorm``) and the
convolutions (``kernels.conv``) through ``run_blocks``, and by ReLU and pooling through
``over_examples``: the work is cut into blocks whose boundaries depend only on the array's shape
(never on the thread count), and every block is computed the same way whichever thread runs it, so
results are identical with 1 or many threads. ``small_for_threads`` / ``matmul_one_thread`` hold a
GEMM too small to pay for waking OpenBLAS's threads at one BLAS thread (MM's products).

The number of threads follows numpy's BLAS thread setting (``nncli train --threads``, or a
``threadpoolctl.threadpool_limits`` around the call), capped at ``os.cpu_count()``: a user who asks
for one thread gets one. While the blocks run, ``run_blocks`` sets BLAS to one thread, so block
functions may call small mat-vecs (``@``) without two thread pools (ours and BLAS's) competing for
the cores; the setting is restored afterwards.

``run_apart`` runs whole passes at once, the halves of a split batch (``core.batch_split``): each on
its own thread with its share of the threads for its kernels (``blas_threads`` returns the share
inside it) and its own workspace slots, with Python's switch interval shortened while they run
(``SWITCH_INTERVAL``: a half waiting for the GIL gets it sooner). A forked child forgets the
parent's pool (its threads do not survive the fork) and starts its own.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nncli.core.kernels import denormals
from nncli.core.kernels.workspace import slot_base, slots_from

#: the machine's cores, read once: os.cpu_count() reads /sys on every call (~25 µs on Linux), and the
#: kernels ask for the thread count several times a step
_CPUS = os.cpu_count() or 1
#: below this many elements the work stays on the calling thread (waking a thread costs ~50 µs)
MIN_PARALLEL_ELEMENTS = 1 << 20

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_blas: Any = None  # threadpoolctl controllers of the loaded BLAS libraries, numpy's first (found once)
_read_from: Any = ()  # the controllers whose thread count is numpy's: numpy's own, else all of them


def _is_numpys(filepath: str | None) -> bool:
    """Whether a BLAS library file is the one numpy's wheel bundles (numpy.libs/, numpy/.dylibs)."""
    parts = Path(filepath or "").parts
    return len(parts) >= 2 and (parts[-2].startswith("numpy") or parts[-3:-1] == ("numpy", ".dylibs"))


def _controllers() -> list:
    """Every BLAS library loaded, numpy's first. Another library's BLAS (scipy's, which scikit-learn
    loads) can be listed before numpy's; holding that one at one thread while numpy's kept two made
    a block's GEMM run threaded now and then, and its rounding differ in the last bits."""
    global _blas, _read_from
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController

            libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # pragma: no cover - threadpoolctl missing or unreadable
            libs = []
        _blas = sorted(libs, key=lambda c: not _is_numpys(getattr(c, "filepath", None)))
        # found once: run_blocks asks for the count on every call of a kernel
        _read_from = _blas[:1] if _blas and _is_numpys(getattr(_blas[0], "filepath", None)) else _blas
    return _blas


def _blas_threads() -> int:
    """numpy's current BLAS thread count: its own library's, or where that cannot be told apart,
    the smallest of all (a user who asked for one thread gets one); 1 when none can be read."""
    if _blas is None:
        _controllers()
    if len(_read_from) == 1:  # numpy's own library, found: one read (run on every kernel call)
        try:
            return max(1, int(_read_from[0].get_num_threads()))
        except Exception:  # pragma: no cover
            return 1
    counts = []
    for c in _read_from:
        try:
            counts.append(max(1, int(c.get_num_threads())))
        except Exception:  # pragma: no cover
            pass
    return min(counts, default=1)


#: per thread: the kernels' thread budget inside a task of ``run_apart`` (None elsewhere)
_local = threading.local()


def blas_threads() -> int:
    """The threads the kernels may use: numpy's BLAS thread setting, at most the number of cores;
    inside a task of ``run_apart``, that task's share."""
    budget = getattr(_local, "budget", None)
    if budget is not None:
        return budget
    return max(1, min(_CPUS, _blas_threads()))


@contextmanager
def _budget(threads: int | None) -> Iterator[None]:
    before = getattr(_local, "budget", None)
    _local.budget = threads
    try:
        yield
    finally:
        _local.budget = before


def workers(n_elements: int) -> int:
    """How many threads to use for ``n_elements`` of elementwise work (1 for small arrays)."""
    return 1 if n_elements < MIN_PARALLEL_ELEMENTS else blas_threads()


def _set_blas_threads(n: int) -> None:
    """Set every loaded BLAS library to ``n`` threads (numpy's among them, whichever it is)."""
    for c in _controllers():
        try:
            c.set_num_threads(n)
        except Exception:  # pragma: no cover
            pass


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="nncli-rows")
            _pool_size = size
        return _pool


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's threads: a pool it inherited would take work and never
    run it (the first threaded kernel would wait forever). It starts its own, and a fresh lock."""
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def row_blocks(n_rows: int, row_elements: int, block_elements: int = 1 << 16) -> list[tuple[int, int]]:
    """Split ``n_rows`` rows of ``row_elements`` each into (start, stop) blocks of about
    ``block_elements`` elements (256 kB of float32, so a few arrays of one block stay in L2 cache).
    Depends only on the shape."""
    rows = max(1, block_elements // max(1, row_elements))
    return [(lo, min(lo + rows, n_rows)) for lo in range(0, n_rows, rows)]


#: elements per block of ``over_examples``: 1 MB of float32, in a core's L2 cache; smaller blocks
#: pay numpy's per-call cost too often (ReLU on 2M elements: 0.47 ms whole, 0.64 ms in 64K blocks)
EXAMPLE_BLOCK = 1 << 18


def over_examples(fn: Callable[[int, int, int], None], n: int, per_example: int) -> None:
    """Call ``fn(n0, n1, slot)`` over blocks of examples covering 0..n, ``EXAMPLE_BLOCK`` elements each,
    for elementwise and per-window work (activations, pooling): each block's passes then run in
    the L2 cache, and large arrays (``workers``) spread their blocks over threads. The blocks depend
    only on the shape and each is computed the same way on any thread, so the results are the same
    bits with 1 or many threads. BLAS is left alone: the blocks make no BLAS calls.

    Measured (ReLU forward on 64×32×32×32 float32, 2 idle cores): 0.63 ms on one thread, whole
    array or blocks alike; 0.35 ms on two.
    """
    if n * per_example <= EXAMPLE_BLOCK:  # one block: the per-step cost of small models stays low
        fn(0, n, 0)
        return
    blocks = row_blocks(n, per_example, EXAMPLE_BLOCK)
    threads = min(workers(n * per_example), len(blocks))
    if threads == 1:
        for n0, n1 in blocks:
            fn(n0, n1, 0)
        return
    _run_parallel(lambda k, slot: fn(*blocks[k], slot), len(blocks), threads)


#: multiply-adds of a GEMM below which it runs on one BLAS thread. OpenBLAS threads every GEMM above
#: 2^18 of them; with its idle threads asleep (``nncli._process``) waking them costs more than they
#: save on small products: float32, 2 cores, (64, 4096) @ (4096, 10) took 109–144 µs on one thread,
#: 128–586 µs on two; (128, 784) @ (784, 256) 285–314 µs on one, 206–275 µs on two.
MIN_THREADED_GEMM = 8 << 20
#: OpenBLAS's own limit: at or below it a GEMM runs on the calling thread anyway
_OPENBLAS_SINGLE = 1 << 18


def small_for_threads(m: int, k: int, n: int) -> bool:
    """Whether an (m, k) @ (k, n) product should run on one BLAS thread although more are set:
    OpenBLAS would thread it, but waking its threads costs more than they save."""
    return _OPENBLAS_SINGLE < m * k * n < MIN_THREADED_GEMM


def matmul_one_thread(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` (into ``out`` if given) with BLAS held at one thread for the call (for
    ``small_for_threads`` products; the bits are those of numpy's product on one thread: OpenBLAS's
    threaded and single-threaded products may round differently)."""
    blas = _blas_threads()
    if blas == 1:
        return np.matmul(a, b, out=out)
    _set_blas_threads(1)
    try:
        return np.matmul(a, b, out=out)
    finally:
        _set_blas_threads(blas)


def run_blocks(fn: Callable[[int, int], None], n_blocks: int, n_threads: int) -> None:
    """Call ``fn(block, slot)`` for every block in ``range(n_blocks)``, with BLAS on one thread.

    With ``n_threads`` > 1 the blocks are split into that many contiguous runs, one per thread (the
    caller's thread runs the first); ``slot`` is the run's index, for per-thread scratch buffers. An
    exception in any run is raised here after all runs have stopped. BLAS is held at one thread even
    when the blocks run on the caller's thread alone: a block's mat-vecs are too small to pay for
    waking BLAS threads, and one thread makes their rounding the same for every thread setting.
    """
    n_threads = max(1, min(n_threads, n_blocks))
    blas = _blas_threads()
    if blas > 1:
        _set_blas_threads(1)
    try:
        if n_threads == 1:
            for k in range(n_blocks):
                fn(k, 0)
        else:
            _run_parallel(fn, n_blocks, n_threads)
    finally:
        if blas > 1:
            _set_blas_threads(blas)


def _run_parallel(fn, n_blocks: int, n_threads: int) -> None:
    bounds = [n_blocks * i // n_threads for i in range(n_threads + 1)]
    # the caller's first slot and thread budget (set inside a task of run_apart) go with its runs,
    # and the handling of subnormal floats it asked for (``denormals``: per thread; the same bits on
    # any thread; None outside nncli's training, evaluation and prediction: left alone)
    base, budget, flush = slot_base(), getattr(_local, "budget", None), denormals.requested()

    def run(slot: int) -> None:
        for k in range(bounds[slot], bounds[slot + 1]):
            fn(k, slot)

    def run_elsewhere(slot: int) -> None:
        with slots_from(base), _budget(budget), denormals.flushing(flush):
            run(slot)

    futures = [_executor(n_threads - 1).submit(run_elsewhere, slot) for slot in range(1, n_threads)]
    error = None
    try:
        run(0)
    except BaseException as exc:  # still wait for the other runs: they write into shared arrays
        error = exc
    for f in futures:
        try:
            f.result()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


def run_apart(tasks: list[Callable[[], Any]], n_threads: int) -> list[Any]:
    """Run whole passes (a split batch's halves, ``core.batch_split``) and return their results.

    With ``n_threads`` ≥ 2 tasks, the tasks run at once, task i on its own thread (the caller's runs
    task 0), each with ``n_threads // len(tasks)`` threads for its kernels (``blas_threads`` inside
    it) and its own workspace slots (``slots_from``); else one after the other on the caller's
    thread. BLAS is held at one thread throughout: a kernel's blocks and their rounding depend only
    on the shapes, so the results are the same bits whichever threads run them. An exception in any
    task is raised here after all tasks have stopped.
    """
    blas = _blas_threads()
    if blas > 1:
        _set_blas_threads(1)
    try:
        if n_threads < 2 or len(tasks) == 1:
            with _budget(max(1, n_threads)):
                return [task() for task in tasks]
        budget = max(1, n_threads // len(tasks))
        # every thread the tasks and their kernels' blocks will ask for, made now: a pool grown while
        # a task waits on it could leave that task's blocks queued behind the task itself
        _executor(len(tasks) * budget - 1)
        results: list[Any] = [None] * len(tasks)
        # each task sees the caller's context: numpy's errstate lives in a context variable, and
        # a pool thread's own context would warn where the caller asked for silence
        contexts = [contextvars.copy_context() for _ in tasks]

        def run(i: int) -> None:
            with slots_from(i * budget), _budget(budget):
                results[i] = contexts[i].run(tasks[i])

        with _quick_switches():
            _run_parallel(lambda i, _slot: run(i), len(tasks), len(tasks))
        return results
    finally:
        if blas > 1:
            _set_blas_threads(blas)


#: the interpreter's switch interval while ``run_apart``'s tasks run at once (Python's default: 5 ms)
SWITCH_INTERVAL = 20e-6
_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextmanager
def _quick_switches() -> Iterator[None]:
    """Python's switch interval at ``SWITCH_INTERVAL`` inside, restored when the last of any
    concurrent users leaves.

    Two halves of a split batch each run numpy calls that release the GIL between stretches of
    Python that hold it; a half that finds the GIL taken waits for the other to release it, or for
    the switch interval to run out. Measured (float32, 2 threads, medians of 40 alternating rounds
    in one process, load 1.3, 5 ms → 20 µs): three-stage CNN 6.25 → 6.12 ms a step, CIFAR-sized
    CNN 14.57 → 14.35 (average pooling) and 15.83 → 15.48 (max pooling).
    """
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)
