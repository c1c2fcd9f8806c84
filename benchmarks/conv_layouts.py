"""Conv1D/Conv2D kernels per shape: each layout choice, and optionally an older kernel file, alternating.

    python benchmarks/conv_layouts.py                      # the layers of the CNN workloads, 1 thread
    python benchmarks/conv_layouts.py --against old.py     # also an older nncli/core/kernels/conv.py
    python benchmarks/conv_layouts.py --steps cifar_cnn_max,cnn3_avg --against old.py

``old.py`` is a kernel file from an earlier commit, e.g.
``git show 7453457:nncli/core/kernels/conv.py > old.py``. Every variant runs in this process, one
after the other in each of ``--rounds`` rounds, so that the machine's load drifts hit all of them; the
figures are medians of CPU time per call (wall time with ``--threads`` > 1), in ms. Layer rows: forward,
backward for ∂J/∂θ only (a chain's first layer), full backward. "chosen" is what the layer does
(``kernels/conv_small.py`` for small shapes, else ``kernels/conv.py``); "small b-last" and "small
c-last" force the small path's two layouts (where it applies); the other rows are conv.py's layouts,
small path off ("grid by ex.": columns on the grid always by example, ``kernels.conv.channel_major``). ``--steps``: whole training steps of
the named workloads (``specs.py``), with the current kernels and the older file's. No torch here.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from functools import partial

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

#: (name, Conv1D/Conv2D, hyper-parameters, input shape (C, *S), batch): the workloads' layers
LAYERS = [
    ("cifar conv 1", "Conv2D", {"out": 32, "kernel": 3, "padding": 1}, (3, 32, 32), 64),
    ("cifar conv 2", "Conv2D", {"out": 64, "kernel": 3, "padding": 1}, (32, 16, 16), 64),
    ("cnn3 conv 1", "Conv2D", {"out": 16, "kernel": 5}, (3, 32, 32), 32),
    ("cnn3 conv 2", "Conv2D", {"out": 32, "kernel": 3}, (16, 16, 16), 32),
    ("cnn3 conv 3", "Conv2D", {"out": 48, "kernel": 3}, (32, 8, 8), 32),
    ("conv2d", "Conv2D", {"out": 32, "kernel": 3, "padding": 1}, (16, 28, 28), 64),
    ("conv1d", "Conv1D", {"out": 16, "kernel": 5, "padding": 2}, (8, 256), 64),
    ("mnist1d conv 2", "Conv1D", {"out": 25, "kernel": 3, "stride": 2, "padding": 1}, (25, 19), 100),
    ("mnist1d conv 3", "Conv1D", {"out": 25, "kernel": 3, "stride": 2, "padding": 1}, (25, 10), 100),
    ("digits conv 2", "Conv2D", {"out": 64, "kernel": 3, "stride": 2, "padding": 1}, (32, 8, 8), 64),
]


def _load(path: str):
    spec = importlib.util.spec_from_file_location("conv_against", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _variants(against):
    """name → a function that installs that variant (kernels and layout choices)."""
    import nncli.core.kernels.conv as kernel
    import nncli.core.kernels.conv_small as small
    import nncli.core.layers.conv as layer

    current = (
        kernel.conv_forward,
        kernel.conv_backward,
        kernel.examples_layout,
        kernel.transposed_geometry,
        kernel.grid_layout,
        kernel.channel_major,
        layer.small_path,
        small._CL_FROM,
    )
    never = lambda *sizes: False  # noqa: E731  (conv.py's path for every shape)

    def install(fwd, bwd, layout, transposed, grid, grid_by_channel, small_path, cl_from):
        def go():
            layer.conv_forward, layer.conv_backward = fwd, bwd
            kernel.examples_layout, kernel.transposed_geometry = layout, transposed
            kernel.grid_layout, kernel.channel_major = grid, grid_by_channel
            layer.small_path, small._CL_FROM = small_path, cl_from

        return go

    def but(**changes):
        names = ("fwd", "bwd", "layout", "transposed", "grid", "grid_by_channel", "small_path", "cl_from")
        return install(**(dict(zip(names, current)) | changes))

    # the rows other than "chosen" and the small path's time conv.py's layouts
    out = {"chosen": install(*current)}
    out["small b-last"] = but(cl_from=1 << 62)
    out["small c-last"] = but(cl_from=-1)
    out["by example"] = but(layout=lambda P: True, small_path=never)
    out["by channel"] = but(layout=lambda P: False, small_path=never)
    out["col2im"] = but(transposed=lambda *a: None, small_path=never)
    out["no grid"] = but(grid=lambda *a: False, small_path=never)
    out["grid by ex."] = but(grid_by_channel=never, small_path=never)
    if against:
        old = _load(against)
        out["against"] = but(fwd=old.conv_forward, bwd=old.conv_backward, small_path=never)
    return out


def _forget_plans(model) -> None:
    """Drop the conv layers' small-path plans, so that the variant just installed chooses again."""
    for m in [model] + [m for _, m in getattr(model, "named_modules", lambda: [])()]:
        if hasattr(m, "_plans"):
            m._plans.clear()


