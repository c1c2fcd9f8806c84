"""Config → Chain: create each layer from its entry, infer every input shape from the layer before.

Shape inference runs twice: first a dry run on ``output_shape`` (no parameters allocated) that also
estimates each layer's parameter count and the size of one example's input and of each layer's output,
so a model that could never fit in memory (or, given a batch size, a batch of its activations) is
refused with its size before anything is allocated; then the real ``build``. Every error names the
layer as ``model.layers[i]`` and the place where that layer was written.

Randomness: one ``numpy.random.SeedSequence(seed)`` is split into named streams (``seed_streams``);
parameters are drawn from the ``init`` stream, and every Dropout gets its own generator spawned from
the ``dropout`` stream, so the same seed gives the same model and the same masks.
"""

from __future__ import annotations

from typing import cast

import numpy as np

from nncli.config.load import LoadedConfig, check_layer, locate_error
from nncli.config.memory import activation_bytes, batch_error, check_fits
from nncli.config.schema import Config
from nncli.core.chain import Chain
from nncli.core.errors import ShapeError, UserError
from nncli.core.module import Module
from nncli.core.registry import losses

#: purposes that draw random numbers, each from its own stream of the config's seed
STREAMS = ("init", "shuffle", "dropout")
#: models whose parameters alone would take more memory than this are refused before allocation
MAX_PARAM_BYTES = 8 * 2**30
#: so are models where one example's input, or one layer's output for one example, would be larger
MAX_EXAMPLE_BYTES = 8 * 2**30


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """Independent SeedSequences per purpose (``init``, ``shuffle``, ``dropout``) from one seed."""
    return dict(zip(STREAMS, np.random.SeedSequence(seed).spawn(len(STREAMS))))


def build_module(spec: dict, field: str) -> Module:
    """One layer entry (``{type: Conv1D, out: 8, kernel: 3}``) → an unbuilt module.

    Errors carry ``field`` (e.g. ``model.layers[3].kernel``); nested errors from a Residual's own
    ``layers`` are prefixed with ``field``. Places are added by the caller.
    """
    entry, hparams = check_layer(spec, field)
    try:
        return entry(**hparams)
    except UserError as exc:
        exc.field = f"{field}.{exc.field}" if exc.field else field
        raise


def build_chain(
    cfg: LoadedConfig | Config,
    *,
    dtype=None,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    with_loss: bool = True,
    batch_size: int | None = None,
) -> Chain:
    """Create, check and initialise the model (and its loss) described by ``cfg``.

    ``dtype`` defaults to ``cfg.dtype``; ``seed`` to ``cfg.seed``; ``rng`` (if given) replaces the
    ``init`` stream. Raises ConfigError / ShapeError with the field and place of the faulty layer.
    ``batch_size`` (the config's ``data.batch_size``): also refuse, before allocating anything, a
    batch whose activations cannot fit in memory.
    """
    loaded, config = (cfg, cfg.config) if isinstance(cfg, LoadedConfig) else (None, cfg)
    locate = loaded.locate if loaded else (lambda exc, prefix=None: locate_error(exc, prefix, {}))
    dtype = np.dtype(dtype if dtype is not None else config.dtype)
    streams = seed_streams(config.seed if seed is None else seed)
    init_rng = rng if rng is not None else np.random.default_rng(streams["init"])

    fields = [f"model.layers[{i}]" for i in range(len(config.model.layers))]
    mods = []
    for f, spec in zip(fields, config.model.layers):
        try:
            mods.append(build_module(spec, f))
        except UserError as exc:
            raise locate(exc) from None

    loss = None
    if with_loss:
        spec = config.loss.model_dump()
        try:
            loss = losses.lookup(spec.pop("type"))(**spec)
        except UserError as exc:
            raise locate(exc, "loss") from None

    # dry run: shapes and parameter counts, nothing allocated
    shape = tuple(config.model.input_shape)
    _check_example(shape, "model.input_shape", "input", dtype, locate)
    counts = []
    for f, m in zip(fields, mods):
        try:
            out = tuple(m.output_shape(shape))
        except UserError as exc:
            raise locate(exc, f) from None
        _check_example(out, f, "output", dtype, locate)
        counts.append(estimate_params(m, shape))
        shape = out
    _check_size(counts, fields, dtype, locate)
    if loss is not None:
        try:
            loss.check_output(shape)
        except UserError as exc:
            last = f"{fields[-1]} ({type(mods[-1]).__name__})"
            exc.message += f"; the last layer, {last}, outputs {shape}"
            exc.args = (exc.message,)
            raise locate(exc, "loss") from None
    if batch_size is not None:
        need = activation_bytes(config.model.input_shape, mods, batch_size, dtype)
        too_big = batch_error(need, batch_size, dtype, what="data.batch_size", field="data.batch_size")
        if too_big is not None:
            raise locate(too_big) from None

    shape = tuple(config.model.input_shape)
    for f, m in zip(fields, mods):
        try:
            m.build(shape, init_rng, dtype)
            shape = tuple(m.output_shape(shape))
        except UserError as exc:
            raise locate(exc, f) from None
    chain = Chain(mods, loss, tuple(config.model.input_shape))
    _seed_dropouts(chain, streams["dropout"])
    return chain


