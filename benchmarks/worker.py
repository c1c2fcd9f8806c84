"""One benchmark worker process: times (or measures the memory of) workloads in ONE library.

Run by ``bench.py`` as ``python bench.py --worker nncli|torch|jax --task time|memory ...``; the result
is written as JSON to ``--out``. A worker of one library never imports another, so numpy's OpenBLAS
threads, PyTorch's OpenMP threads and XLA's thread pool never compete for the cores inside one
measurement.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import traceback

from harness import (
    Unavailable,
    blas_pools,
    calibrate,
    flops_per_step,
    numpy_blas_threads,
    peak_rss_bytes,
    reset_peak_rss,
    rss_bytes,
    theoretical_bytes,
    time_repeats,
)


def _maker(lib: str, threads: int, task: str = "time"):
    if lib == "jax":
        import workloads_jax as wj

        wj.configure_threads(threads)  # before jax is imported
        cache = os.environ.get("NNCLI_BENCH_JAX_CACHE")
        if cache and task != "e2e":
            wj.use_compilation_cache(cache)
        return wj.make
    if lib == "torch":
        import torch

        torch.set_num_threads(threads)
        import workloads_torch as w
    else:
        # nncli first, as under `nncli train`: it sets how long OpenBLAS's idle threads spin, which
        # OpenBLAS reads once when numpy loads it (nncli/_process.py); and a memory baseline
        # then includes it
        import nncli  # noqa: F401, I001
        import workloads_nncli as w

        if threads != numpy_blas_threads():
            from threadpoolctl import threadpool_limits

            # kept alive for the life of the worker; numpy's BLAS only (nncli must not start another)
            _maker.limits = threadpool_limits(limits=threads, user_api="blas")
    return w.make


def _versions(lib: str) -> dict:
    import numpy as np

    v = {"numpy": np.__version__, "python": sys.version.split()[0]}
    if lib == "jax":
        import jax

        v["jax"] = jax.__version__
        v["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    elif lib == "torch":
        import torch

        v["torch"] = torch.__version__
        v["torch_threads"] = torch.get_num_threads()
    else:
        import nncli

        v["nncli"] = nncli.__version__
        v["torch_imported"] = "torch" in sys.modules  # must stay False
    return v


def _time_task(make, names, repeats: int, min_time: float) -> dict:
    out = {}
    for name in names:
        try:
            w = make(name)
            for _ in range(2):  # warm-up: first-touch of buffers, lazy allocations
                w.step()
            number = calibrate(w.step, min_time)
            out[name] = {"times": time_repeats(w.step, repeats, number), "number": number, "note": w.note}
            if w.model is not None and w.batch:
                out[name]["flops"] = flops_per_step(w.model, w.batch)
        except Unavailable as exc:
            out[name] = {"unavailable": str(exc)}
        except Exception as exc:  # a broken module must not hide the other rows
            out[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4)}
        finally:
            w = None
            gc.collect()
    return out


def _memory_task(lib: str, make, name: str, steps: int = 3) -> dict:
    """Peak resident memory a workload adds (setup and ``steps`` steps) once the library is warm; for
    nncli also the tracemalloc peak over the steps and the theoretical figure from the chain.

    A first instance runs and is dropped, so that one-off library costs (kernel code pages, thread
    stacks, oneDNN caches) are in the baseline; the driver sets MALLOC_MMAP_THRESHOLD_ so that
    every large array is its own mapping, given back on free, and the RSS peak sees each one.
    """
    try:
        w = make(name)
        for _ in range(steps):
            w.step()
        w = None
        gc.collect()
        reset_peak_rss()
        base = rss_bytes()
        w = make(name)
        for _ in range(steps):
            w.step()
        res = {"rss_peak": peak_rss_bytes() - base}
        w = None
        if lib == "nncli":
            res.update(_traced(make, name, steps))
        return res
    except Unavailable as exc:
        return {"unavailable": str(exc)}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _traced(make, name: str, steps: int) -> dict:
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        w = make(name)  # parameters, gradients, optimiser state, the batch
        tracemalloc.reset_peak()  # forget setup temporaries (float64 initialisation draws)
        held = tracemalloc.get_traced_memory()[0]
        for _ in range(steps):
            w.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    res = {"traced_peak": peak, "traced_held": held}
    if w.model is not None and w.batch:
        res["theory"] = theoretical_bytes(w.model, w.batch, w.optimizer_slots)
    return res


def main(
    lib: str,
    task: str,
    names: list[str],
    repeats: int,
    min_time: float,
    threads: int,
    out_path: str,
    steps: int = 0,
) -> None:
    if task == "peak":
        from harness import sgemm_peak_gflops
        from probes import machine_probes

        peaks = {"1": sgemm_peak_gflops(1), str(threads): sgemm_peak_gflops(threads)}
        with open(out_path, "w") as f:
            json.dump({"peak": peaks, "probes": machine_probes(), "pools": blas_pools()}, f)
        return
    make = _maker(lib, threads, task)
    if task == "time":
        result = {"results": _time_task(make, names, repeats, min_time)}
    elif task == "e2e":
        from e2e import jax_loop, torch_loop

        loop = jax_loop if lib == "jax" else torch_loop
        try:
            result = {"e2e": [loop(steps) for _ in range(repeats)]}
        except Unavailable as exc:
            result = {"e2e": {"unavailable": str(exc)}}
    else:
        result = {"memory": {n: _memory_task(lib, make, n) for n in names}}
    result["versions"] = _versions(lib)
    result["pools"] = blas_pools()
    with open(out_path, "w") as f:
        json.dump(result, f)
