"""The summary tables of docs/performance.md and the README from two saved runs of ``bench.py``.

    python benchmarks/bench.py --threads 1 --json t1.json
    python benchmarks/bench.py --threads 2 --json t2.json
    python benchmarks/summary.py t1.json t2.json

Prints Markdown: per workload each library's median ms/step at 1 and 2 threads, the ratios of
nncli's better time to PyTorch's better time and to JAX's (each library at its own better thread
count), whether the target is met, and the roofline line (FLOPs per step, nncli's GFLOP/s at its
better setting against the SGEMM peak measured on that many threads).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import median, spread
from report import _gather
from specs import ORDER, SPECS, TARGETS, digits_spec

LIBS = ("nncli", "torch", "jax")


def _times(res: dict, lib: str, name: str) -> list[float]:
    """Seconds per step of every repeat of ``name`` by ``lib`` in one run (e2e: per step)."""
    if name == "e2e":
        steps = res["e2e_steps"]
        return [r["seconds"] / steps for r in res["e2e"].get(lib, []) if "seconds" in r]
    return _gather(res["timing"].get(lib, []), name)[0]


def _flops(res: dict, name: str) -> float | None:
    for blk in res["timing"]["nncli"]:
        r = blk.get("results", {}).get(name)
        if r and r.get("flops"):
            return float(r["flops"])
    return None


def _cell(times: list[float]) -> str:
    return f"{median(times) * 1e3:.3f}" if times else "—"


def _best(runs: dict[int, dict], lib: str, name: str) -> tuple[float, int] | None:
    """(median seconds, threads) of ``lib``'s better thread setting for ``name``."""
    got = [(median(t), th) for th, res in runs.items() if (t := _times(res, lib, name))]
    return min(got) if got else None


def summary(runs: dict[int, dict]) -> list[str]:
    names = [n for n in ORDER + ["e2e"] if any(n in r["names"] for r in runs.values())]
    ths = sorted(runs)
    th_label = " / ".join(str(t) for t in ths)
    head = (
        f"| workload | nncli ms ({th_label} thr.) | PyTorch ms | JAX ms | nncli / PyTorch, best / best "
        f"| target | nncli / JAX, best / best | spread (n/t/j) |"
    )
    rows = [head, "|" + "---|" * 8]
    for name in names:
        cells = [" / ".join(_cell(_times(runs[t], lib, name)) for t in ths) for lib in LIBS]
        bn, bt, bj = (_best(runs, lib, name) for lib in LIBS)
        target = TARGETS.get(name, 1.0)
        if bn and bt:
            r = bn[0] / bt[0]
            ratio = f"**{r:.2f}**" if r <= target else f"{r:.2f} — missed"
        else:
            ratio = "not run"
        rj = f"{bn[0] / bj[0]:.2f}" if bn and bj else "—"
        spreads = []
        for lib, best in zip(LIBS, (bn, bt, bj)):
            if best:
                spreads.append(f"{spread(_times(runs[best[1]], lib, name)):.0%}")
        what = "" if name == "e2e" else (digits_spec() if name == "digits_cnn" else SPECS[name])["note"]
        label = f"`{name}` ({what})" if what else f"`{name}` (`nncli train` mnist1d_cnn, per step)"
        rows.append(
            f"| {label} | {cells[0]} | {cells[1]} | {cells[2]} | {ratio} | ≤ {target} | {rj} "
            f"| {'/'.join(spreads)} |"
        )
    return rows


def compact(runs: dict[int, dict]) -> list[str]:
    """The README's table: each library's better median ms and the best / best ratios."""
    rows = [
        "| workload | nncli ms | PyTorch ms | JAX ms | nncli / PyTorch (target ≤ 1) | nncli / JAX |",
        "|" + "---|" * 6,
    ]
    for name in [n for n in ORDER + ["e2e"] if any(n in r["names"] for r in runs.values())]:
        best = [_best(runs, lib, name) for lib in LIBS]
        ms = [f"{b[0] * 1e3:.2f} ({b[1]})" if b else "—" for b in best]
        bn, bt, bj = best
        r = f"{bn[0] / bt[0]:.2f}" if bn and bt else "—"
        if bn and bt and bn[0] / bt[0] > TARGETS.get(name, 1.0):
            r += " (missed)"
        rj = f"{bn[0] / bj[0]:.2f}" if bn and bj else "—"
        rows.append(f"| `{name}` | {ms[0]} | {ms[1]} | {ms[2]} | {r} | {rj} |")
    return rows


def roofline(runs: dict[int, dict]) -> list[str]:
    rows = [
        "| workload | MFLOP / step | nncli GFLOP/s (threads) | PyTorch GFLOP/s | JAX GFLOP/s "
        "| SGEMM peak on those threads | nncli share of peak |",
        "|" + "---|" * 7,
    ]
    for name in [n for n in ORDER if any(n in r["names"] for r in runs.values())]:
        flops = next((f for r in runs.values() if (f := _flops(r, name))), None)
        bn = _best(runs, "nncli", name)
        if not flops or not bn:
            continue
        rates = []
        for lib in LIBS:
            b = _best(runs, lib, name)
            rates.append(f"{flops / b[0] / 1e9:.2f} ({b[1]})" if b else "—")
        peak = runs[bn[1]]["facts"].get("sgemm_peak_gflops", {}).get(str(bn[1]))
        share = f"{flops / bn[0] / 1e9 / peak:.1%}" if peak else "—"
        peak_s = f"{peak:.1f}" if peak else "—"
        rows.append(
            f"| `{name}` | {flops / 1e6:.1f} | {rates[0]} | {rates[1]} | {rates[2]} | {peak_s} | {share} |"
        )
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="JSON files written by bench.py --json")
    args = ap.parse_args(argv)
    runs: dict[int, dict] = {}
    for path in args.runs:
        with open(path) as f:
            res = json.load(f)
        runs[int(res["facts"]["threads"])] = res
    for th, res in sorted(runs.items()):
        f = res["facts"]
        peaks = ", ".join(f"{k} thr. {v:.1f}" for k, v in f.get("sgemm_peak_gflops", {}).items())
        la, lb = f.get("loadavg_after", [float("nan")] * 3), f["loadavg_before"]
        print(
            f"- {th} thread(s): {f['date']}, `{f['command']}`; load average {lb[0]:.2f} before, "
            f"{la[0]:.2f} after; SGEMM peak {peaks} GFLOP/s"
        )
    print()
    print("\n".join(summary(runs)))
    print()
    print("\n".join(roofline(runs)))
    print()
    print("\n".join(compact(runs)))


if __name__ == "__main__":
    main()
