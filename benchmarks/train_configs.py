"""``nncli train`` on every shipped config, this checkout against another one, alternating.

    python benchmarks/train_configs.py --against ../nncli-old [--steps 300] [--rounds 3] [--threads 1]
                                       [--configs mnist1d_cnn digits_cnn]

Each round runs, for every config, ``python -m nncli train CONFIG --threads T --quiet --set
train.steps=S --set train.eval_every=S --set train.log_every=S`` (with ``--steps 0``: the config's own
step budget and evaluations, where slowdowns late in training show) once with this checkout's nncli and
once with the other's (``PYTHONPATH`` set to each tree; the order alternates between rounds), in a fresh
runs folder. It prints the median training-phase seconds per step as the runs record them
(``summary.json``'s ``wall_time`` over the steps), the process's whole wall time (imports and data
loading included) and the ratio this/other. Nothing is asserted: it is the check that the shipped
configs do not get slower end to end.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(tree: str, config: str, steps: int, threads: int) -> tuple[float, float]:
    """(training seconds per step, process wall seconds) of one ``nncli train`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": tree}
    with tempfile.TemporaryDirectory() as runs:
        cmd = [sys.executable, "-m", "nncli", "train", config, "--threads", str(threads), "--quiet"]
        cmd += ["--runs-dir", runs]
        for key in ("steps", "eval_every", "log_every") if steps else ():
            cmd += ["--set", f"train.{key}={steps}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=runs)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(
                f"{tree}: {os.path.basename(config)} exited {proc.returncode}: {proc.stderr[-400:]}"
            )
        (summary,) = glob.glob(os.path.join(runs, "*", "summary.json"))
        with open(summary) as f:
            s = json.load(f)
    return s["wall_time"] / max(1, s["steps"]), wall


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, help="root of the other nncli checkout")
    ap.add_argument("--steps", type=int, default=300, help="0: each config's own budget")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", nargs="*", help="names under configs/ (default: all)")
    args = ap.parse_args(argv)
    names = args.configs or sorted(
        os.path.basename(p)[:-5] for p in glob.glob(os.path.join(ROOT, "configs", "*.yaml"))
    )
    trees = {"this": ROOT, "other": os.path.abspath(args.against)}
    times: dict = {(n, t): [] for n in names for t in trees}
    for r in range(args.rounds):
        order = list(trees) if r % 2 == 0 else list(trees)[::-1]
        for name in names:
            for t in order:
                config = os.path.join(ROOT, "configs", f"{name}.yaml")
                times[(name, t)].append(run_once(trees[t], config, args.steps, args.threads))
    print(
        f"{args.rounds} rounds, {args.steps or 'each config’s own'} steps, {args.threads} thread(s); "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'config':28} {'this ms/step':>12} {'other ms/step':>13} {'ratio':>6} {'this s':>7} {'other s':>7}"
    )
    for name in names:
        step = {t: statistics.median(x[0] for x in times[(name, t)]) * 1e3 for t in trees}
        wall = {t: statistics.median(x[1] for x in times[(name, t)]) for t in trees}
        print(
            f"{name:28} {step['this']:12.3f} {step['other']:13.3f} {step['this'] / step['other']:6.2f}"
            f" {wall['this']:7.2f} {wall['other']:7.2f}"
        )


if __name__ == "__main__":
    main()
