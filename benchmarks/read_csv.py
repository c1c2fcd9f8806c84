"""Reading a large numeric CSV: nncli (each engine) against numpy.loadtxt and pandas.

    python benchmarks/read_csv.py                      # 200,000 rows × 51 columns, 3 repeats
    python benchmarks/read_csv.py --rows 20000 --repeats 1

Generates (once, in a temporary folder) a CSV of ``rows`` × 51 numbers written with numpy's
``%.6g`` (50 features, the last column a class label 0–9), then reads it in a fresh process per
measurement, the methods alternating, and prints for each the median wall time and the median peak
memory: the process's peak resident size minus its size just before the read (the libraries are
imported and each method reads a two-line file first, so one-time set-up is not counted). Methods:

- ``nncli <engine>``: ``nncli.training.userdata.load_arrays`` as training reads a file — x float64
  (N, 50) and y (N,);
- ``nncli reader <engine> float32``: the reader alone, every column into one float32 (N, 51) block;
- ``numpy.loadtxt`` to float32, ``pandas.read_csv`` then ``to_numpy(float32)``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = 51

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
method, path = sys.argv[1], Path(sys.argv[2])
engine = method.split()[-1] if method.startswith("nncli") else None
if method.startswith("nncli reader"):
    engine = method.split()[2]
if engine in ("pyarrow", "pandas") or method.startswith("pandas"):
    import pandas, pyarrow, pyarrow.csv  # imported before the baseline, as a user's process has them
from nncli.config.schema import DataConfig
from nncli.training.tables.head import read_head
from nncli.training.tables.read import read_table
from nncli.training.userdata import load_arrays

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()

def read(path):
    if method.startswith("nncli reader"):
        head = read_head(path, True, str(path))
        return read_table(path, head, numeric=list(range(head.width)), text=[], where=str(path),
                          engine=engine, dtype=np.float32).block
    if method.startswith("nncli"):
        return load_arrays(path, DataConfig(source=str(path), engine=engine), "class")[0]
    if method == "numpy.loadtxt":
        return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    return pandas.read_csv(path).to_numpy(dtype=np.float32)

# a two-line file first: each library's one-time set-up (thread pools, parsers) is not counted
tiny = path.with_name("tiny.csv")
tiny.write_text(open(path).readline() + ",".join(["1"] * len(open(path).readline().split(","))) + "\n")
read(tiny)
base = rss()
t0 = time.perf_counter()
out = read(path)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_mb": (peak - base) / 1e6, "shape": list(out.shape),
                  "dtype": str(out.dtype), "checksum": float(np.asarray(out, dtype=np.float64).sum())}))
"""

METHODS = [
    "nncli python",
    "nncli pandas",
    "nncli pyarrow",
    "nncli reader python float32",
    "nncli reader pandas float32",
    "nncli reader pyarrow float32",
    "numpy.loadtxt",
    "pandas.read_csv",
]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    header = ",".join([f"f{i}" for i in range(COLUMNS - 1)] + ["label"])
    with open(path, "w") as fh:
        fh.write(header + "\n")
        for lo in range(0, rows, 20000):
            n = min(20000, rows - lo)
            block = np.column_stack([rng.normal(size=(n, COLUMNS - 1)), rng.integers(0, 10, size=n)])
            np.savetxt(fh, block, delimiter=",", fmt=["%.6g"] * (COLUMNS - 1) + ["%d"])


def measure(method: str, path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(path)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=METHODS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "numbers.csv"
        t0 = time.perf_counter()
        generate(path, args.rows)
        size = path.stat().st_size
        print(
            f"{args.rows:,} rows × {COLUMNS} columns, {size / 1e6:.1f} MB (written in {time.perf_counter() - t0:.1f} s)"
        )
        print(
            f"final arrays: float32 {args.rows * COLUMNS * 4 / 1e6:.1f} MB, float64 x {args.rows * 50 * 8 / 1e6:.1f} MB"
        )
        print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
        results: dict[str, list[dict]] = {m: [] for m in args.methods}
        for _ in range(args.repeats):
            for m in args.methods:  # alternating, so a load spike hits every method alike
                results[m].append(measure(m, path))
        sums = {m: r[0]["checksum"] for m, r in results.items()}
        ref = results.get("numpy.loadtxt") or next(iter(results.values()))
        base_time = statistics.median(r["seconds"] for r in ref)
        print(f"{'method':32} {'time s':>8} {'× loadtxt':>10} {'peak MB':>9}  result")
        for m, runs in results.items():
            t = statistics.median(r["seconds"] for r in runs)
            mem = statistics.median(r["peak_mb"] for r in runs)
            r0 = runs[0]
            print(f"{m:32} {t:8.2f} {t / base_time:10.2f} {mem:9.0f}  {tuple(r0['shape'])} {r0['dtype']}")
        print("checksums:", {m: round(v, 1) for m, v in sums.items()})


if __name__ == "__main__":
    main()
