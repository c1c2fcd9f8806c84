"""Data parallelism inside one training step: the batch cut into two halves, each run forward,
through the loss and backward by its own copy of the chain on its own thread; the gradients added.

Why: the kernels spread a large layer over threads block by block (``kernels.threads``), so every
layer waits for its blocks, and the many small numpy calls between them pass the GIL back and forth.
Two halves of the batch that run a whole step each on one core, and meet only to add their
gradients, use the second core better on image-sized CNNs. Measured (float32, 2 cores, forward +
loss + backward, ms, medians of 20 alternating rounds): the three-stage CNN of ``benchmarks/``
(batch 32) 9.1 layer by layer on 2 threads, 7.4 split; the CIFAR-sized CNN (batch 64) 20.5 / 17.4
with average pooling, 21.9 / 18.5 with max pooling. An MLP's large products already use both cores
well: the LN MLP (batch 256) 3.65 / 4.8, so only layers that gain say so (below).

When a step splits (``wants_split``): every module allows it (``Module.batch_split``: BatchNorm's
batch statistics and Dropout's random draws, whose order would depend on which half ran first, do
not; nor does any module that does not say), at least one gains by it (convolution, pooling), the
loss splits (``Loss.splits_batch``), the step needs at least ``SPLIT_MIN_FLOPS`` (below that it runs
on one thread anyway: ``nncli train --threads auto``), and no hook is registered (tracing, timing
and watching see whole batches).

The same bits on any thread count: the halves depend only on the batch size; with one thread they
run one after the other on the calling thread, with two or more at once, each half's kernels on its
share of the threads (``threads.run_apart``: two each on four cores), their blocks fixed by the
shapes; the gradient is the first half's plus the second's, in that order.
A resumed run therefore continues exactly. Against the unsplit step the sums run in another order,
so results agree to rounding.

With two or more threads and the parameters laid out flat (as training lays them), the second half
runs in a worker process instead of a thread (``core.split_process``): two Python threads pass the
GIL back and forth at every numpy call, two processes share none. The worker computes what the
thread would, on the same parameters, so the bits are the same; if it cannot start or fails, the
run goes on with the thread. ``NNCLI_SPLIT=threads`` keeps the thread. Measured (float32, 2 cores,
ms per training step, thread → process): the CIFAR-sized CNN 30.7–31.2 → 26.4–28.5, the three-stage
CNN 13.2 → 10.4–10.8.

The loss: with w = ``batch_weight`` of each half, J = (w₁J₁ + w₂J₂)/(w₁ + w₂), and each half's
∂J/∂h is scaled by wᵢ/(w₁ + w₂) before its backward pass.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nncli.core import hooks
from nncli.core.env_choice import env_choice
from nncli.core.flat import owners
from nncli.core.kernels import denormals
from nncli.core.kernels.threads import blas_threads, run_apart

if TYPE_CHECKING:
    from nncli.core.chain import Chain

#: floating-point operations per step (forward and backward, whole batch) from which a step splits;
#: the same bar as ``nncli train --threads auto``'s second thread
SPLIT_MIN_FLOPS = 150e6
#: the smallest batch that splits
MIN_SPLIT_BATCH = 16


def wants_split(chain: Chain, n: int) -> bool:
    """Whether ``chain``'s training step on a batch of ``n`` examples splits (see the module docstring)."""
    if chain.loss is None or not chain.loss.splits_batch or n < MIN_SPLIT_BATCH:
        return False
    if chain.batch_split_mode() != "gains":
        return False
    facts = chain.describe()
    return 2 * (facts["macs_forward"] + facts["macs_backward"]) * n >= SPLIT_MIN_FLOPS


@dataclass
class SplitState:
    """What a chain keeps between steps: ``wants_split`` per batch size, and its ``BatchSplit``."""

    decisions: dict[int, bool] = field(default_factory=dict)
    split: BatchSplit | None = None


def for_step(chain: Chain, n: int) -> BatchSplit | None:
    """The chain's ``BatchSplit`` when a step on ``n`` examples splits, else None. The decision is
    kept per batch size, the copy of the chain as long as it shares the chain's parameters."""
    state = chain.split_state
    if state is None:
        state = chain.split_state = SplitState()
    decided = state.decisions.get(n)
    if decided is None:
        decided = state.decisions[n] = wants_split(chain, n)
    if not decided or hooks.any_registered():
        return None
    if state.split is None or not state.split.current():
        state.split = BatchSplit(chain)
    return state.split


#: the environment variable that keeps a split batch's second half on a thread (``threads``)
SPLIT_ENV = "NNCLI_SPLIT"


def split_in_processes() -> bool:
    """What ``SPLIT_ENV`` asks for: unset, empty or ``process`` a worker process, ``threads`` a
    thread; anything else is refused (a misspelt ``threads`` would otherwise go unnoticed)."""
    return env_choice(SPLIT_ENV, {"process": True, "threads": False}, True)


def processes_wanted(split: BatchSplit) -> bool:
    """Whether a split batch's second half runs in a worker process (``split_process``): with two
    or more threads, parameters laid out flat, every module nncli's own (a worker process imports
    them anew: modules from ``--code`` files stay on threads), and ``SPLIT_ENV`` not ``threads``."""
    if blas_threads() < 2 or split.flat is None or not split_in_processes():
        return False
    return all(type(m).__module__.startswith("nncli.") for m in owners(split.chain))


