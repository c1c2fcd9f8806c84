"""nncli against PyTorch: speed (median ms, ratio) and peak memory of the same float32 work.

    python benchmarks/bench.py [--repeats 7] [--blocks 3] [--quick] [--only mlp,conv2d,...]
                               [--e2e-steps 1000] [--unset-openblas-env] [--no-memory] [--json out.json]

Each library runs in its own worker process (this script again, with ``--worker nncli|torch``), in
blocks that alternate nncli, torch, nncli, torch, …, so that numpy's OpenBLAS threads and PyTorch's
OpenMP threads never spin against each other. PyTorch gets as many threads as numpy's BLAS has.
Workloads: see ``specs.py``; ``e2e`` is ``nncli train configs/mnist1d_cnn.yaml`` against a torch loop.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import OPENBLAS_ENV, cpu_model, numpy_blas_threads, openblas_env  # noqa: E402
from report import print_report  # noqa: E402
from specs import ORDER  # noqa: E402

ALL = ORDER + ["e2e"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats per block and library")
    ap.add_argument("--blocks", type=int, default=3, help="alternating nncli/torch blocks")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and steps (a smoke run)")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument(
        "--min-time", type=float, default=0.05, help="seconds per timed repeat (loops short steps)"
    )
    ap.add_argument("--e2e-steps", type=int, default=1000, help="training steps of the end-to-end run")
    ap.add_argument(
        "--unset-openblas-env",
        action="store_true",
        help="unset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the worker processes only",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for both libraries (default: as many as numpy's BLAS has)",
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    ap.add_argument("--json", help="also write the raw results to this file")
    # internal: run as a worker
    ap.add_argument("--worker", choices=["nncli", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--task", default="time", choices=["time", "memory", "e2e"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.blocks = min(args.repeats, 3), min(args.blocks, 2)
        args.min_time, args.e2e_steps = 0.02, min(args.e2e_steps, 200)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {ALL}")
    args.names = names
    return args


def worker_env(args, memory: bool = False) -> dict:
    env = dict(os.environ)
    if memory:
        # fixed mmap threshold: arrays ≥ 64 kB are separate mappings, unmapped on free (RSS sees them)
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    if args.threads:
        env["OPENBLAS_NUM_THREADS"] = str(args.threads)  # for the `nncli train` subprocess
    if args.unset_openblas_env:
        for k in OPENBLAS_ENV:
            env.pop(k, None)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spawn(args, lib: str, task: str, names: list[str], threads: int, repeats: int = 1, steps: int = 0):
    """Run one worker process; its JSON result, or {"error": ...} when it died."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            lib,
            "--task",
            task,
            "--only",
            ",".join(names),
            "--repeats",
            str(repeats),
            "--min-time",
            str(args.min_time),
            "--threads",
            str(threads),
            "--steps",
            str(steps),
            "--out",
            out,
        ]
        proc = subprocess.run(
            cmd, env=worker_env(args, memory=task == "memory"), capture_output=True, text=True
        )
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"{lib} worker exited {proc.returncode}: " + " | ".join(tail)}
        with open(out) as f:
            return json.load(f)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args) -> dict:
    import e2e

    threads = args.threads or numpy_blas_threads()
    load = os.getloadavg()
    facts = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_before": load,
        "threads": threads,
        "openblas_env": openblas_env(),
        "unset_openblas_env": args.unset_openblas_env,
    }
    kernels = [n for n in args.names if n != "e2e"]
    # `nncli train` runs its BLAS on 1 thread unless told otherwise (small models are fastest so);
    # the end-to-end pair uses --threads when given, else that default, for both libraries
    e2e_threads = args.threads or 1
    facts["e2e_threads"] = e2e_threads
    timing = {"nncli": [], "torch": []}
    e2e_runs = {"nncli": [], "torch": []}
    for b in range(args.blocks):
        for lib in ("nncli", "torch"):
            if kernels:
                progress(f"block {b + 1}/{args.blocks}: {lib} kernels")
                timing[lib].append(spawn(args, lib, "time", kernels, threads, args.repeats))
            if "e2e" in args.names:
                progress(f"block {b + 1}/{args.blocks}: {lib} end to end, {args.e2e_steps} steps")
                e2e_runs[lib].append(_e2e_once(args, lib, e2e_threads, e2e))
    memory = {"nncli": {}, "torch": {}}
    if not args.no_memory:
        for name in kernels:
            for lib in ("nncli", "torch"):
                progress(f"memory: {lib} {name}")
                r = spawn(args, lib, "memory", [name], threads)
                memory[lib][name] = r.get("memory", {}).get(name, {"error": r.get("error")})
    return {
        "facts": facts,
        "timing": timing,
        "e2e": e2e_runs,
        "memory": memory,
        "names": args.names,
        "e2e_steps": args.e2e_steps,
    }


def _e2e_once(args, lib, threads, e2e):
    if lib == "nncli":
        try:
            return e2e.run_nncli(args.e2e_steps, worker_env(args), threads)
        except e2e.Unavailable as exc:
            return {"unavailable": str(exc)}
    r = spawn(args, "torch", "e2e", ["e2e"], threads, repeats=1, steps=args.e2e_steps)
    if "error" in r:
        return r
    out = r["e2e"]
    return out[0] if isinstance(out, list) else out


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        import worker

        worker.main(
            args.worker,
            args.task,
            args.names,
            args.repeats,
            args.min_time,
            args.threads,
            args.out,
            args.steps,
        )
        return
    results = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print_report(results)


if __name__ == "__main__":
    main()
