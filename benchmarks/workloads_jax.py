"""The same workloads in JAX, each step compiled whole by ``jax.jit`` (float32, same shapes, same batch).

A training step is ONE jitted function: forward, the cross-entropy, the backward pass
(``jax.value_and_grad``) and the optimiser update (SGD with momentum/Nesterov/weight decay, or
Adam, written here with PyTorch's update rules, as nncli's), with the parameters and optimiser state
donated so XLA updates them in place. A forward+backward row is one jitted ``jax.vjp`` that returns
∂J/∂θ and ∂J/∂z for a fixed upstream gradient, as the other two libraries compute. Each timed step
waits for its result (``block_until_ready``): JAX dispatches asynchronously.

Imported only by JAX workers (``bench.py --worker jax``), which set XLA's thread count through
``XLA_FLAGS`` before jax is imported (see ``configure_threads``). Layer specs are nncli's YAML dicts;
a layer type this file does not translate makes the workload ``Unavailable`` (the table says so).
"""

from __future__ import annotations

import os

import numpy as np
from harness import Unavailable, Workload
from specs import SPECS, digits_spec


def configure_threads(threads: int) -> None:
    """Run XLA's CPU kernels on one core when ``threads`` is 1 (its default is one thread per core).

    XLA's CPU runtime ignores the old thread flags (still set, for older versions): measured with
    jax 0.10.2, a jitted product kept 3-4 threads busy with them. So the worker is also pinned to one
    core (``sched_setaffinity``), whatever threads XLA starts. Must run before jax is imported.
    """
    if threads == 1:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()
        )


def use_compilation_cache(path: str) -> None:
    """Keep compiled steps in ``path`` across worker processes, so that the blocks after the first
    do not compile again (timings never include compilation: each workload warms up first). Not
    for the end-to-end loop, whose time counts its compilation as a user's run would."""
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def _ints(v, nd: int) -> tuple[int, ...]:
    return (int(v),) * nd if isinstance(v, int) else tuple(int(x) for x in v)