def half_step(c: Chain, x: np.ndarray, y: np.ndarray, scale: float | None) -> tuple[float, np.ndarray]:
    """(J, h) of one half of a split step: forward, the loss, and backward for ∂J/∂θ with ∂J/∂h
    scaled by ``scale``, the half's share of the batch's weight (None where the weights sum to 0).
    Run on a thread here, and by ``split_process``'s worker."""
    loss = c.loss
    assert loss is not None  # wants_split asked for one
    h = c.forward(x)
    J = loss.forward(h, y)
    v = loss.backward()
    c.backward_params(v * scale if scale is not None else v)
    return J, h


class BatchSplit:
    """A chain and the copy of it that runs the second half of each split batch.

    The copy shares the chain's parameters and buffers (the same arrays, so every update is seen)
    and has its own gradients, caches and scratch buffers; with flat parameters, its gradients lie
    in buffers laid out as the chain's (``FlatParameters.grads_twin``), added with one call per dtype.
    """

    def __init__(self, chain: Chain):
        self.chain = chain
        self.flat = chain.flat if chain.flat is not None and chain.flat.intact() else None
        shared: dict[int, Any] = {}
        for m in owners(chain):
            for table in (m.params, m.buffers):
                shared[id(table)] = table
                shared.update((id(a), a) for a in table.values())
        self.twin: Chain = copy.deepcopy(chain, shared)
        self.twin_grads = self.flat.grads_twin(self.twin) if self.flat is not None else None
        self.worker: Any = None  # the second half's process (``split_process``), made at first use
        self.worker_failed = False

    def current(self) -> bool:
        """Whether the copy still shares the chain's parameters and gradient layout."""
        flat = self.chain.flat
        if self.flat is None:
            return flat is None
        return flat is self.flat and flat.intact()

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """``Chain.loss_and_grad`` on the two halves of the batch; (J, h) of the whole batch."""
        chain, twin = self.chain, self.twin
        assert chain.loss is not None  # wants_split asked for one
        cut = len(x) // 2
        x0, x1, y0, y1 = x[:cut], x[cut:], y[:cut], y[cut:]
        w0, w1 = chain.loss.batch_weight(y0), chain.loss.batch_weight(y1)
        total = w0 + w1
        if twin.training != chain.training:
            twin.train(chain.training)
        # the loss as the chain has it now (class weights can be set after the copy was made); its
        # own object, since forward keeps what backward needs on it
        twin.loss = copy.copy(chain.loss)
        chain.zero_grads()
        if self.twin_grads is not None:
            for buf in self.twin_grads:
                buf.fill(0)
        else:
            twin.zero_grads()

        # each half's ∂J/∂h scaled by its share of the batch's weight
        s0, s1 = (w0 / total, w1 / total) if total else (None, None)
        worker = self._process()
        halves = self._with_process(worker, x0, y0, s0, x1, y1, s1) if worker is not None else None
        if halves is None:
            halves = run_apart(
                [lambda: half_step(chain, x0, y0, s0), lambda: half_step(twin, x1, y1, s1)], blas_threads()
            )
            self._add_twin_grads()
        (J0, h0), (J1, h1) = halves
        J = (w0 * J0 + w1 * J1) / total if total else float("nan")
        return J, np.concatenate([h0, h1])

    def _process(self):
        """The second half's worker process where it runs (``processes_wanted``), else None."""
        if self.worker is None and not self.worker_failed and processes_wanted(self):
            from nncli.core.split_process import HalfWorker

            try:
                assert self.flat is not None
                self.worker = HalfWorker(self.twin, self.flat)
                weakref.finalize(self, self.worker.close)
            except Exception:  # no process to be had: the halves stay on threads
                self.worker_failed = True
        return self.worker

    def _with_process(self, worker, x0, y0, s0, x1, y1, s1) -> list[tuple[float, np.ndarray]] | None:
        """The halves' (J, h), the second in the worker process, the first on this thread, with the
        worker's gradients added. If the worker fails, it is dropped for the rest of the run and its
        half runs here on the thread copy (None: the whole step still to do, on threads), so the
        step's bits are the same."""
        chain = self.chain
        assert self.flat is not None and self.twin_grads is not None
        share = max(1, blas_threads() // 2)  # each half's threads for its kernels, as run_apart gives
        settings = {"errstate": np.geterr(), "flush": denormals.requested(), "threads": share}
        try:
            worker.start(x1, y1, s1, chain.training, chain.loss, settings)
        except Exception:
            self._drop(worker)
            return None
        try:
            first = run_apart([lambda: half_step(chain, x0, y0, s0)], share)[0]
        except BaseException:  # the worker's reply to this step would be read by the next one
            self._drop(worker)
            raise
        try:
            second = worker.finish()
            grads = worker.grads
        except Exception:
            self._drop(worker)
            second = run_apart([lambda: half_step(self.twin, x1, y1, s1)], share)[0]
            grads = self.twin_grads
        except BaseException:  # interrupted while waiting: the same
            self._drop(worker)
            raise
        for seg, buf in zip(self.flat.segments, grads):
            seg.grads += buf
        return [first, second]

    def _drop(self, worker) -> None:
        """The worker failed: closed, and this run's halves stay on threads from now on."""
        self.worker, self.worker_failed = None, True
        worker.close()

    def _add_twin_grads(self) -> None:
        if self.twin_grads is not None and self.flat is not None:
            for seg, buf in zip(self.flat.segments, self.twin_grads):
                seg.grads += buf
            return
        for mine, theirs in zip(owners(self.chain), owners(self.twin)):
            for key, g in mine.grads.items():
                g += theirs.grads[key]
