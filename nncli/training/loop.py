"""The training loop. It never prints: it reports to callbacks (run recorder, progress display).

One optimiser step on a batch B (notes §7.4: forward (F), backward B[·], then the update):

    J = (1/|B|) Σ_{n∈B} ℓ(h(x_n), y_n);   g = ∂J/∂θ;   g ← g·min(1, c/‖g‖) (clipping);   θ ← opt(θ, g, η_t)

Position in the data is a pure function of the step count t: epoch e = t // S, batch b = t mod S
(S = steps per epoch), and the order of epoch e is ``epoch_permutation(n, seed, e)``. So a resume
needs only t (plus the optimiser state and the dropout generators' states) to continue exactly.

Callbacks are plain objects with any of these methods (all optional)::

    on_begin(trainer)                    before the first step of this session
    on_step_begin(trainer)               before each step's forward pass (step ``state.step + 1``)
    on_step(trainer)                     after every optimiser step (keep it cheap)
    on_log(trainer, record)              every ``log_every`` steps: step, epoch, lr, train_loss, seconds
    on_eval(trainer, record, improved)   after each evaluation (improved: a new best ``best_metric``):
                                         step, epoch, lr, train_loss_since_eval, val_loss, val_<metric>
                                         for each of the run's metrics (val_acc, ...), seconds
    on_checkpoint(trainer, best)         time to save ``last`` (and ``best`` when best is True)
    on_end(trainer, result)              once, with the TrainResult
    on_error(trainer, exc)               instead of on_end when the loop raises: release what the
                                         callback holds (the watcher's module hooks), then it propagates
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from nncli.core.errors import ConfigError
from nncli.core.hooks import watch
from nncli.core.kernels import denormals
from nncli.training.evaluation import evaluate
from nncli.training.metrics import EVAL_FIELDS, Fit, better, eval_value, run_metrics
from nncli.training.optimizers import all_finite, clip_grad_norm, global_norm
from nncli.training.state import apply_weights, group, grouped, rng_states, set_rng_states

#: exit code of a run stopped because the loss or a gradient became NaN/Inf (``on_nonfinite: stop``)
EXIT_DIVERGED = 3


@dataclass
class TrainState:
    """Everything besides weights and optimiser buffers that a resume needs (saved as JSON)."""

    step: int = 0
    best: float | None = None  # best value of train.best_metric so far
    best_step: int | None = None
    es_best: float | None = None  # early stopping: best value of its metric, evaluations since
    es_bad: int = 0
    log_sum: float = 0.0  # train-loss sums since the last log line / evaluation
    log_n: int = 0
    eval_sum: float = 0.0
    eval_n: int = 0
    seconds: float = 0.0  # training time of earlier sessions
    skipped: int = 0  # steps skipped for a non-finite loss (on_nonfinite: skip)
    last_eval: dict[str, Any] | None = None
    best_eval: dict[str, Any] | None = None


@dataclass
class TrainResult:
    status: str  # completed | diverged | interrupted
    reason: str  # steps done, early stopping, signal name, or what diverged
    steps: int
    seconds: float
    last_eval: dict[str, Any] | None = None
    best_eval: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Trains ``chain`` on ``train`` (a split with ``.x``, ``.y``), evaluating on ``val``.

    ``cfg`` is the resolved ``nncli.config.schema.Config``; ``permutation(n, seed, epoch)`` gives each
    epoch's order (``nncli.training.data_seeds.epoch_permutation``). The learning-rate schedule is built here, as
    it needs the step count: ``train.steps``, or ``train.epochs`` × ⌈n_train / batch_size⌉.
    """

    def __init__(self, cfg, chain, train, val, optimizer, permutation, callbacks=()):
        from nncli.training.schedules import make_schedule

        self.cfg, self.tcfg = cfg, cfg.train
        self.chain, self.loss = chain, chain.loss
        self.optimizer, self.permutation = optimizer, permutation
        self.callbacks = list(callbacks)
        self.classifier = getattr(self.loss, "target_kind", "real") in ("class", "binary")
        dtype = chain.dtype
        # cast once: the hot loop then only gathers rows into preallocated buffers
        self.x = np.ascontiguousarray(train.x, dtype=dtype)
        self.y = self.as_targets(train.y, dtype)
        self.val_x = None if val is None or len(val.x) == 0 else np.ascontiguousarray(val.x, dtype=dtype)
        self.val_y = None if self.val_x is None else self.as_targets(val.y, dtype)
        self.n = len(self.x)
        if self.n == 0:
            raise ConfigError("the training split is empty", field="data")
        self.batch_size = min(cfg.data.batch_size, self.n)
        self.steps_per_epoch = math.ceil(self.n / self.batch_size)
        t = self.tcfg
        self.total_steps = t.steps if t.steps is not None else (t.epochs or 1) * self.steps_per_epoch
        #: what each evaluation computes besides the loss (``metrics:``, best_metric, early stopping)
        self.metrics = run_metrics(cfg, Fit.of(self.loss, chain.output_shape()), self.val_x is not None)
        self._xbuf = np.empty((self.batch_size,) + self.x.shape[1:], dtype=dtype)
        self._ybuf = np.empty((self.batch_size,) + self.y.shape[1:], dtype=self.y.dtype)
        self._grads = optimizer.grad_arrays()  # the gradients' few flat buffers
        self._es_weights: dict[str, np.ndarray] | None = None
        self.state = TrainState()
        self.stop_request: str | None = None
        #: the step of the newest checkpoint asked for (None: none yet); whether the state is finite
        self.checkpoint_step: int | None = None
        self._finite: bool | None = True
        self.schedule = make_schedule(cfg.schedule, cfg.optimizer.lr, self.total_steps)
        self.lr = self.schedule(0)
        self._t0 = time.perf_counter()

    @staticmethod
    def as_targets(y, dtype):
        """Targets as the loss takes them: labels (integers, booleans) as they are, real values in
        the chain's ``dtype``; contiguous."""
        y = np.asarray(y)
        return np.ascontiguousarray(y if y.dtype.kind in "iub" else y.astype(dtype))

    # -- small helpers --------------------------------------------------------------------------------
    def _emit(self, event: str, *args) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self, *args)

    @property
    def seconds(self) -> float:
        return self.state.seconds + (time.perf_counter() - self._t0)

    @property
    def epoch(self) -> int:
        """1-based epoch of the last completed step (1 before any step)."""
        return max(self.state.step - 1, 0) // self.steps_per_epoch + 1

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (used by signal handlers)."""
        self.stop_request = reason

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        # NaN/Inf are detected and reported by the loop itself (train.on_nonfinite), so numpy's
        # overflow warnings would only repeat it, less clearly
        # subnormal floats flushed to zero: late in training they are common and, on many x86 CPUs,
        # each one costs a slow path (``kernels.denormals``); the evaluations inside see the same
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), denormals.flushing():
            try:
                return self._run()
            except BaseException as exc:
                self._emit("on_error", exc)
                raise

    def _run(self) -> TrainResult:
        st, t, chain = self.state, self.tcfg, self.chain
        self._t0 = time.perf_counter()
        chain.train()
        self._emit("on_begin")
        order, order_epoch = np.empty(0, dtype=np.intp), -1  # the epoch's order, drawn at its first step
        status, reason = "completed", "step budget reached"
        # resumed from a checkpoint of the final step (killed while finishing): no second final eval
        evaluated_at = st.last_eval["step"] if st.last_eval else -1
        while st.step < self.total_steps and self.stop_request is None:
            epoch, b = divmod(st.step, self.steps_per_epoch)
            if epoch != order_epoch:
                order = (
                    self.permutation(self.n, self.cfg.seed, epoch)
                    if self.cfg.data.shuffle
                    else np.arange(self.n)
                )
                order_epoch = epoch
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            k = len(idx)
            xb = np.take(self.x, idx, axis=0, out=self._xbuf[:k])
            yb = np.take(self.y, idx, axis=0, out=self._ybuf[:k])
            self.lr = self.schedule(st.step)
            self._emit("on_step_begin")
            J, _ = chain.loss_and_grad(xb, yb)
            # the global gradient norm costs O(#params), ~1/batch of a forward pass; it catches a
            # finite loss with a NaN/Inf gradient before the update spreads it into the weights
            bad = not math.isfinite(J) or not math.isfinite(
                clip_grad_norm(self._grads, t.clip_grad_norm)
                if t.clip_grad_norm is not None
                else grad_norm(self._grads)
            )
            if bad and t.on_nonfinite == "stop":
                status, reason = "diverged", locate_nonfinite(chain, xb, yb, J, st.step + 1)
                break
            if bad and t.on_nonfinite == "skip":
                st.skipped += 1
            else:
                self.optimizer.step(self.lr)
                # a finite gradient can still overflow the update (lr 1e39, weight decay 1e39 in
                # float32): checked now, so no checkpoint is ever written from non-finite weights
                self._finite = None
                if not bad and t.on_nonfinite != "ignore" and not self._state_finite():
                    status, reason = "diverged", self._overflow_reason(st.step + 1)
                    break
            st.step += 1
            if not bad or t.on_nonfinite == "ignore":  # ignore: let the NaN show in the log
                st.log_sum += J
                st.log_n += 1
                st.eval_sum += J
                st.eval_n += 1
            self._emit("on_step")
            if st.step % t.log_every == 0:
                self._log()
            end_of_epoch = st.step % self.steps_per_epoch == 0
            if (st.step % t.eval_every == 0) if t.eval_every else end_of_epoch:
                evaluated_at = st.step
                if self._evaluate_and_save():
                    status, reason = "completed", "early stopping"
                    break
            elif t.checkpoint_every and st.step % t.checkpoint_every == 0:
                self._checkpoint(False)
        if (
            self.stop_request is not None
            and status == "completed"
            and reason != "early stopping"
            and st.step < self.total_steps
        ):
            status, reason = "interrupted", self.stop_request
            self._checkpoint(False)
        elif status == "completed" and reason != "early stopping" and evaluated_at != st.step:
            self._evaluate_and_save(final=True)  # the last step was not an evaluation step
        extra = {"skipped_steps": st.skipped, "checkpoint_step": self.checkpoint_step}
        result = TrainResult(status, reason, st.step, self.seconds, st.last_eval, st.best_eval, extra)
        self._emit("on_end", result)
        return result

    def _log(self) -> None:
        st = self.state
        rec = {
            "event": "train",
            "step": st.step,
            "epoch": self.epoch,
            "lr": self.lr,
            "train_loss": st.log_sum / st.log_n if st.log_n else math.nan,
            "seconds": round(self.seconds, 4),
        }
        st.log_sum, st.log_n = 0.0, 0
        self._emit("on_log", rec)

    def _evaluate_and_save(self, final: bool = False) -> bool:
        """Evaluate, track the best checkpoint and early stopping; True when training should stop.

        A ``final`` evaluation (the budget ended between scheduled ones) may give the best
        checkpoint but leaves the train-loss sums and early stopping as they were, so that a run
        extended past its budget (``--resume RUN --set train.steps=N``) continues exactly as a run
        given N steps from the start.
        """
        st, t = self.state, self.tcfg
        rec = {
            "event": "eval",
            "step": st.step,
            "epoch": self.epoch,
            "lr": self.lr,
            EVAL_FIELDS["train_loss"]: st.eval_sum / st.eval_n if st.eval_n else math.nan,
        }
        if not final:
            st.eval_sum, st.eval_n = 0.0, 0
        if self.val_x is not None:
            rec.update({f"val_{k}": v for k, v in self.evaluate(self.val_x, self.val_y).items()})
        rec["seconds"] = round(self.seconds, 4)
        st.last_eval = rec
        improved = better(t.best_metric, eval_value(rec, t.best_metric), st.best)
        if improved:
            st.best, st.best_step, st.best_eval = eval_value(rec, t.best_metric), st.step, rec
        stop = False
        es = t.early_stopping
        if es is not None and not final:
            if better(es.metric, eval_value(rec, es.metric), st.es_best, es.min_delta):
                st.es_best, st.es_bad = eval_value(rec, es.metric), 0
                self._es_weights = self.chain.state_dict()
            else:
                st.es_bad += 1
                stop = st.es_bad >= es.patience
        self._emit("on_eval", rec, improved)
        if stop and self._es_weights is not None:
            apply_weights(self.chain, self._es_weights, "early-stopping best weights")
        self._checkpoint(improved)
        return stop

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """Mean loss and the run's metrics over (x, y) in eval mode, in batches."""
        return evaluate(self.chain, self.loss, x, y, self.classifier, self.metrics)

    # -- checkpoints ----------------------------------------------------------------------------------
    def _state_finite(self) -> bool:
        """Whether the weights and the optimiser state hold only finite values (cached per update)."""
        if self._finite is None:
            self._finite = all_finite(self.optimizer.arrays())
        return self._finite

    def _overflow_reason(self, step: int) -> str:
        where = "the optimizer state"
        for name, p, _ in self.chain.parameters():
            if not all_finite([p]):
                top = int(name.split(".")[0])
                where = f"parameter {name} of module {top} ({type(self.chain.modules[top]).__name__})"
                break
        c = self.cfg.optimizer
        return (
            f"the update of step {step} made {where} NaN/Inf although the loss and the gradient "
            f"were finite: it overflowed {self.chain.dtype.name} (learning rate {self.lr:g}, "
            f"weight decay {c.weight_decay:g}); lower them"
        )

    def _checkpoint(self, best: bool) -> None:
        """Ask the callbacks to save, unless the weights or optimiser state are NaN/Inf (possible only
        with ``on_nonfinite: ignore``): a checkpoint is never written with a non-finite value."""
        if not self._state_finite():
            return
        self._emit("on_checkpoint", best)
        self.checkpoint_step = self.state.step

    def checkpoint_state(self) -> tuple[dict, dict, dict]:
        """(weights, sidecar arrays, JSON state) for ``nncli.runs.checkpoint.save_checkpoint``."""
        arrays = grouped("optimizer", self.optimizer.state_dict())
        if self._es_weights is not None:
            arrays.update(grouped("es_best", self._es_weights))
        state = asdict(self.state)
        state["seconds"] = self.seconds
        state["epoch"] = self.epoch
        state["batch"] = self.state.step % self.steps_per_epoch
        state["rng"] = rng_states(self.chain)
        return self.chain.state_dict(), arrays, state

    def restore(self, ckpt) -> None:
        """Continue from a ``nncli.runs.checkpoint.Checkpoint`` made by ``checkpoint_state``."""
        apply_weights(self.chain, ckpt.weights, ckpt.path)
        self.optimizer.load_state_dict(group(ckpt.arrays, "optimizer"))
        es = group(ckpt.arrays, "es_best")
        self._es_weights = es or None
        s = dict(ckpt.state)
        set_rng_states(self.chain, s.pop("rng", {}), ckpt.path)
        known = set(TrainState.__dataclass_fields__)
        self.state = TrainState(**{k: v for k, v in s.items() if k in known})
        self.checkpoint_step = self.state.step
        self._finite = None


