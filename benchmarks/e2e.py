"""End to end: ``nncli train configs/mnist1d_cnn.yaml --set train.steps=N`` against the same loop in
PyTorch and in JAX.

nncli side: the real command in a subprocess (its own process, so it never meets torch's threads);
the time is the training phase as the run records it in ``summary.json`` (the process's wall time,
with imports and data loading, is kept beside it). PyTorch side (``torch_loop``, run in a torch
worker): the same data (MNIST-1D, standardised with training statistics), the same batch, Adam with
the config's learning rate, a fresh shuffle per epoch, N steps and one evaluation on the held-out part
at the end — the work the nncli run does with ``train.eval_every=N``. JAX side (``jax_loop``, in a
JAX worker): the same, with the whole step (batch gather, forward, backward, Adam) one ``jax.jit``
function; its seconds include the first step's compilation, which is also reported apart.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import yaml
from harness import Unavailable
from specs import MNIST1D_CONFIG, ROOT

DATA_CANDIDATES = (
    os.path.join(ROOT, "nncli", "training", "datasets", "mnist1d.npz"),
    os.path.join(ROOT, "nncli", "datasets", "mnist1d.npz"),
)


def config() -> dict:
    if not os.path.exists(MNIST1D_CONFIG):
        raise Unavailable("configs/mnist1d_cnn.yaml does not exist yet")
    with open(MNIST1D_CONFIG) as f:
        return yaml.safe_load(f)


def overrides(steps: int) -> list[str]:
    # one evaluation (and its checkpoint) at the end, like the torch loop; no periodic logging cost
    return [f"train.steps={steps}", f"train.eval_every={steps}", f"train.log_every={steps}"]


def _seconds_from_summary(summary: dict) -> float | None:
    """The training time recorded in summary.json (the key names are the run recorder's)."""
    # nncli's summary.json: "wall_time" = the trainer's seconds from its first step to the end
    for key in ("wall_time", "train_seconds", "seconds"):
        v = summary.get(key)
        if isinstance(v, (int, float)):
            return float(v)
    for v in summary.values():
        if isinstance(v, dict):
            found = _seconds_from_summary(v)
            if found is not None:
                return found
    return None


def run_nncli(steps: int, env: dict, threads: int) -> dict:
    """One ``nncli train --threads T`` subprocess; the training-phase seconds and the process wall time."""
    config()
    exe = [sys.executable, "-m", "nncli", "train", MNIST1D_CONFIG, "--threads", str(threads), "--quiet"]
    for o in overrides(steps):
        exe += ["--set", o]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run(exe, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise Unavailable(f"nncli train failed (exit {proc.returncode}): {msg[-1] if msg else ''}")
        found = glob.glob(os.path.join(tmp, "runs", "*", "summary.json"))
        if not found:
            raise Unavailable("nncli train wrote no runs/*/summary.json")
        with open(found[0]) as f:
            summary = json.load(f)
    secs = _seconds_from_summary(summary)
    if secs is None:
        raise Unavailable(f"no training time in summary.json (keys: {sorted(summary)})")
    return {"seconds": secs, "process_wall": wall}


def _load_data(cfg: dict):
    path = next((p for p in DATA_CANDIDATES if os.path.exists(p)), None)
    if path is None:
        raise Unavailable("mnist1d.npz not found")
    d = np.load(path)
    x, y = d["x"].astype(np.float32), d["y"]
    val_split = float((cfg.get("data") or {}).get("val_split", 0.1))
    perm = np.random.default_rng(0).permutation(len(x))
    n_val = int(round(val_split * len(x)))
    xv, yv, xt, yt = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]
    mu, sd = xt.mean(), xt.std() + 1e-8  # training statistics only
    return (xt - mu) / sd, yt, (xv - mu) / sd, yv


def torch_loop(steps: int) -> dict:
    """The MNIST-1D paper CNN trained for ``steps`` Adam steps in PyTorch; returns the loop's seconds."""
    import torch

    cfg = config()
    batch = int((cfg.get("data") or {}).get("batch_size", 100))
    opt_cfg = {"type": "adam", "lr": 1e-2, **(cfg.get("optimizer") or {})}
    xt, yt, xv, yv = _load_data(cfg)
    shape = tuple(cfg["model"]["input_shape"])
    xt, xv = xt.reshape((-1,) + shape), xv.reshape((-1,) + shape)
    import workloads_torch

    torch.manual_seed(0)
    model = workloads_torch._model(cfg["model"]["layers"], shape)
    opt = workloads_torch.make_optimizer(model.parameters(), opt_cfg)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, Y = torch.from_numpy(np.ascontiguousarray(xt)), torch.from_numpy(yt)
    n, per_epoch = len(xt), -(-len(xt) // batch)
    t0 = time.perf_counter()
    for t in range(steps):
        epoch, b = divmod(t, per_epoch)
        if b == 0:
            order = torch.from_numpy(np.random.default_rng([0, epoch]).permutation(n))
        idx = order[b * batch : (b + 1) * batch]
        opt.zero_grad()
        loss = loss_fn(model(X[idx]), Y[idx])
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = model(torch.from_numpy(np.ascontiguousarray(xv))).argmax(1) == torch.from_numpy(yv)
        acc = float(acc.float().mean())
    return {"seconds": time.perf_counter() - t0, "val_acc": acc}


def jax_loop(steps: int) -> dict:
    """The MNIST-1D paper CNN trained for ``steps`` Adam steps with one jitted step; the loop's seconds
    (compilation included) and the compilation alone (the first step's extra time)."""
    import jax
    import jax.numpy as jnp
    import workloads_jax

    cfg = config()
    batch = int((cfg.get("data") or {}).get("batch_size", 100))
    opt_cfg = {"type": "adam", "lr": 1e-2, **(cfg.get("optimizer") or {})}
    xt, yt, xv, yv = _load_data(cfg)
    shape = tuple(cfg["model"]["input_shape"])
    xt, xv = xt.reshape((-1,) + shape), xv.reshape((-1,) + shape)
    params, apply = workloads_jax._model(cfg["model"]["layers"], shape)
    init, update = workloads_jax._optimizer(opt_cfg)
    n, per_epoch = len(xt), -(-len(xt) // batch)

    def step(params, state, key, X, Y, idx):
        key, sub = jax.random.split(key)

        def loss(p):
            return workloads_jax._cross_entropy(apply(p, X[idx], sub), Y[idx])

        J, grads = jax.value_and_grad(loss)(params)
        params, state = update(params, grads, state)
        return params, state, key, J

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    t0 = time.perf_counter()
    X, Y = jax.device_put(xt), jax.device_put(yt.astype(np.int32))
    params = jax.device_put(params)
    state, key = init(params), jax.random.key(0)
    first = None
    for t in range(steps):
        epoch, b = divmod(t, per_epoch)
        if b == 0:
            order = np.random.default_rng([0, epoch]).permutation(n).astype(np.int32)
        params, state, key, J = step(params, state, key, X, Y, order[b * batch : (b + 1) * batch])
        if t == 0:
            J.block_until_ready()
            first = time.perf_counter() - t0
    J.block_until_ready()
    logits = apply(params, jnp.asarray(xv))
    acc = float(jnp.mean(jnp.argmax(logits, axis=1) == jnp.asarray(yv)))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "val_acc": acc, "first_step": first}
