"""What a sweep refuses before any trial runs: its options, the metric it ranks by, and every trial's
config (loaded and built)."""

from __future__ import annotations

from pathlib import Path

from nncli.core.errors import ConfigError, UserError
from nncli.runs.sweeps.trial import Trial
from nncli.training.metrics import Fit, check_metric, run_metrics

BACKENDS = ("local", "ray")


class SweepError(UserError):
    """A grid that cannot be run: bad syntax, an invalid combination, a missing optional dependency."""


def check_options(backend: str, jobs: int, seeds: int | None = None) -> None:
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {jobs}")
    if seeds is not None and seeds < 1:
        raise SweepError(f"--seeds must be at least 1, got {seeds}")


def check_rank_metric(loaded, metric: str) -> None:
    """A UserError naming ``--metric`` unless the trials log ``metric`` at each evaluation (train_loss
    or val_<scalar metric> that fits the config's loss), before any trial runs: an unknown name
    would otherwise leave every trial without a value to rank by."""
    from nncli.config.build import build_chain

    chain = build_chain(loaded, dtype="float32")
    fit = Fit.of(chain.loss, chain.output_shape())
    try:
        name = check_metric(metric, "--metric", True, fit)
    except ConfigError as exc:
        raise UserError(exc.message, field="--metric") from None
    if metric.startswith("val_") and name != "loss" and name not in run_metrics(loaded.config, fit, True):
        raise UserError(
            f"the trials do not log {metric}: add {name} to the config's metrics: list "
            f"(or --set 'metrics=[..., {name}]')",
            field="--metric",
        )


def validate(config: Path, trials: list[Trial], build: bool = True):
    """Load (and build) every trial's config; the first problem raises, naming its combination.

    Returns the first trial's LoadedConfig (for the sweep's name and defaults).
    """
    from nncli.config.load import load_config

    first = None
    for t in trials:
        try:
            loaded = load_config(config, t.overrides)
            if build:
                from nncli.config.build import build_chain

                build_chain(loaded, with_loss=True)  # shape errors a grid value may cause
        except UserError as exc:
            if "--set" in str(exc):  # the loader already names the override it refused
                raise
            where = ", ".join(f"{k}={v}" for k, v in t.params.items()) or "the base config"
            raise SweepError(f"{exc} (in the grid combination {where})") from None
        first = first or loaded
    return first
