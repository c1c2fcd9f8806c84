"""Every metric of ``nncli.training.metric_fns`` against scikit-learn's implementation, on random data
and on the edge cases: a class never predicted, a class absent, one class only, ties, empty input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

skm = pytest.importorskip(
    "sklearn.metrics", reason="scikit-learn is not installed (pip install 'nncli[test]' brings it)"
)

from nncli.training.evaluation import metric_values  # noqa: E402
from nncli.training.metric_fns.accuracy import accuracy, top_k_accuracy  # noqa: E402
from nncli.training.metric_fns.confusion import confusion_matrix  # noqa: E402
from nncli.training.metric_fns.prf import averaged  # noqa: E402
from nncli.training.metric_fns.regression import mae, mse, r2, rmse  # noqa: E402
from nncli.training.metric_fns.roc_auc import average_ranks, binary_roc_auc, ovr_roc_auc  # noqa: E402

CASES = [(seed, classes, n) for seed in range(4) for classes, n in ((2, 7), (3, 50), (7, 200), (2, 300))]


def softmax(h: np.ndarray) -> np.ndarray:
    z = np.exp(h - h.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def random_classes(seed: int, classes: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (every class present when n allows) and logits that lean toward the true class."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(min(classes, n)), rng.integers(0, classes, n - min(classes, n))])
    rng.shuffle(y)
    h = rng.normal(size=(n, classes))
    h[np.arange(n), y] += rng.uniform(0, 2)
    return y, h


def quiet(fn, *args, **kwargs):
    """scikit-learn's result, its UndefinedMetricWarning silenced (the cases test exactly those)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def assert_averages_match(cm: np.ndarray, y: np.ndarray, pred: np.ndarray, labels: list[int]) -> None:
    """Precision, recall and F1 of ``cm`` under every average equal scikit-learn's for (y, pred)."""
    for average in ("macro", "micro", "weighted"):
        for ours, theirs in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            want = quiet(theirs, y, pred, labels=labels, average=average, zero_division=0)
            assert averaged(cm, ours, average) == pytest.approx(want, abs=1e-12), (ours, average)


@pytest.mark.parametrize("seed,classes,n", CASES)
def test_classification_metrics_match_sklearn(seed, classes, n):
    y, h = random_classes(seed, classes, n)
    pred = h.argmax(axis=1)
    labels = list(range(classes))
    assert accuracy(pred, y) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    cm = confusion_matrix(y, pred, classes)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=labels))
    assert_averages_match(cm, y, pred, labels)
    for k in range(1, classes) if classes > 2 else ():  # scikit-learn takes one score column for two
        want = skm.top_k_accuracy_score(y, h, k=k, labels=labels)
        assert top_k_accuracy(h, y, k) == pytest.approx(want, abs=1e-12), k
    assert top_k_accuracy(h, y, 1) == accuracy(pred, y)
    if classes == 2:
        for ours, theirs in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            want = quiet(theirs, y, pred, average="binary", zero_division=0)
            assert averaged(cm, ours, "binary") == pytest.approx(want, abs=1e-12)
        want = skm.roc_auc_score(y, softmax(h)[:, 1])
        assert binary_roc_auc(y == 1, h[:, 1] - h[:, 0]) == pytest.approx(want, abs=1e-12)
    else:
        want = skm.roc_auc_score(y, softmax(h), multi_class="ovr", average="macro", labels=labels)
        assert ovr_roc_auc(y, softmax(h)) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed,classes,n", CASES)
def test_metric_values_of_logits_match_sklearn(seed, classes, n):
    """The dispatch the trainer uses: cross_entropy logits (N, C), and logistic logits (N, 1)."""
    y, h = random_classes(seed, classes, n)
    names = ["acc", "f1_macro", "precision_weighted", "recall_micro", "roc_auc", "confusion_matrix"]
    got = metric_values(names, h, y, "class")
    probs = softmax(h)
    auc = (
        skm.roc_auc_score(y, probs[:, 1])
        if classes == 2
        else skm.roc_auc_score(y, probs, multi_class="ovr", labels=list(range(classes)))
    )
    pred = h.argmax(axis=1)
    assert got["acc"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["f1_macro"] == pytest.approx(quiet(skm.f1_score, y, pred, average="macro", zero_division=0))
    assert got["roc_auc"] == pytest.approx(auc)
    assert got["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=list(range(classes))).tolist()
    if classes == 2:  # the same problem as one logit per example (logistic loss)
        logit = (h[:, 1] - h[:, 0])[:, None]
        got = metric_values(["acc", "f1", "precision", "recall", "roc_auc"], logit, y.astype(float), "binary")
        pred = (logit[:, 0] > 0).astype(int)
        assert got["acc"] == pytest.approx(skm.accuracy_score(y, pred))
        assert got["f1"] == pytest.approx(quiet(skm.f1_score, y, pred, zero_division=0))
        assert got["precision"] == pytest.approx(quiet(skm.precision_score, y, pred, zero_division=0))
        assert got["recall"] == pytest.approx(skm.recall_score(y, pred))
        assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, 1 / (1 + np.exp(-logit[:, 0]))))