def _time(fn, clock, min_time=0.02) -> float:
    fn()
    reps, t = 0, 0.0
    t0 = clock()
    while t < min_time:
        fn()
        reps += 1
        t = clock() - t0
    return t / reps * 1e3


def layers(variants, rounds: int, clock) -> None:
    from nncli.core.registry import modules

    for name, kind, hp, shape, batch in LAYERS:
        rng = np.random.default_rng(0)
        m = modules.create(kind, **hp).build(shape, rng, dtype=np.float32)
        z = rng.standard_normal((batch, *shape), dtype=np.float32)
        v = rng.standard_normal((batch, *m.output_shape(shape)), dtype=np.float32)
        calls = (partial(m.forward, z), partial(m.backward_params, v), partial(m.backward, v))
        res: dict[str, list[list[float]]] = {k: [] for k in variants}
        for _ in range(rounds):
            for k, install in variants.items():
                install()
                _forget_plans(m)
                m.forward(z)
                res[k].append([_time(f, clock) for f in calls])
        macs = m.describe()["macs_forward"] * batch
        print(f"{name}: {kind} {hp} on {batch}×{shape}, {macs / 1e6:.0f} M multiply-adds forward")
        for k, r in res.items():
            f, bp, b = np.median(np.array(r), axis=0)
            print(
                f"    {k:11s} forward {f:7.2f}   backward ∂J/∂θ {bp:7.2f}   backward {b:7.2f}   ({2 * macs / f / 1e6:.0f} GFLOP/s forward)"
            )
    variants["chosen"]()


def steps(variants, names: list[str], rounds: int, clock) -> None:
    import workloads_nncli

    pick = {k: variants[k] for k in ("chosen", "against") if k in variants}
    for name in names:
        w = workloads_nncli.make(name)
        res: dict[str, list[float]] = {k: [] for k in pick}
        for _ in range(rounds):
            for k, install in pick.items():
                install()
                _forget_plans(w.model)
                res[k].append(_time(w.step, clock, 0.1))
        line = "   ".join(f"{k} {np.median(r):.2f}" for k, r in res.items())
        print(f"{name}: ms per training step: {line}")
    variants["chosen"]()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", help="an older nncli/core/kernels/conv.py to time beside the current one")
    ap.add_argument(
        "--steps", help="comma-separated training workloads to time whole steps of (no layer rows)"
    )
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1, help="numpy BLAS threads (default 1)")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    clock = time.process_time if args.threads == 1 else time.perf_counter
    print(
        f"load average {os.getloadavg()[0]:.1f}, {args.threads} BLAS thread(s), medians of {args.rounds} rounds"
    )
    with threadpool_limits(args.threads, user_api="blas"):
        variants = _variants(args.against)
        if args.steps:
            steps(variants, args.steps.split(","), args.rounds, clock)
        else:
            layers(variants, args.rounds, clock)


if __name__ == "__main__":
    main()
