"""What the metrics cost at an evaluation: the loss and accuracy alone (the default) against every
classifier metric at once, on the same model and split, alternated in one process; medians.

    python benchmarks/eval_metrics.py [--n 10000] [--classes 10] [--repeats 15]

Prints the median time of one evaluation each way and their ratio, then the metrics alone on given
outputs, nncli's and (when installed) scikit-learn's, a reference rather than a target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from nncli.config.build import build_chain
from nncli.config.load import config_from_dict
from nncli.training.evaluation import evaluate, metric_values

ALL = ("acc", "top5", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro", "roc_auc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="examples in the split")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    cfg = config_from_dict(
        {
            "model": {
                "input_shape": [args.features],
                "layers": [{"type": "MM", "out": 256}, {"type": "ReLU"}, {"type": "MM", "out": args.classes}],
            },
            "loss": "cross_entropy",
        }
    ).config
    chain = build_chain(cfg)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.features)).astype(np.float32)
    y = rng.integers(0, args.classes, args.n)
    metrics = (*ALL, "confusion_matrix")
    times: dict[str, list[float]] = {"default": [], "all": []}
    for _ in range(args.repeats):  # alternated, so drifting load hits both alike
        for name, names in (("default", None), ("all", metrics)):
            t0 = time.perf_counter()
            evaluate(chain, chain.loss, x, y, True, names)
            times[name].append(time.perf_counter() - t0)
    base, full = statistics.median(times["default"]), statistics.median(times["all"])
    print(f"load average {os.getloadavg()[0]:.1f}; split {args.n} × {args.features}, {args.classes} classes")
    print(f"loss + acc (default)           {base * 1e3:8.2f} ms (median of {args.repeats})")
    print(f"loss + {len(metrics)} metrics            {full * 1e3:8.2f} ms   ratio {full / base:.2f}")
    try:
        import sklearn.metrics as skm
    except ImportError:
        return
    chain.eval()
    h = chain.forward(x).astype(np.float64)
    p = np.exp(h - h.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = list(range(args.classes))
    ours, sk = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        metric_values(metrics, h, y, "class")
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pred = h.argmax(axis=1)
        skm.accuracy_score(y, pred)
        skm.top_k_accuracy_score(y, h, k=5, labels=labels)
        for avg in ("macro", "micro", "weighted"):
            skm.f1_score(y, pred, average=avg, labels=labels, zero_division=0)
        skm.precision_score(y, pred, average="macro", labels=labels, zero_division=0)
        skm.recall_score(y, pred, average="macro", labels=labels, zero_division=0)
        skm.roc_auc_score(y, p, multi_class="ovr", labels=labels)
        skm.confusion_matrix(y, pred, labels=labels)
        sk.append(time.perf_counter() - t0)
    mine, theirs = statistics.median(ours), statistics.median(sk)
    print(f"the metrics alone (outputs given): nncli {mine * 1e3:.2f} ms, scikit-learn {theirs * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
