"""Extending a run past its budget: ``nncli train --resume RUN --set train.steps=N`` (or ``train.epochs``).

A resumed run may change one thing: its budget, and only upwards. It then continues from its last
checkpoint and ends exactly where a run given the larger budget from the start ends: the same
weights, optimiser state and evaluations, bit for bit. That holds because everything a step does
is a function of the step count (the data order, the dropout generators' saved states), except the
learning-rate schedule, which ``check_schedule`` therefore compares step by step: a schedule that
spreads over the whole budget (cosine) is refused, as the steps already trained used other rates.
A run that stopped by early stopping is refused too (it would stop again at once).

The run folder records each extension in run.json's ``extensions`` (when, from how many steps to
how many, the ``--set`` that asked, the config hashes before and after), and its config.yaml is
rewritten with the new budget, so a later ``--resume`` and the saved config both say what ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nncli.runs.folder.run_dir import RunError
from nncli.runs.session.config_compare import config_hash
from nncli.training.schedules import make_schedule

#: the config keys a resumed run may change
BUDGET_KEYS = ("train.steps", "train.epochs")
#: what the errors suggest instead
NEW_RUN_HINT = "start a new run from its weights with --init-from RUN instead"


@dataclass
class Extension:
    """A budget raised from ``old_steps`` to ``new_steps`` by ``overrides``."""

    old_steps: int
    new_steps: int
    overrides: list[str]
    old_config_sha256: str
    new_config_sha256: str

    def record(self, at: str, command: list[str], status: Any) -> dict[str, Any]:
        return {
            "at": at,
            "from_steps": self.old_steps,
            "to_steps": self.new_steps,
            "set": list(self.overrides),
            "command": command,
            "previous_status": status,
            "previous_config_sha256": self.old_config_sha256,
            "config_sha256": self.new_config_sha256,
        }


def budget_steps(train_cfg, steps_per_epoch: int) -> int:
    """The number of steps ``train_cfg`` asks for (``steps``, else ``epochs`` × steps per epoch)."""
    return train_cfg.steps if train_cfg.steps is not None else (train_cfg.epochs or 1) * steps_per_epoch


def only_budget(changes: list[str], run_dir) -> bool:
    """Whether ``changes`` (``key: old → new`` lines) touch the budget; RunError if they touch
    anything else."""
    other = [c for c in changes if c.split(":", 1)[0] not in BUDGET_KEYS]
    if other:
        raise RunError(
            f"{run_dir}: --set cannot change a run being resumed ({'; '.join(other)}); only its "
            f"budget may grow (--set train.steps=N or train.epochs=N); to change anything else, "
            f"{NEW_RUN_HINT}"
        )
    return bool(changes)


def check_extension(run_dir, info: dict, stored_cfg, session, step: int, overrides: list[str]) -> Extension:
    """The extension ``session`` (built with the larger budget) makes of the run at ``run_dir``,
    stored with ``stored_cfg`` and checkpointed at ``step``; RunError when it cannot continue exactly."""
    trainer = session.trainer
    old = budget_steps(stored_cfg.train, trainer.steps_per_epoch)
    new = trainer.total_steps
    asked = " ".join(f"--set {o}" for o in overrides)
    if new <= old:
        raise RunError(
            f"{run_dir}: {asked} gives {new} steps, but the run already has a budget of {old}; a "
            f"resumed run's budget may only grow; for a shorter run, {NEW_RUN_HINT}"
        )
    if info.get("status") == "completed" and info.get("reason") == "early stopping":
        raise RunError(
            f"{run_dir}: this run stopped early (early stopping at step {step}); more steps would stop "
            f"again at the next evaluation; {NEW_RUN_HINT}"
        )
    before = make_schedule(stored_cfg.schedule, stored_cfg.optimizer.lr, old)
    for t in range(step):
        if before(t) != trainer.schedule(t):
            raise RunError(
                f"{run_dir}: schedule '{stored_cfg.schedule.type}' depends on the budget: with {new} "
                f"steps the learning rate of step {t} would be {trainer.schedule(t):.6g}, not the "
                f"{before(t):.6g} it was trained with, so the run cannot continue as a {new}-step run "
                f"would; {NEW_RUN_HINT}"
            )
    return Extension(old, new, list(overrides), config_hash(stored_cfg), config_hash(session.cfg))
