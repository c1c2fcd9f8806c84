"""`inspect --time`: per-module forward and backward milliseconds, like `caffe time`.

Every module (nested ones too) is timed by forward/backward hooks (``nncli.core.hooks.watch``, which
reads ``time.perf_counter`` around each call); we report the median over ``repeats`` batches after ``warmup`` untimed ones. A container's time
includes its body, so shares are taken against the sum over top-level modules plus the loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from nncli.core.hooks import watch


@dataclass
class TimeRow:
    name: str
    depth: int
    type: str
    forward_ms: float
    backward_ms: float
    share: float  # of the total forward + backward time of one step

    def to_dict(self) -> dict:
        return asdict(self)


def profile_chain(
    chain, x: np.ndarray, y: np.ndarray | None, *, repeats: int = 5, warmup: int = 1
) -> tuple[list[TimeRow], float]:
    """Time each module on batch ``x`` (targets ``y`` for the loss, if any); rows and total ms."""
    names = [(n, m) for n, m in chain.named_modules()]
    fwd: dict[str, list[float]] = {n: [] for n, _ in names}
    bwd: dict[str, list[float]] = {n: [] for n, _ in names}
    loss_ms = []

    def step(record: bool):
        seen_f: dict[str, float] = {}
        seen_b: dict[str, float] = {}

        def on_f(n, m, z, u, t):
            seen_f[n] = seen_f.get(n, 0.0) + t

        def on_b(n, m, v, dz, t):
            seen_b[n] = seen_b.get(n, 0.0) + t

        chain.zero_grads()
        with watch(chain, on_f, on_b):
            h = chain.forward(x)
            t0 = _now()
            if chain.loss is not None and y is not None:
                chain.loss.forward(h, y)
                t1 = _now()
                v = chain.loss.backward()
            else:
                t1 = _now()
                v = np.ones_like(h)
            t_loss = (t1 - t0, _now() - t1)
            chain.backward(v)
        if record:
            for n, _ in names:
                fwd[n].append(seen_f.get(n, 0.0))
                bwd[n].append(seen_b.get(n, 0.0))
            loss_ms.append(t_loss)

    for _ in range(max(0, warmup)):
        step(False)
    for _ in range(max(1, repeats)):
        step(True)

    med = {n: (1e3 * float(np.median(fwd[n])), 1e3 * float(np.median(bwd[n]))) for n, _ in names}
    loss_f = 1e3 * float(np.median([t[0] for t in loss_ms]))
    loss_b = 1e3 * float(np.median([t[1] for t in loss_ms]))
    total = sum(f + b for n, (f, b) in med.items() if "." not in n) + loss_f + loss_b
    rows = [
        TimeRow(
            n,
            n.count(".") // 2,
            m.label(),
            med[n][0],
            med[n][1],
            (med[n][0] + med[n][1]) / total if total > 0 else 0.0,
        )
        for n, m in names
    ]
    if chain.loss is not None and y is not None:
        rows.append(
            TimeRow(
                "loss",
                0,
                chain.loss.label(),
                loss_f,
                loss_b,
                (loss_f + loss_b) / total if total > 0 else 0.0,
            )
        )
    return rows, total


def _now() -> float:
    import time

    return time.perf_counter()