def estimate_params(module: Module, input_shape: tuple[int, ...]) -> int:
    """Parameter count of ``module`` at ``input_shape`` without allocating the parameters.

    ``init_params`` is run with a stand-in generator whose draws are zero-stride views of the size
    asked for; children (a Residual's body) are counted the same way. Unknown → 0.
    """
    saved = module.input_shape
    module.input_shape = tuple(input_shape)
    try:
        shape_only = cast(np.random.Generator, _ShapeOnlyRng())  # duck-typed: see the class
        count = sum(int(np.size(v)) for v in module.init_params(shape_only).values())
    except MemoryError:
        count = np.iinfo(np.int64).max // 2
    except Exception:  # a module whose init needs real numbers: count what can be counted
        count = 0
    finally:
        module.input_shape = saved
    shape = tuple(input_shape)
    for _, child in module.children():  # a Residual's body; a Chain's modules, each on the last's output
        count += estimate_params(child, shape)
        if isinstance(module, Chain):
            try:
                shape = tuple(child.output_shape(shape))
            except UserError:
                break
    return count


class _ShapeOnlyRng:
    """Quacks like ``numpy.random.Generator`` for ``init_params``; every draw costs no memory."""

    _size_arg = {
        "random": 0,
        "standard_normal": 0,
        "uniform": 2,
        "normal": 2,
        "integers": 2,
        "choice": 1,
        "truncated_normal": 2,
    }

    def __getattr__(self, name):
        def draw(*args, **kwargs):
            size = kwargs.get("size")
            pos = self._size_arg.get(name, 2)
            if size is None and len(args) > pos:
                size = args[pos]
            return np.broadcast_to(np.zeros((), dtype=np.float64), () if size is None else size)

        return draw


def _check_size(counts, fields, dtype, locate) -> None:
    total = int(sum(counts))
    size = total * dtype.itemsize
    big = int(np.argmax(counts)) if counts else 0
    if size <= MAX_PARAM_BYTES:
        # creating them takes the float64 initial draws, the parameters and their gradients at once
        try:
            check_fits(
                total * (8 + 2 * dtype.itemsize),
                f"the model's {total:,} parameters (the largest layer, {fields[big]}, has "
                f"{counts[big]:,}) with their gradients",
                field=fields[big],
                error=ShapeError,
            )
        except ShapeError as exc:
            raise locate(exc) from None
        return
    too_big = ShapeError(
        f"the model has about {total:,} parameters ({_gib(size)} in {dtype.name}), more "
        f"than the {_gib(MAX_PARAM_BYTES)} limit; the largest layer, {fields[big]}, has "
        f"{counts[big]:,}",
        field=fields[big],
    )
    raise locate(too_big)


def _check_example(shape, field, what, dtype, locate) -> None:
    """Refuse a per-example ``shape`` whose values alone exceed MAX_EXAMPLE_BYTES (a batch holds many)."""
    n = 1
    for s in shape:
        n *= int(s)  # Python ints: no overflow for absurd sizes
    size = n * dtype.itemsize
    if size > MAX_EXAMPLE_BYTES:
        exc = ShapeError(
            f"one example's {what} has shape {tuple(shape)}: {n:,} values ({_gib(size)} in "
            f"{dtype.name}), more than the {_gib(MAX_EXAMPLE_BYTES)} limit",
            field=field,
        )
        raise locate(exc)


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _seed_dropouts(chain: Chain, stream: np.random.SeedSequence) -> None:
    """Give each module that draws at run time (it has an ``rng`` Generator) its own generator."""
    users = [m for _, m in chain.named_modules() if isinstance(getattr(m, "rng", None), np.random.Generator)]
    for m, child in zip(users, stream.spawn(len(users))):
        setattr(m, "rng", np.random.default_rng(child))  # noqa: B010  (an attribute only some modules have)
