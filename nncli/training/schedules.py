"""Learning-rate schedules: the learning rate at each optimiser step t = 0, 1, 2, …

    constant   η(t) = η
    step       η(t) = η · γ^⌊s / step_size⌋                      (×γ every step_size steps)
    cosine     η(t) = η_min + (η − η_min) · (1 + cos(π s / S)) / 2,  s clipped to S

With ``warmup_steps`` = W > 0 the first W steps ramp linearly, η(t) = η · (t + 1) / W, so the first
step already moves (η/W, not 0) and step W − 1 reaches η; the decay above then runs on s = t − W,
the steps after the warm-up, over S = total_steps − W of them (at least 1). A warm-up that is longer
than the run simply never reaches η.

Each decay is a function registered under the name a config's ``schedule.type`` gives
(``@schedules.register("cosine")``), called once with the config, η and S.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from nncli.config.schema import ScheduleConfig
from nncli.core.errors import ConfigError
from nncli.core.registry import schedules

#: a registered schedule: (cfg, base_lr, span) ↦ the decay s ↦ η for s = steps after the warm-up
Decay = Callable[[int], float]


@schedules.register("constant")
def constant(cfg: ScheduleConfig, base_lr: float, span: int) -> Decay:
    return lambda s: base_lr


@schedules.register("step")
def step(cfg: ScheduleConfig, base_lr: float, span: int) -> Decay:
    return lambda s: base_lr * cfg.gamma ** (s // cfg.step_size)


@schedules.register("cosine")
def cosine(cfg: ScheduleConfig, base_lr: float, span: int) -> Decay:
    if cfg.min_lr > base_lr:
        raise ConfigError(
            f"cosine decays from lr to min_lr, so min_lr must not exceed lr; "
            f"got min_lr={cfg.min_lr:g}, lr={base_lr:g}",
            field="schedule.min_lr",
        )

    def decay(s: int) -> float:
        frac = min(s, span) / span
        return cfg.min_lr + (base_lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))

    return decay


def make_schedule(cfg: ScheduleConfig, base_lr: float, total_steps: int) -> Callable[[int], float]:
    """A function t ↦ learning rate for 0-based step ``t``; ``base_lr`` is the optimiser's ``lr``."""
    warm = cfg.warmup_steps
    decay = schedules.lookup(cfg.type)(cfg, base_lr, max(1, total_steps - warm))

    def lr_at(t: int) -> float:
        if t < 0:
            raise ValueError(f"step must be ≥ 0, got {t}")
        if t < warm:
            return base_lr * (t + 1) / warm
        return float(decay(t - warm))

    return lr_at
