"""nncli against PyTorch and JAX: speed (median ms, ratios), roofline and peak memory of the same
float32 work.

    python benchmarks/bench.py [--repeats 7] [--blocks 3] [--quick] [--only mlp,conv2d,...]
                               [--libs nncli,torch,jax] [--e2e-steps 1000] [--unset-openblas-env]
                               [--no-memory] [--json out.json]

Each library runs in its own worker process (this script again, with ``--worker nncli|torch|jax``),
in blocks that alternate nncli, torch, jax, nncli, …, so that numpy's OpenBLAS threads, PyTorch's
OpenMP threads and XLA's pool never spin against each other. PyTorch and XLA get as many threads as
numpy's BLAS has. JAX (``jax.jit`` over each whole step) is optional: without it installed the column
says so. Workloads: see ``specs.py``; ``e2e`` is ``nncli train configs/mnist1d_cnn.yaml`` against the
same loop in PyTorch (and in JAX).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import OPENBLAS_ENV, cpu_model, numpy_blas_threads, openblas_env  # noqa: E402
from report import print_report  # noqa: E402
from specs import ORDER  # noqa: E402

ALL = ORDER + ["e2e"]
LIBS = ("nncli", "torch", "jax")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed repeats per block and library")
    ap.add_argument("--blocks", type=int, default=3, help="alternating nncli/torch blocks")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and steps (a smoke run)")
    ap.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument(
        "--min-time", type=float, default=0.05, help="seconds per timed repeat (loops short steps)"
    )
    ap.add_argument(
        "--libs", default=",".join(LIBS), help="comma-separated libraries to run (nncli is always run)"
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
    ap.add_argument("--worker", choices=list(LIBS), help=argparse.SUPPRESS)
    ap.add_argument(
        "--task", default="time", choices=["time", "memory", "e2e", "peak"], help=argparse.SUPPRESS
    )
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
    libs = ["nncli"] + [x.strip() for x in args.libs.split(",") if x.strip() and x.strip() != "nncli"]
    bad = [x for x in libs if x not in LIBS]
    if bad:
        ap.error(f"unknown librar(ies) {bad}; choose from {list(LIBS)}")
    args.libs = libs
    return args


def worker_env(args, memory: bool = False) -> dict:
    env = dict(os.environ)
    if memory:
        # fixed mmap threshold: arrays ≥ 64 kB are separate mappings, unmapped on free (RSS sees them)
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
        # a split batch's second half on a thread, not in a worker process, whose arrays neither
        # tracemalloc nor this process's RSS would see: the same arrays, all counted
        env["NNCLI_SPLIT"] = "threads"
    if args.threads:
        env["OPENBLAS_NUM_THREADS"] = str(args.threads)  # for the `nncli train` subprocess
    if args.unset_openblas_env:
        for k in OPENBLAS_ENV:
            env.pop(k, None)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    if getattr(args, "jax_cache", None):
        env["NNCLI_BENCH_JAX_CACHE"] = args.jax_cache  # compiled JAX steps shared by the blocks
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


def missing_libs(libs: list[str]) -> dict[str, str]:
    """The requested libraries that are not installed, with what to install."""
    hint = {"torch": "pip install 'nncli[torch]'", "jax": "pip install 'nncli[bench]'"}
    return {
        lib: f"{lib} is not installed ({hint[lib]})"
        for lib in libs
        if lib != "nncli" and importlib.util.find_spec(lib) is None
    }


def run(args) -> dict:
    import e2e

    threads = args.threads or numpy_blas_threads()
    load = os.getloadavg()
    missing = missing_libs(args.libs)
    args.jax_cache = tempfile.mkdtemp(prefix="nncli-bench-jax-")  # this run's own, never shared
    libs = [lib for lib in args.libs if lib not in missing]
    facts = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_before": load,
        "threads": threads,
        "openblas_env": openblas_env(),
        "unset_openblas_env": args.unset_openblas_env,
        "libs": libs,
        "missing": missing,
    }
    progress("SGEMM peak (numpy float32 1024×1024 products, in a worker: the workers' OpenBLAS kernel)")
    peak_before, facts["probes"] = _peaks(args, threads)
    kernels = [n for n in args.names if n != "e2e"]
    # `nncli train` runs its BLAS on 1 thread unless told otherwise (small models are fastest so);
    # the end-to-end rows use --threads when given, else that default, for every library
    e2e_threads = args.threads or 1
    facts["e2e_threads"] = e2e_threads
    timing: dict[str, list] = {lib: [] for lib in LIBS}
    e2e_runs: dict[str, list] = {lib: [] for lib in LIBS}
    for b in range(args.blocks):
        for lib in libs:
            if kernels:
                progress(f"block {b + 1}/{args.blocks}: {lib} kernels")
                timing[lib].append(spawn(args, lib, "time", kernels, threads, args.repeats))
            if "e2e" in args.names:
                progress(f"block {b + 1}/{args.blocks}: {lib} end to end, {args.e2e_steps} steps")
                e2e_runs[lib].append(_e2e_once(args, lib, e2e_threads, e2e))
    # the peak again at the end: on a shared machine the better of the two is the closer to the truth
    peak_after, _ = _peaks(args, threads)
    facts["sgemm_peak_gflops"] = {k: max(peak_before.get(k, 0.0), v) for k, v in peak_after.items()}
    facts["loadavg_after"] = os.getloadavg()
    shutil.rmtree(args.jax_cache, ignore_errors=True)
    memory: dict[str, dict] = {"nncli": {}, "torch": {}}
    if not args.no_memory:
        for name in kernels:
            for lib in [x for x in ("nncli", "torch") if x in libs]:
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


def _peaks(args, threads: int) -> tuple[dict[str, float], dict]:
    """numpy's SGEMM GFLOP/s on 1 and on ``threads`` threads, and the machine probes (``probes.py``),
    measured in a worker process (whose environment, e.g. without OPENBLAS_CORETYPE, selects the same
    OpenBLAS kernel as the workloads')."""
    r = spawn(args, "nncli", "peak", [], threads)
    return r.get("peak", {}), r.get("probes", {})


def _e2e_once(args, lib, threads, e2e):
    if lib == "nncli":
        try:
            return e2e.run_nncli(args.e2e_steps, worker_env(args), threads)
        except e2e.Unavailable as exc:
            return {"unavailable": str(exc)}
    r = spawn(args, lib, "e2e", ["e2e"], threads, repeats=1, steps=args.e2e_steps)
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
