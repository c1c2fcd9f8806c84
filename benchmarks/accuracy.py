"""Test accuracy of the example configs over several seeds, against the published numbers.

    python benchmarks/accuracy.py                                  # 4 configs × seeds 0 1 2, one at a time
    python benchmarks/accuracy.py --configs mnist1d_cnn --seeds 0 1 2 --jobs 2
    python benchmarks/accuracy.py --set train.steps=20 --results /tmp/smoke.md   # a quick smoke run

Each (config, seed) is one real ``nncli train configs/<name>.yaml --set seed=<s> --json`` subprocess,
into ``runs/accuracy-<UTC stamp>/`` (or ``--runs-dir``). The test accuracy reported is the
``test.acc`` of the run's summary.json: the test split scored once, after training, with the weights
the run ended with (the early-stopping best when early stopping fired). For reference the ``best``
checkpoint (by the config's ``train.best_metric`` on validation) is also scored, with ``nncli eval``. Hyper-parameters are chosen
by validation accuracy; the test split is only reported here, never used to choose.

The table (printed, and written into ``docs/results.md`` between the ``accuracy:begin/end`` markers,
so notes around it survive a re-run) has: config, target, test accuracy per seed, mean ± std
(sample std, ddof 1), min, steps, training wall time, and PASS when the mean reaches the target.
All results also go to ``<runs dir>/accuracy.json``. Exit code 1 when a run failed, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results.md"
BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"

#: config name → (target test accuracy, where the target comes from)
TARGETS = {
    "mnist1d_cnn": (0.94, "paper CNN 94 %"),
    "mnist1d_mlp": (0.68, "paper MLP 68 %"),
    "digits_cnn": (0.98, "≥ 98 %"),
    "digits_mlp": (0.96, "≥ 96 %"),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument(
        "--configs",
        nargs="+",
        default=list(TARGETS),
        choices=list(TARGETS),
        metavar="NAME",
        help=f"configs/<NAME>.yaml, of: {' '.join(TARGETS)}",
    )
    p.add_argument(
        "--jobs", type=int, default=1, help="trainings at a time (default 1; each uses one BLAS thread)"
    )
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help="where the run folders go (default: runs/accuracy-<UTC stamp>)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="markdown file to write the table into (default: docs/results.md)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="an override passed to every run (repeatable); for smoke runs",
    )
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be ≥ 1")
    return args


def train_one(name: str, seed: int, runs_dir: Path, overrides: list[str]) -> dict:
    """One ``nncli train`` subprocess; its summary.json plus the process's own wall time."""
    cmd = [
        sys.executable,
        "-m",
        "nncli",
        "train",
        str(ROOT / "configs" / f"{name}.yaml"),
        "--set",
        f"seed={seed}",
        "--runs-dir",
        str(runs_dir),
        "--name",
        f"{name}-s{seed}",
        "--quiet",
        "--json",
        "--threads",
        "1",
    ]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    out = {
        "config": name,
        "seed": seed,
        "returncode": proc.returncode,
        "process_seconds": round(time.perf_counter() - t0, 2),
    }
    try:
        out["summary"] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        lines = proc.stderr.strip().splitlines()
        out["error"] = lines[-1] if lines else f"exit code {proc.returncode}, no output"
        return out
    if out["summary"].get("status") == "completed" and out["summary"].get("best"):
        # the `best` checkpoint (chosen by the config's best_metric on validation) on the test split
        ev = subprocess.run(
            [sys.executable, "-m", "nncli", "eval", out["summary"]["run_dir"], "--json"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        try:
            out["best_checkpoint_test"] = json.loads(ev.stdout)
        except json.JSONDecodeError:
            out["best_checkpoint_test"] = None
    return out


def test_acc(run: dict) -> float | None:
    s = run.get("summary") or {}
    if s.get("status") != "completed":
        return None
    return (s.get("test") or {}).get("acc")


def summarise(name: str, runs: list[dict]) -> dict:
    """One table row: per-seed test accuracies, mean ± std, min, steps, times, verdict."""
    target, source = TARGETS[name]
    accs = [test_acc(r) for r in runs]
    ok = [a for a in accs if a is not None]
    steps = sorted({(r.get("summary") or {}).get("steps") for r in runs} - {None})
    walls = [(r.get("summary") or {}).get("wall_time") for r in runs]
    walls = [w for w in walls if w is not None]
    mean = statistics.fmean(ok) if ok else None
    std = statistics.stdev(ok) if len(ok) > 1 else None
    complete = len(ok) == len(runs)
    return {
        "config": name,
        "target": target,
        "target_source": source,
        "seeds": [r["seed"] for r in runs],
        "test_acc": accs,
        "mean": mean,
        "std": std,
        "min": min(ok) if ok else None,
        "steps": steps,
        "wall_time_mean": statistics.fmean(walls) if walls else None,
        "best_val_acc": [((r.get("summary") or {}).get("best") or {}).get("val_acc") for r in runs],
        "best_ckpt_test_acc": [(r.get("best_checkpoint_test") or {}).get("acc") for r in runs],
        "verdict": ("PASS" if mean >= target else "MISS") if complete and mean is not None else "FAILED",
    }


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}"


def table(rows: list[dict]) -> list[str]:
    """The results as markdown table lines (also readable as plain text)."""
    out = [
        "| config | target | test acc % per seed | mean ± std % | min % | steps | train time / run | result "
        "| `best` checkpoint: test acc % per seed (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_seed = ", ".join(f"{pct(a)} (s{s})" for s, a in zip(r["seeds"], r["test_acc"]))
        spread = (
            "—"
            if r["mean"] is None
            else (f"{pct(r['mean'], 2)} ± {pct(r['std'], 2)}" if r["std"] is not None else pct(r["mean"], 2))
        )
        steps = "/".join(str(s) for s in r["steps"]) or "—"
        wall = "—" if r["wall_time_mean"] is None else f"{r['wall_time_mean']:.0f} s"
        got = [a for a in r["best_ckpt_test_acc"] if a is not None]
        best = ", ".join(pct(a) for a in r["best_ckpt_test_acc"]) + (
            f" ({pct(statistics.fmean(got), 2)})" if got else ""
        )
        out.append(
            f"| {r['config']} | {pct(r['target'], 0)} % ({r['target_source']}) | {per_seed} | "
            f"{spread} | {pct(r['min'])} | {steps} | {wall} | {r['verdict']} | {best} |"
        )
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}, numpy {numpy.__version__}; "
        f"load average at the start {load:.1f}"
    )


def commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "nncli", "configs"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
        return rev + (" (with uncommitted changes to nncli/ or configs/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (so the page holds no local paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def markdown(
    rows: list[dict], command: str, started: str, facts: str, rev: str, runs_dir: Path, minutes: float
) -> str:
    lines = [
        BEGIN,
        "",
        f"Command: `{command}`  ",
        f"Date: {started} (UTC), {minutes:.1f} minutes in all  ",
        f"Machine: {facts}  ",
        f"Code: commit {rev}; run folders in `{_shown(runs_dir)}`",
        "",
        *table(rows),
        "",
        "Test accuracy: `test.acc` of each run's summary.json (the test split scored once, after "
        "training, with the weights the run ended with). Result: PASS when the mean over the "
        "seeds reaches the target; std is the sample standard deviation over seeds. The last "
        "column is, for reference, `nncli eval RUN` on the `best` checkpoint (the evaluation step "
        "with the best `train.best_metric` on the validation split).",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_results(path: Path, block: str) -> None:
    """Replace the marked block in ``path`` (keeping the text around it), or create the file."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + block + ("\n" + tail if tail else "")
    else:
        new = "# Accuracy of the example configs\n\n" + block + ("\n" + old if old else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = datetime.now(timezone.utc)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    runs_dir = (args.runs_dir or ROOT / "runs" / f"accuracy-{stamp}").resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    facts, rev = machine(), commit()
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python benchmarks/accuracy.py", *map(shlex.quote, given)])
    jobs = [(name, seed) for name in args.configs for seed in args.seeds]
    print(f"{len(jobs)} trainings, {args.jobs} at a time, into {runs_dir}", file=sys.stderr)
    t0 = time.perf_counter()

    def run(job):
        r = train_one(*job, runs_dir, args.overrides)
        acc = test_acc(r)
        print(
            f"  {job[0]} seed {job[1]}: "
            + (
                f"test acc {pct(acc, 2)} %, {r['summary']['steps']} steps, {r['summary']['wall_time']:.0f} s"
                if acc is not None
                else f"no test accuracy ({r.get('error') or (r.get('summary') or {}).get('status')})"
            ),
            file=sys.stderr,
            flush=True,
        )
        return r

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, jobs))
    minutes = (time.perf_counter() - t0) / 60
    rows = [summarise(n, [r for r in results if r["config"] == n]) for n in args.configs]

    print("\n".join(table(rows)))
    block = markdown(rows, command, started.strftime("%Y-%m-%d %H:%M"), facts, rev, runs_dir, minutes)
    write_results(args.results, block)
    (runs_dir / "accuracy.json").write_text(
        json.dumps(
            {
                "command": command,
                "date": started.isoformat(),
                "machine": facts,
                "commit": rev,
                "overrides": args.overrides,
                "rows": rows,
                "runs": results,
            },
            indent=1,
        )
    )
    print(f"wrote {args.results} and {runs_dir / 'accuracy.json'}", file=sys.stderr)
    return 1 if any(r["verdict"] == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
