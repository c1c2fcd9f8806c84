"""Losses as the last module of the chain (notes eq. 7.60): J = M_k(u[k-1]), mean over the batch.

Each loss: ``forward(h, y) -> J`` (a Python float), ``backward() -> ∂J/∂h`` (already carrying 1/N, so
layers never divide by N), ``check_output(shape)`` for the builder, ``check_targets(y)`` for data,
``metrics(h, y)`` for logging.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from nncli.core.errors import DataError, ShapeError
from nncli.core.module import NoParams
from nncli.core.registry import losses


class Loss(ABC):
    Config = NoParams
    notes_name: ClassVar[str] = ""
    #: "class" (integer labels), "binary" (0/1 labels) or "real" (targets shaped like the output)
    target_kind: ClassVar[str] = "real"
    #: whether J over a batch is (w₁J₁ + w₂J₂)/(w₁ + w₂) for any cut of it into two parts, w being
    #: ``batch_weight``: a sum over examples divided by the batch's weight. Then a split batch's
    #: halves (``nncli.core.batch_split``) can take their losses apart. False unless a loss says so.
    splits_batch: ClassVar[bool] = False

    def __init__(self, **hparams):
        self.cfg = self.Config(**hparams)

    def check_output(self, output_shape: tuple[int, ...]) -> None:  # noqa: B027 (optional hook)
        """Raise ShapeError when the model's per-example output cannot feed this loss."""

    def check_targets(self, y: np.ndarray, output_shape: tuple[int, ...]) -> None:  # noqa: B027 (optional hook)
        """Raise DataError when targets ``y`` (N, ...) cannot be used with this loss."""

    @abstractmethod
    def forward(self, h: np.ndarray, y: np.ndarray) -> float:
        """J, the mean loss over the batch; keeps what ``backward`` needs."""

    @abstractmethod
    def backward(self) -> np.ndarray:
        """∂J/∂h for the last ``forward`` (already divided by the batch size)."""

    def predict(self, h: np.ndarray) -> np.ndarray:
        return h

    def batch_weight(self, y: np.ndarray) -> float:
        """What the batch's mean loss is divided by: its size, or the sum of its class weights."""
        return float(len(y))

    def set_class_weights(self, weights: np.ndarray | None) -> None:
        """Per-class weights (data.class_weights); only the cross-entropy takes them."""
        if weights is not None:
            raise DataError(f"{type(self).__name__} takes no class weights (cross_entropy does)")

    def trace_equations(self) -> tuple[str, str]:
        """(J from h, ∂J/∂h) for the loss row of ``inspect --trace``: where backprop starts."""
        return ("J = (1/N) Σₙ ℓ(hₙ, yₙ)", "∂J/∂h = (1/N) ∂ℓ/∂h")

    def label(self) -> str:
        """The loss's name in inspect, trace and gradcheck output: the notes' name, else the class's."""
        return self.notes_name or type(self).__name__

    def metrics(self, h: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Extra metrics besides the loss, e.g. accuracy (sums, not means: callers divide)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _int_labels(y: np.ndarray, low: int, high: int, what: str) -> None:
    if y.ndim != 1:
        raise DataError(f"{what} targets must be one label per example, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError(f"{what} targets must be integer labels, got non-integer values")
    elif y.dtype.kind not in "iub":
        raise DataError(f"{what} targets must be integer labels, got dtype {y.dtype}")
    if y.size and (y.min() < low or y.max() > high):
        raise DataError(
            f"{what} labels must lie in [{low}, {high}], got values in [{y.min():g}, {y.max():g}]"
        )


def _row_reduce(ufunc: np.ufunc, a: np.ndarray) -> np.ndarray:
    """``ufunc.reduce`` over each row of ``a`` (N, C), as an (N, 1) column. With few classes numpy's
    reduction along the last axis runs one short loop per row (the row max of 256×10 logits takes
    5× the time of the arithmetic); over the first axis of the transposed copy it is one vectorised
    pass per class. Each row still reduces its own values in class order."""
    if a.shape[1] > 16:
        return ufunc.reduce(a, axis=1, keepdims=True)
    return ufunc.reduce(np.ascontiguousarray(a.T), axis=0)[:, None]


@losses.register("cross_entropy", "CrossEntropy", "softmax_cross_entropy", "ce", "nll")
class CrossEntropy(Loss):
    """J = (1/N) Σ_n [log Σ_c exp(h_nc) − h_{n,y_n}] from logits h (N, C), labels y (N,) in [0, C).

    ∂J/∂h = (softmax(h) − onehot(y)) / N. Stable for any finite logits (log-sum-exp shifted by the max).

    With class weights w (C,) (``set_class_weights``; data.class_weights) the mean is weighted, as
    PyTorch's ``CrossEntropyLoss(weight=w)``: J = Σ_n w_{y_n} ℓ_n / Σ_n w_{y_n} and
    ∂J/∂h_n = w_{y_n} (softmax(h_n) − onehot(y_n)) / Σ_m w_{y_m}.
    """

    weight: np.ndarray | None = None

    def set_class_weights(self, weights):
        self.weight = None if weights is None else np.asarray(weights, dtype=np.float64)

    def batch_weight(self, y):
        if self.weight is None:
            return float(len(y))
        return float(self.weight[np.asarray(y, dtype=np.intp)].sum())

    notes_name = "ℓ_ce"
    splits_batch = True
    target_kind = "class"

    def check_output(self, output_shape):
        if len(output_shape) != 1 or output_shape[0] < 2:
            raise ShapeError(
                f"cross_entropy needs the last layer to output (C,) logits with C ≥ 2, "
                f"got {tuple(output_shape)}"
            )

    def check_targets(self, y, output_shape):
        _int_labels(y, 0, output_shape[0] - 1, "cross_entropy")
        if self.weight is not None and len(self.weight) != output_shape[0]:
            raise DataError(
                f"cross_entropy has {len(self.weight)} class weights for {output_shape[0]} classes"
            )

    def forward(self, h, y):
        y = y.astype(np.intp, copy=False)
        n = h.shape[0]
        # one N×C array: the shifted logits become their exponentials, then the softmax, in place
        p = h - _row_reduce(np.maximum, h)
        picked = p[np.arange(n), y]
        np.exp(p, out=p)
        total = _row_reduce(np.add, p)
        p /= total
        self._p, self._y, self._n = p, y, n
        per_example = np.log(total[:, 0]) - picked
        if self.weight is None:
            return float(per_example.sum()) / n  # np.mean costs 3 µs of Python around the sum
        w = self.weight[y]
        self._w, self._wsum = w, float(w.sum())
        return float(np.dot(w, per_example) / self._wsum)

    def trace_equations(self):
        return ("J = (1/N) Σₙ [log Σ_c exp h_c − h_y]", "∂J/∂h = (softmax(h) − e_y) / N")

    def backward(self):
        g = self._p.copy()
        g[np.arange(self._n), self._y] -= 1
        if self.weight is None:
            g /= self._n
        else:
            g *= (self._w / self._wsum).astype(g.dtype, copy=False)[:, None]
        return g

    def predict(self, h):
        return h.argmax(axis=1)

    def metrics(self, h, y):
        return {"correct": float(np.sum(h.argmax(axis=1) == y))}


@losses.register("logistic", "binary_cross_entropy", "bce", "BCEWithLogits")
class Logistic(Loss):
    """J = (1/N) Σ_n ℓ_logistic(h_n, y_n) = (1/N) Σ_n [log(1 + e^{h_n}) − y_n h_n], y ∈ {0, 1}.

    h: (N, 1) or (N,) logits. ∂J/∂h = (sigmoid(h) − y) / N. Stable: log(1+e^h) = max(h,0) + log1p(e^{-|h|}).
    """

    notes_name = "ℓ_logistic"
    splits_batch = True
    target_kind = "binary"

    def check_output(self, output_shape):
        if tuple(output_shape) not in ((1,), ()):
            raise ShapeError(
                f"logistic needs the last layer to output one logit per example (out: 1), "
                f"got {tuple(output_shape)}"
            )

    def check_targets(self, y, output_shape):
        _int_labels(y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y, 0, 1, "logistic")

    def forward(self, h, y):
        y = y.reshape(h.shape).astype(h.dtype, copy=False)
        self._h, self._y, self._n = h, y, h.shape[0]
        soft = np.maximum(h, 0) + np.log1p(np.exp(-np.abs(h)))
        return float(np.sum(soft - y * h) / self._n)

    def backward(self):
        h = self._h
        e = np.exp(-np.abs(h))
        sig = np.where(h >= 0, 1 / (1 + e), e / (1 + e))
        return ((sig - self._y) / self._n).astype(h.dtype, copy=False)

    def trace_equations(self):
        return ("J = (1/N) Σₙ [log(1 + e^{hₙ}) − yₙ hₙ]", "∂J/∂h = (sigmoid(h) − y) / N")

    def predict(self, h):
        return (h.reshape(len(h)) > 0).astype(np.int64)

    def metrics(self, h, y):
        return {"correct": float(np.sum(self.predict(h) == y.reshape(len(y))))}


@losses.register("squared", "squared_loss", "l2")
class Squared(Loss):
    """J = (1/N) Σ_n ½‖h_n − y_n‖² (the notes' ½(h(x) − y)², averaged over the batch).

    ∂J/∂h = (h − y) / N. Not PyTorch's MSELoss, which has no ½ and also averages over the output
    entries: that one is ``mse`` (``MSE`` below).
    """

    notes_name = "ℓ_sq"
    splits_batch = True
    what: ClassVar[str] = "squared"  # the name in messages

    def check_targets(self, y, output_shape):
        if y.dtype.kind not in "fiu":
            raise DataError(f"{self.what} loss needs numeric targets, got dtype {y.dtype}")
        want = tuple(output_shape)
        got = tuple(y.shape[1:])
        if got != want and not (want == (1,) and got == ()):
            raise DataError(
                f"{self.what} loss targets must have shape {want} per example to match the "
                f"model's output, got {got}"
            )

    def forward(self, h, y):
        self._d = h - y.reshape(h.shape).astype(h.dtype, copy=False)
        self._n = h.shape[0]
        return float(0.5 * np.sum(self._d * self._d) / self._n)

    def backward(self):
        return self._d / self._n

    def trace_equations(self):
        return ("J = (1/N) Σₙ ½‖hₙ − yₙ‖²", "∂J/∂h = (h − y) / N")


@losses.register("mse", "MSELoss", "mean_squared_error")
class MSE(Squared):
    """J = (1/(N·D)) Σ_n ‖h_n − y_n‖², the mean over every element of the batch: exactly PyTorch's
    ``nn.MSELoss()`` (and Keras' ``mse``). D is the number of outputs per example.

    ∂J/∂h = 2 (h − y) / (N·D). For one output per example it is twice ``squared``.
    """

    notes_name = ""
    what = "mse"

    def forward(self, h, y):
        self._d = h - y.reshape(h.shape).astype(h.dtype, copy=False)
        self._n = self._d.size
        return float(np.sum(self._d * self._d) / max(self._n, 1))

    def backward(self):
        return (2.0 / max(self._n, 1)) * self._d

    def trace_equations(self):
        return ("J = (1/(N·D)) Σₙ ‖hₙ − yₙ‖²", "∂J/∂h = 2 (h − y) / (N·D)")