def _init(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    """U(±1/√fan_in), PyTorch's default for weights and biases alike (values do not matter here)."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def _layer(spec: dict, shape: tuple[int, ...], rng: np.random.Generator):
    """(parameters dict, apply(params, x, key), per-example output shape) for one nncli layer spec;
    ``key`` is a JAX PRNG key (dropout's mask) or None (no dropout: evaluation)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    t = _key(spec["type"])
    if t in ("mm", "linear", "dense", "fc"):
        d, m = shape[0], spec["out"]
        p = {"weight": _init(rng, (m, d), d)}
        if spec.get("bias", True):
            p["bias"] = _init(rng, (m,), d)

        def mm(p, x, key):
            u = x @ p["weight"].T
            return u + p["bias"] if "bias" in p else u

        return p, mm, (m,)
    if t == "relu" or (t in ("sigma", "σ") and spec.get("fn", "relu") == "relu"):
        return {}, lambda p, x, key: jnp.maximum(x, 0), shape
    if t == "flatten":
        return {}, lambda p, x, key: x.reshape(x.shape[0], -1), (int(np.prod(shape)),)
    if t in ("conv1d", "conv2d"):
        nd = 1 if t == "conv1d" else 2
        c_in, c_out = shape[0], spec["out"]
        k = _ints(spec["kernel"], nd)
        stride = _ints(spec.get("stride", 1), nd)
        dil = _ints(spec.get("dilation", 1), nd)
        pad = spec.get("padding")
        pad = tuple(d * (kk - 1) // 2 for kk, d in zip(k, dil)) if pad is None else _ints(pad, nd)
        fan_in = c_in * int(np.prod(k))
        p = {"weight": _init(rng, (c_out, c_in, *k), fan_in)}
        if spec.get("bias", True):
            p["bias"] = _init(rng, (c_out,), fan_in)
        dims = ("NCH", "OIH", "NCH") if nd == 1 else ("NCHW", "OIHW", "NCHW")

        def conv(p, x, key):
            u = lax.conv_general_dilated(
                x, p["weight"], stride, [(q, q) for q in pad], rhs_dilation=dil, dimension_numbers=dims
            )
            return u + p["bias"].reshape((-1,) + (1,) * nd) if "bias" in p else u

        out = jax.eval_shape(lambda p, x: conv(p, x, None), p, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
        out = out.shape[1:]
        return p, conv, tuple(out)
    if t in ("maxpool2d", "avgpool2d", "maxpool1d", "avgpool1d"):
        nd = 2 if t.endswith("2d") else 1
        k = _ints(spec["kernel"], nd)
        s = k if spec.get("stride") is None else _ints(spec["stride"], nd)
        q = _ints(spec.get("padding", 0), nd)
        window, strides = (1, 1) + k, (1, 1) + s
        padding = ((0, 0), (0, 0)) + tuple((x, x) for x in q)
        reduce = lax.max if t.startswith("max") else lax.add
        scale = 1.0 if t.startswith("max") else 1.0 / float(np.prod(k))  # torch counts the padding
        tiles = s == k and not any(q) and all(n % kk == 0 for n, kk in zip(shape[1:], k))

        def pool(p, x, key):
            if tiles:  # windows tile the input: a reshape and one reduction, XLA's fastest form
                split = x.shape[:2] + tuple(d for n, kk in zip(x.shape[2:], k) for d in (n // kk, kk))
                axes = tuple(range(3, 3 + 2 * nd, 2))
                r = x.reshape(split)
                return r.max(axis=axes) if reduce is lax.max else r.sum(axis=axes) * scale
            init = -jnp.inf if reduce is lax.max else 0.0
            return lax.reduce_window(x, init, reduce, window, strides, padding) * scale

        out = jax.eval_shape(lambda x: pool({}, x, None), jax.ShapeDtypeStruct((1, *shape), jnp.float32))
        return {}, pool, tuple(out.shape[1:])
    if t in ("ln", "layernorm", "layer_norm"):
        affine, eps = spec.get("affine", "scalar"), float(spec.get("eps", 1e-5))
        pshape = () if affine == "scalar" else tuple(shape)
        p = (
            {}
            if affine == "none"
            else {"weight": np.ones(pshape, np.float32), "bias": np.zeros(pshape, np.float32)}
        )
        axes = tuple(range(1, len(shape) + 1))

        def ln(p, x, key):
            mu = x.mean(axis=axes, keepdims=True)
            var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
            y = (x - mu) * lax.rsqrt(var + eps)
            return y * p["weight"] + p["bias"] if p else y

        return p, ln, shape
    if t == "dropout":
        rate = float(spec.get("p", 0.5))

        def dropout(p, x, key):
            if key is None or rate == 0.0:
                return x
            keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
            return jnp.where(keep, x / (1.0 - rate), 0.0)

        return {}, dropout, shape
    raise Unavailable(f"the JAX worker does not translate layer type {spec['type']!r}")


def _model(layers: list[dict], input_shape):
    """(list of parameter dicts, apply(params, x, key=None)) for a list of layer specs; with a PRNG
    ``key`` (training) each dropout layer draws its mask from a key of its own."""
    rng = np.random.default_rng(1)
    shape, params, fns = tuple(input_shape), [], []
    for spec in layers:
        p, fn, shape = _layer(spec, shape, rng)
        params.append(p)
        fns.append(fn)

    def apply(params, x, key=None):
        import jax

        for i, (p, fn) in enumerate(zip(params, fns)):
            x = fn(p, x, None if key is None else jax.random.fold_in(key, i))
        return x

    return params, apply


def _cross_entropy(h, y):
    import jax
    import jax.numpy as jnp

    logp = jax.nn.log_softmax(h, axis=1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _optimizer(opt: dict):
    """(init(params) → state, update(params, grads, state) → (params, state)) with PyTorch's rules."""
    import jax
    import jax.numpy as jnp

    o = {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "betas": (0.9, 0.999), "eps": 1e-8, **opt}
    lr, wd = float(o["lr"]), float(o["weight_decay"])
    tmap = jax.tree_util.tree_map

    def decayed(p, g):
        return g + wd * p if wd else g

    if o["type"] == "adam":
        b1, b2, eps = float(o["betas"][0]), float(o["betas"][1]), float(o["eps"])

        def init(params):
            zeros = tmap(jnp.zeros_like, params)
            return {"t": jnp.zeros((), jnp.int32), "m": zeros, "v": tmap(jnp.zeros_like, params)}

        def update(params, grads, state):
            t = state["t"] + 1
            g = tmap(decayed, params, grads)
            m = tmap(lambda m, g: m + (1 - b1) * (g - m), state["m"], g)
            v = tmap(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], g)
            tf = t.astype(jnp.float32)
            step_size = lr / (1 - b1**tf)
            bc2 = jnp.sqrt(1 - b2**tf)
            new = tmap(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / bc2 + eps), params, m, v)
            return new, {"t": t, "m": m, "v": v}

        return init, update
    mu, nesterov = float(o["momentum"]), bool(o["nesterov"])

    def init(params):
        return {"t": jnp.zeros((), jnp.int32), "b": tmap(jnp.zeros_like, params)} if mu else {}

    def update(params, grads, state):
        g = tmap(decayed, params, grads)
        if not mu:
            return tmap(lambda p, g: p - lr * g, params, g), state
        first = state["t"] == 0
        b = tmap(lambda b, g: jnp.where(first, g, mu * b + g), state["b"], g)
        d = tmap(lambda g, b: g + mu * b, g, b) if nesterov else b
        return tmap(lambda p, d: p - lr * d, params, d), {"t": state["t"] + 1, "b": b}

    return init, update


def _train_workload(
    layers, input_shape, batch: int, opt: dict, classes: int = 10, note: str = ""
) -> Workload:
    import jax

    params, apply = _model(layers, input_shape)
    init, update = _optimizer(opt)
    rng = np.random.default_rng(2)  # the same inputs as the other workers
    x = jax.device_put(rng.standard_normal((batch, *input_shape), dtype=np.float32))
    y = jax.device_put(rng.integers(0, classes, size=batch).astype(np.int32))

    def loss(params, x, y, key):
        return _cross_entropy(apply(params, x, key), y)

    def step(params, state, key, x, y):
        key, sub = jax.random.split(key)  # a fresh dropout mask every step
        J, grads = jax.value_and_grad(loss)(params, x, y, sub)
        params, state = update(params, grads, state)
        return params, state, key, J

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    params = jax.device_put(params)
    box = {"params": params, "state": init(params), "key": jax.random.key(0)}

    def run():
        box["params"], box["state"], box["key"], J = step(box["params"], box["state"], box["key"], x, y)
        J.block_until_ready()

    return Workload(run, note=note, batch=batch)


def _fwd_bwd_workload(layer: dict, input_shape, batch: int, note: str = "") -> Workload:
    import jax

    params, apply = _model([layer], input_shape)
    out_shape = jax.eval_shape(apply, params, jax.ShapeDtypeStruct((1, *input_shape), np.float32)).shape[1:]
    rng = np.random.default_rng(2)
    x = jax.device_put(rng.standard_normal((batch, *input_shape), dtype=np.float32))
    g = jax.device_put(rng.standard_normal((batch, *out_shape), dtype=np.float32))
    params = jax.device_put(params)

    @jax.jit
    def fwd_bwd(params, x, g):
        _, pullback = jax.vjp(apply, params, x)
        return pullback(g)  # (∂J/∂θ, ∂J/∂z)

    def run():
        jax.block_until_ready(fwd_bwd(params, x, g))

    return Workload(run, note=note, batch=batch)


def make(name: str) -> Workload:
    s = SPECS[name] if name != "digits_cnn" else digits_spec()
    if s["kind"] == "train":
        return _train_workload(
            s["layers"], s["input_shape"], s["batch"], s["optimizer"], note=s.get("note", "")
        )
    return _fwd_bwd_workload(s["layers"][0], s["input_shape"], s["batch"], note=s.get("note", ""))
