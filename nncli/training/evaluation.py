"""Scoring a chain on a split: the mean loss and the metrics a run asked for (``nncli.training.metrics``).

The loss is averaged batch by batch; the other metrics need every output at once (ranks for ROC-AUC,
column means for R²), so the outputs h (N, *output_shape) are gathered only when one is asked for.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nncli.core.kernels import denormals
from nncli.training.metric_fns.accuracy import accuracy, top_k_accuracy
from nncli.training.metric_fns.confusion import confusion_matrix
from nncli.training.metric_fns.prf import averaged
from nncli.training.metric_fns.regression import mae, mse, r2, rmse
from nncli.training.metric_fns.roc_auc import binary_roc_auc, ovr_roc_auc
from nncli.training.metrics import top_k

EVAL_BATCH = 1024
_REGRESSION = {"mae": mae, "mse": mse, "rmse": rmse, "r2": r2}


def evaluate(
    chain, loss, x: np.ndarray, y: np.ndarray, classifier: bool, metrics: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """``{"loss": mean loss, <metric>: value, ...}`` of ``chain`` on (x, y), batched, in eval mode.

    ``metrics`` are canonical names (``nncli.training.metrics.resolve``); None: accuracy for a
    classifier. A confusion matrix is a list of lists (JSON-ready); the rest are floats.
    """
    if metrics is None:
        metrics = ("acc",) if classifier else ()
    gather = any(m != "acc" for m in metrics)
    was_training = chain.training
    chain.eval()
    total, correct, n, weight = 0.0, 0.0, len(x), 0.0
    outputs = []
    # subnormals flushed as in training (``kernels.denormals``), so that ``nncli eval`` gives the
    # numbers training logged
    try:
        with denormals.flushing():
            for i in range(0, n, EVAL_BATCH):
                xb, yb = x[i : i + EVAL_BATCH], y[i : i + EVAL_BATCH]
                h = chain.forward(xb)
                w = loss.batch_weight(yb)  # a weighted mean's denominator (class weights), else the size
                total += loss.forward(h, yb) * w
                weight += w
                if "acc" in metrics:
                    correct += loss.metrics(h, yb).get("correct", 0.0)
                if gather:
                    outputs.append(np.array(h, dtype=np.float64))  # a copy: forward may reuse its buffer
    finally:
        chain.train(was_training)
    out: dict[str, Any] = {"loss": total / weight if n else math.nan}
    if "acc" in metrics:
        out["acc"] = correct / n if n else math.nan
    if gather:
        h_all = np.concatenate(outputs) if outputs else np.empty((0, *chain.output_shape()))
        values = metric_values(
            [m for m in metrics if m != "acc"], h_all, np.asarray(y), getattr(loss, "target_kind", "real")
        )
        out.update(values)
    return {m: out[m] for m in ("loss", *metrics)}


def metric_values(metrics, h: np.ndarray, y: np.ndarray, target_kind: str) -> dict[str, Any]:
    """Each of ``metrics`` for outputs ``h`` and targets ``y`` of a loss with ``target_kind``:
    logits (N, C) and labels for ``class``, one logit per example and 0/1 labels for ``binary``,
    values shaped like h for ``real``."""
    if target_kind == "real":
        return {m: _REGRESSION[m](h, y) for m in metrics}
    labels = np.rint(np.asarray(y, dtype=np.float64)).astype(np.intp).reshape(len(h))
    if target_kind == "binary":
        logit = h.reshape(len(h))
        scores = np.stack([-logit, logit], axis=1)  # softmax of these two is (1 − σ(h), σ(h))
    else:
        scores = h if h.ndim == 2 else h.reshape(len(h), -1)
    classes = scores.shape[1]
    pred = (logit > 0).astype(np.intp) if target_kind == "binary" else scores.argmax(axis=1)
    cm = confusion_matrix(labels, pred, classes)
    out: dict[str, Any] = {}
    for m in metrics:
        k = top_k(m)
        if m == "acc":
            out[m] = accuracy(pred, labels)
        elif k is not None:
            out[m] = top_k_accuracy(scores, labels, k)
        elif m == "confusion_matrix":
            out[m] = cm.tolist()
        elif m == "roc_auc":
            out[m] = _roc_auc(scores, labels)
        else:
            kind, _, average = m.partition("_")
            out[m] = averaged(cm, kind, average or "binary") if len(labels) else math.nan
    return out


def _roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Binary AUC of class 1's score for two classes, else the one-vs-rest macro AUC of the softmax."""
    if scores.shape[1] == 2:
        return binary_roc_auc(labels == 1, scores[:, 1] - scores[:, 0])
    z = scores - scores.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return ovr_roc_auc(labels, p)
