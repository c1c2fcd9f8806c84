"""``--resume RUN_DIR``: a session that continues a run exactly where its last checkpoint stopped.

Everything that would make the continuation differ from an uninterrupted run is refused before the
folder is touched: a changed config.yaml, other training data, a checkpoint from another run, or
overrides other than a larger budget (``nncli.runs.session.extend``).
"""

from __future__ import annotations

from pathlib import Path

from nncli.config.yaml_positions import load_yaml_file
from nncli.core.errors import CheckpointError
from nncli.runs.folder.metrics_log import metric_lines
from nncli.runs.folder.own_files import check_own_files
from nncli.runs.folder.run_dir import RunError
from nncli.runs.folder.run_info import read_run
from nncli.runs.folder.watch_log import WATCH_FILE
from nncli.runs.session.config_compare import config_changes, config_hash, legacy_config_hash
from nncli.runs.session.datafile import data_file, pinned
from nncli.runs.session.prepare import Session


def prepare_resume(run_dir: Path, config_path: Path | None, overrides: list[str]) -> Session:
    """A session that continues ``run_dir`` exactly where its last checkpoint stopped; ``overrides``
    may only raise its budget (``nncli.runs.session.extend``), which a completed run needs."""
    from nncli.config.load import load_config
    from nncli.runs.checkpoint import has_checkpoint, load_checkpoint
    from nncli.runs.session.extend import NEW_RUN_HINT, check_extension, only_budget
    from nncli.runs.session.init_from import read_init
    from nncli.runs.session.preflight import check_not_training

    run_dir = Path(run_dir)
    info = read_run(run_dir)
    completed = info.get("status") == "completed"
    finished = (
        f"{run_dir}: this run already completed; to train it further give it a larger budget "
        f"(--resume RUN --set train.steps=N or train.epochs=N), or {NEW_RUN_HINT}"
    )
    if completed and not overrides:
        raise RunError(finished)
    check_own_files(run_dir)
    check_not_training(run_dir)  # a live run first: its checkpoint may be changing under us
    metric_lines(run_dir / "metrics.jsonl")  # a damaged line is refused before anything is written
    metric_lines(run_dir / WATCH_FILE)
    stored = load_config(run_dir / "config.yaml", [])
    ckpt = None
    if has_checkpoint(run_dir / "checkpoints", "last"):
        ckpt = load_checkpoint(run_dir / "checkpoints", "last")
        made_with = ckpt.state.get("config_sha256")
    else:  # stopped (kill -9) before its first checkpoint: start again from step 0
        made_with = info.get("config_sha256", config_hash(stored.config))
    # a checkpoint written before the last extension carries the config of the smaller budget
    budgets = [e.get("previous_config_sha256") for e in info.get("extensions", [])]
    if made_with not in (config_hash(stored.config), *budgets) and made_with != legacy_config_hash(
        stored.config, load_yaml_file(run_dir / "config.yaml")[0]
    ):
        raise RunError(
            f"{run_dir / 'config.yaml'}: the config was changed after the checkpoint was "
            f"written; a resumed run must use the config it started with"
        )
    wanted = load_config(run_dir / "config.yaml", overrides) if overrides else stored
    extending = only_budget(config_changes(stored.config, wanted.config), run_dir) if overrides else False
    if completed and not extending:
        raise RunError(finished)
    if config_path is not None:
        given = load_config(config_path, overrides)
        # the run saved its data file as an absolute path with its SHA-256; the config names it as written
        path = data_file(given.config.data, given.folder_of("data.source")) if given.config.data else None
        sha = stored.config.data.sha256 if stored.config.data else None
        changes = config_changes(wanted.config, pinned(given.config, path, sha), ignore=("name",))
        if changes:
            raise RunError(f"{config_path} differs from the config of {run_dir}: " + "; ".join(changes))
    session = Session(
        wanted,
        wanted.config,
        Path(info.get("data_base_dir", run_dir)),
        list(info.get("overrides", [])),
        resuming=True,
    )
    if session.data_info["fingerprint"] != (info.get("data") or {}).get("fingerprint"):
        raise RunError(f"{run_dir}: the training data differs from the data the run started with")
    step = int(ckpt.state["step"]) if ckpt is not None else 0
    if extending:
        session.extension = check_extension(run_dir, info, stored.config, session, step, overrides)
    if ckpt is not None:
        where = ckpt.path.with_name("last.state.safetensors")
        if ckpt.state["step"] > session.trainer.total_steps:
            raise CheckpointError(
                f"{where}: step {ckpt.state['step']} is past the run's "
                f"{session.trainer.total_steps} steps; this checkpoint is not from this run"
            )
        try:
            session.trainer.restore(ckpt)
        except (ValueError, TypeError, KeyError, IndexError) as exc:  # values of the wrong kind
            raise CheckpointError(f"{where}: the training state does not fit this run ({exc})") from None
    elif info.get("init_from") is not None:  # no checkpoint yet: start again from the same weights
        source = info["init_from"]
        init = read_init(source["run"], source["checkpoint"], expect_sha256=source["weights_sha256"])
        session.start_from(init)
    session.folder, session.resume_step = run_dir, step
    session.warnings.extend(_denormals_changed(run_dir, info))
    return session


def _denormals_changed(run_dir: Path, info: dict) -> list[str]:
    """A warning when the run trained with subnormal floats handled otherwise than now
    (``NNCLI_DENORMALS``, ``core.kernels.denormals``): its continuation then differs in the last bits."""
    from nncli.core.kernels.denormals import ENV, mode_name

    before, now = info.get("denormals"), mode_name()
    if before is None or before == now:
        return []
    return [
        f"{run_dir}: this run trained with subnormal floats {before} and continued with them {now} "
        f"({ENV}); it will not match a run never interrupted bit for bit"
    ]
