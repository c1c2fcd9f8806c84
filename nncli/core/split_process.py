"""A split batch's second half in a worker process, which shares no GIL with the first half.

Two Python threads running a split batch's halves (``core.batch_split``) pass the GIL back and forth
at every numpy call, and a thread that finds it held sleeps. Measured (``benchmarks/gil_cost.py``,
float32, 2 cores, BLAS on one thread each, ms per step): the CIFAR-sized CNN of ``benchmarks/``
47.4 alone, 52.7 beside a copy of itself on another thread; its half batch 22.8 alone, 24.6 in each
of two processes at once. The three-stage CNN 17.4 / 26.3, and 9.2 / 9.3 for its halves.

The worker holds a copy of the chain (pickled once), whose parameters and gradients are views of
files both processes map: the parameters' flat segments (``core.flat``), copied in by the parent
before each step; the worker's gradients, which the parent adds into its own after the step; the
half batch and the half's output ``h``. Each step is one message each way on a pipe. The worker
runs the same code on the same arrays as the thread it replaces, with BLAS on one thread and the
caller's subnormal and numpy error settings, so the results are the same bits.

The files live in a private temporary folder (under /dev/shm where there is one) and are unlinked
as soon as both processes have mapped them (POSIX), so a killed process leaves at most that empty
folder behind. The worker ignores Ctrl-C (its parent handles it) and exits when the parent's end of
the pipe closes, as it does when the parent is killed.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from nncli.core.chain import Chain
    from nncli.core.flat import FlatParameters

#: seconds the parent waits for a new worker to report ready before giving up on it
START_TIMEOUT = 60.0
#: suffixes for the files of the half batch and its output (a new file each time a shape changes)
_names = itertools.count()


def _map(path: str, dtype, size: int, mode: Literal["r", "r+", "w+"]) -> np.ndarray:
    """``size`` elements of ``dtype`` in the file at ``path``, mapped (an empty file cannot be)."""
    return np.memmap(path, dtype=dtype, mode=mode, shape=(max(size, 1),))[:size]


class HalfWorker:
    """The second half of a split batch, in a worker process; see the module docstring."""

    def __init__(self, twin: Chain, flat: FlatParameters):
        self.flat = flat
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = tempfile.mkdtemp(prefix="nncli-half-", dir=shm)
        self.params: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        self.io: dict[str, np.ndarray] = {}
        self.fresh: list[str] = []  # files the worker maps at the next step, unlinked after it
        self.h: tuple[str, np.ndarray] | None = None
        self.process: Any = None
        try:
            self._start(twin)
        except BaseException:
            self.close()
            raise

    def _start(self, twin: Chain) -> None:
        import multiprocessing

        layout = []
        for i, seg in enumerate(self.flat.segments):
            p, g = os.path.join(self.dir, f"p{i}"), os.path.join(self.dir, f"g{i}")
            self.params.append(_map(p, seg.dtype, seg.params.size, "w+"))
            self.grads.append(_map(g, seg.dtype, seg.grads.size, "w+"))
            layout.append((p, g, seg.dtype.str, seg.params.size, list(seg.spans)))
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker, args=(child, pickle.dumps(twin), layout), daemon=True, name="nncli-half"
        )
        with _main_hidden():
            self.process.start()
        child.close()
        if not self.conn.poll(START_TIMEOUT) or self.conn.recv() != "ready":
            raise RuntimeError("the split batch's worker process did not start")
        self._unlink(layout)

    def _unlink(self, layout) -> None:
        for p, g, *_ in layout:
            _unlink(p)
            _unlink(g)

    def _buffer(self, name: str, a: np.ndarray) -> tuple[np.ndarray, tuple]:
        """A mapped array shaped and typed as ``a`` for ``name`` (made anew when those change)."""
        buf = self.io.get(name)
        if buf is None or buf.shape != a.shape or buf.dtype != a.dtype:
            path = os.path.join(self.dir, f"{name}{next(_names)}")
            buf = self.io[name] = _map(path, a.dtype, a.size, "w+").reshape(a.shape)
            self.fresh.append(path)
            return buf, (path, a.dtype.str, a.shape)
        return buf, ()

    def start(
        self, x: np.ndarray, y: np.ndarray, scale: float | None, training: bool, loss, settings: dict
    ) -> None:
        """Send the half batch (x, y) and the parameters; the worker runs its half at once."""
        for seg, shared in zip(self.flat.segments, self.params):
            np.copyto(shared, seg.params)
        xb, new_x = self._buffer("x", x)
        yb, new_y = self._buffer("y", y)
        np.copyto(xb, x)
        np.copyto(yb, y)
        self.conn.send(("step", new_x, new_y, scale, training, pickle.dumps(loss), settings))

    def finish(self) -> tuple[float, np.ndarray]:
        """(J, h) of the worker's half, once its gradients are in ``grads``; raises if it failed.
        ``h`` is the mapped file itself, valid until the next step."""
        reply = self.conn.recv()
        for path in self.fresh:  # mapped by the worker now
            _unlink(path)
        self.fresh.clear()
        if reply[0] != "done":
            raise RuntimeError(f"the split batch's worker process failed: {reply[1]}")
        _, J, h_info = reply
        if h_info:  # a new output file: mapped here once, then unlinked
            path, dtype, shape = h_info
            self.h = (path, _map(path, np.dtype(dtype), int(np.prod(shape)), "r").reshape(shape))
            _unlink(path)
        assert self.h is not None
        return J, self.h[1]  # the mapped output itself, read before the next step rewrites it

    def close(self) -> None:
        """Stop the worker (it exits when the pipe closes) and remove the folder of files."""
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except OSError:  # pragma: no cover
                pass
        if self.process is not None and self.process.pid is not None:
            self.process.join(timeout=5)
            if self.process.is_alive():  # pragma: no cover - a worker stuck in a step
                self.process.kill()
                self.process.join()
        for name in os.listdir(self.dir) if os.path.isdir(self.dir) else []:
            try:
                os.unlink(os.path.join(self.dir, name))
            except OSError:  # pragma: no cover
                pass
        try:
            os.rmdir(self.dir)
        except OSError:  # pragma: no cover
            pass


@contextmanager
def _main_hidden() -> Iterator[None]:
    """A spawned process imports the parent's ``__main__`` script again, running whatever it does
    outside an ``if __name__ == "__main__"`` guard; the worker needs nothing from it (its code is
    this module's), so the script is hidden from multiprocessing while the worker starts."""
    main = sys.modules.get("__main__")
    if main is None:  # pragma: no cover
        yield
        return
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # pragma: no cover - Windows keeps open files; removed at close
        pass


def _worker(conn, twin_bytes: bytes, layout: list) -> None:  # pragma: no cover - runs in the child
    """The worker process's loop: map the files, rebind the chain, then one half-step per message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from threadpoolctl import threadpool_limits

    from nncli.core.batch_split import half_step
    from nncli.core.flat import _slots
    from nncli.core.kernels import denormals
    from nncli.core.kernels.threads import run_apart

    threadpool_limits(limits=1, user_api="blas")
    twin: Any = pickle.loads(twin_bytes)
    slots = _slots(twin)
    grads = []
    for p, g, dtype, size, spans in layout:
        params = _map(p, np.dtype(dtype), size, "r+")
        grad = _map(g, np.dtype(dtype), size, "r+")
        for j, lo, hi, shape in spans:
            m, key = slots[j]
            m.params[key] = params[lo:hi].reshape(shape)
            m.grads[key] = grad[lo:hi].reshape(shape)
        grads.append(grad)
    conn.send("ready")
    x: Any = None  # the half batch, mapped when the parent sends a new file
    y: Any = None
    h: Any = None
    h_info: tuple = ()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        _, new_x, new_y, scale, training, loss_bytes, settings = msg
        try:
            if new_x:
                x = _map(new_x[0], np.dtype(new_x[1]), int(np.prod(new_x[2])), "r").reshape(new_x[2])
            if new_y:
                y = _map(new_y[0], np.dtype(new_y[1]), int(np.prod(new_y[2])), "r").reshape(new_y[2])
            twin.train(training)
            twin.loss = pickle.loads(loss_bytes)
            for g in grads:
                g.fill(0)
            with np.errstate(**settings["errstate"]), denormals.flushing(settings["flush"]):
                # the kernels on the parent's share of threads, BLAS on one: as on the thread
                ((J, out),) = run_apart([partial(half_step, twin, x, y, scale)], settings["threads"])
            h_info = ()
            if h is None or h.shape != out.shape or h.dtype != out.dtype:
                path = os.path.join(os.path.dirname(layout[0][0]), f"h{next(_names)}")
                h = _map(path, out.dtype, out.size, "w+").reshape(out.shape)
                h_info = (path, out.dtype.str, out.shape)
            np.copyto(h, out)
            reply: tuple = ("done", J, h_info)
        except Exception as e:  # reported to the parent, which runs the half itself
            reply = ("error", f"{type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except OSError:  # the parent closed the pipe (it dropped this worker, or it is gone)
            return