def grad_norm(grads) -> float:
    """‖g‖ = √(Σ_i ‖g_i‖²) over every parameter's gradient, without overflow (``global_norm``)."""
    return global_norm(grads)


def locate_nonfinite(chain, xb, yb, J: float, step: int) -> str:
    """Name the first module whose parameters, forward output or backward gradient is NaN/Inf.

    Run only after a non-finite loss or gradient norm, so the normal step pays nothing for it: the
    batch is run again with a forward and a backward hook on every module (nested ones too).
    """
    where = (
        f"non-finite loss ({J}) at step {step}"
        if not math.isfinite(J)
        else f"non-finite gradient norm at step {step}"
    )
    for name, m in chain.named_modules():
        for k, p in m.params.items():
            if not np.all(np.isfinite(p)):
                return f"{where}: parameter {name}.{k} of module {name} ({type(m).__name__}) is NaN/Inf"
    first: dict[str, str] = {}  # "forward" / "backward" → the first module that produced NaN/Inf

    def spot(kind: str):
        def hook(name, m, _inp, out, _seconds) -> None:
            bad = out is not None and not np.all(np.isfinite(out))
            if kind == "backward":
                bad = bad or not all(np.all(np.isfinite(g)) for g in m.grads.values())
            if bad:
                first.setdefault(kind, f"module {name} ({type(m).__name__})")

        return hook

    with watch(chain, on_forward=spot("forward"), on_backward=spot("backward")):
        h = chain.forward(xb)
        if "forward" in first:
            return f"{where}: forward output of {first['forward']} is NaN/Inf"
        chain.zero_grads()
        J2 = chain.loss.forward(h, yb)
        v = chain.loss.backward()
        if not math.isfinite(J2) or not np.all(np.isfinite(v)):
            return f"{where}: the loss ({type(chain.loss).__name__}) overflowed on finite model outputs"
        chain.backward(v)
    if "backward" in first:
        return f"{where}: backward gradient of {first['backward']} is NaN/Inf"
    return f"{where}: could not reproduce it module by module"
