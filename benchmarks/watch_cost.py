"""What ``train.watch`` costs per training step, on the shipped configs.

    python benchmarks/watch_cost.py                                 # every configs/*.yaml
    python benchmarks/watch_cost.py --configs digits_mlp mnist1d_cnn --steps 400 --rounds 5

Every step is timed on its own, from the loop's ``on_step_begin`` to the end of its ``on_step``
callbacks: forward, loss, backward, update and, on a watched step, hooking, measuring and writing the
record (a real watch.jsonl in a temporary folder). Each round trains ``--steps`` steps twice in one
process, alternating, with one BLAS thread as ``nncli train``: without watch, and with
``watch: {every: 10}``. On a shared machine whose load drifts over seconds, comparing whole runs
says little about a cost of a few per cent; comparing steps of the same run does. So:

    plain      median step of the runs without watch
    unwatched  median of the steps between records in the watched runs (no hook: should be plain)
    watched    median of the recorded steps; record = watched − unwatched, the cost of one record
    N=50       record / (50 · plain): the overhead of ``watch: {every: 50}`` on a step, amortised

and, as a check, ``whole`` = (total step time of the watched runs / that of the plain runs − 1),
the measured overhead at N = 10, noisy on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nncli.runs.folder.watch_log import WatchRecorder  # noqa: E402
from nncli.runs.session.prepare import prepare  # noqa: E402
from nncli.training.watch import watched  # noqa: E402

EVERY = 10


class StepClock:
    """Each step's seconds, from ``on_step_begin`` to the end of ``on_step`` (appended last, so the
    watch record is inside)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, trainer) -> None:
        self._t0 = time.perf_counter()

    def on_step(self, trainer) -> None:
        self.seconds.append(time.perf_counter() - self._t0)


def step_times(config: Path, steps: int, every: int | None, folder: Path) -> list[float]:
    """Milliseconds of each of ``steps`` training steps of ``config`` (watched every ``every``)."""
    session = prepare(
        config, [f"train.steps={steps}", f"train.eval_every={10 * steps}", "train.log_every=50"]
    )
    trainer = session.trainer
    if every is not None:
        trainer.callbacks.append(WatchRecorder(folder, every))
    clock = StepClock()
    trainer.callbacks.append(clock)
    trainer.run()
    if every is not None:
        (folder / "watch.jsonl").unlink()
    return [1000 * s for s in clock.seconds]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="*", help="config names in configs/ (default: all)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    names = args.configs or sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # as nncli train (--threads 1 by default)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    head = ("config", "plain ms", "unwatched", "watched", "record ms", "N=50", "whole N=10")
    print(f"{head[0]:24}" + "".join(f"{h:>11}" for h in head[1:]))
    for name in names:
        config = ROOT / "configs" / f"{name}.yaml"
        plain: list[float] = []
        unwatched: list[float] = []
        recorded: list[float] = []
        total_plain = total_watched = 0.0
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                off = step_times(config, args.steps, None, Path(tmp))
                on = step_times(config, args.steps, EVERY, Path(tmp))
                plain += off
                total_plain += sum(off)
                total_watched += sum(on)
                for step, ms in enumerate(on, 1):
                    (recorded if watched(step, EVERY) else unwatched).append(ms)
        p, u, w = (statistics.median(v) for v in (plain, unwatched, recorded))
        print(
            f"{name:24}{p:11.3f}{u:11.3f}{w:11.3f}{w - u:11.3f}{(w - u) / (50 * p):11.1%}"
            f"{total_watched / total_plain - 1:+11.1%}",
            flush=True,
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