def test_a_class_never_predicted_and_one_never_present():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 0, 0, 2, 2, 0])  # class 1 never predicted; class 3 neither present nor predicted
    labels = [0, 1, 2, 3]
    cm = confusion_matrix(y, pred, 4)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=labels))
    assert cm[3].sum() == 0 and cm[:, 3].sum() == 0 and cm[:, 1].sum() == 0
    assert_averages_match(cm, y, pred, labels)


def test_roc_auc_with_one_class_is_undefined_as_sklearn_says():
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert math.isnan(binary_roc_auc(np.ones(4, bool), s))
    assert math.isnan(binary_roc_auc(np.zeros(4, bool), s))
    assert math.isnan(quiet(skm.roc_auc_score, [1, 1, 1, 1], s))
    # one-vs-rest with a class absent from the labels: that class's AUC, so the mean, is undefined
    y = np.array([0, 1, 0, 1, 0, 1])
    p = softmax(np.random.default_rng(0).normal(size=(6, 3)))
    assert math.isnan(ovr_roc_auc(y, p))
    assert math.isnan(quiet(skm.roc_auc_score, y, p, multi_class="ovr", labels=[0, 1, 2]))
    # a diverged model's NaN scores give an undefined AUC, not a number
    assert math.isnan(binary_roc_auc(np.array([True, False]), np.array([np.nan, 0.0])))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_with_tied_scores_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    y[:2] = [0, 1]
    s = rng.integers(0, 4, 80).astype(float)  # four distinct values: many ties, across the classes
    assert binary_roc_auc(y == 1, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert binary_roc_auc(y == 1, np.zeros(80)) == pytest.approx(0.5)  # all tied: chance


def test_average_ranks_share_tied_ranks():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])


def test_top_k_ties_go_to_the_lower_class_as_argmax_does():
    h = np.zeros((4, 3))  # every score tied: class c ranks c + 1
    y = np.array([0, 1, 2, 2])
    assert top_k_accuracy(h, y, 1) == accuracy(h.argmax(axis=1), y) == 0.25
    assert top_k_accuracy(h, y, 2) == 0.5
    # scikit-learn breaks ties toward the higher index instead; both agree on untied scores (above)
    assert skm.top_k_accuracy_score(y, h, k=1, labels=[0, 1, 2]) == 0.5


@pytest.mark.parametrize("seed,d", [(s, d) for s in range(4) for d in (1, 3)])
def test_regression_metrics_match_sklearn(seed, d):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(60, d)) * [3.0, 0.5, 10.0][:d]
    h = y + rng.normal(size=(60, d))
    assert mae(h, y) == pytest.approx(skm.mean_absolute_error(y, h), rel=1e-12)
    assert mse(h, y) == pytest.approx(skm.mean_squared_error(y, h), rel=1e-12)
    # RMSE over all entries (Keras, torchmetrics); scikit-learn's equals it for one output
    assert rmse(h, y) == pytest.approx(skm.root_mean_squared_error(y.ravel(), h.ravel()), rel=1e-12)
    if d == 1:
        assert rmse(h, y) == pytest.approx(skm.root_mean_squared_error(y, h), rel=1e-12)
    assert r2(h, y) == pytest.approx(skm.r2_score(y, h), rel=1e-12)
    got = metric_values(["mae", "mse", "rmse", "r2"], h.astype(np.float32), y, "real")
    assert got["r2"] == pytest.approx(skm.r2_score(y, h.astype(np.float32)), rel=1e-6)
    if d == 1:  # targets (N,) for outputs (N, 1)
        assert mae(h, y[:, 0]) == pytest.approx(skm.mean_absolute_error(y[:, 0], h[:, 0]))


def test_r2_of_a_constant_target_is_undefined():
    y = np.full((5, 1), 2.0)
    h = np.array([[1.0], [2.0], [3.0], [2.0], [2.0]])
    assert math.isnan(r2(h, y))
    assert not math.isfinite(quiet(skm.r2_score, y, h, force_finite=False))  # -inf there; 0.0 by default
    assert math.isnan(r2(y, y)) and math.isnan(quiet(skm.r2_score, y, y, force_finite=False))
    assert math.isnan(r2(h[:1], y[:1]))  # one example


def test_empty_input_gives_nan_not_a_crash():
    y, h = np.empty(0, int), np.empty((0, 3))
    got = metric_values(["acc", "top2", "f1_macro", "roc_auc", "confusion_matrix"], h, y, "class")
    assert all(math.isnan(got[k]) for k in ("acc", "top2", "f1_macro", "roc_auc"))
    assert got["confusion_matrix"] == [[0] * 3] * 3
    assert all(math.isnan(v) for v in metric_values(["mae", "rmse", "r2"], h, h, "real").values())
