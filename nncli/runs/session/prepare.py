"""A training session: everything checked before the run folder exists, then the folder's lifecycle.

``prepare`` (new run) and ``prepare_resume`` (``--resume RUN_DIR``, in ``nncli.runs.session.resume``) load
and validate the config, build the model, load and check the data and create the optimiser and
trainer, raising a UserError on any problem, without touching the disk. ``Session.open`` then
creates (or reopens) the run folder; ``finish`` / ``fail`` write summary.json and the final run.json
status.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from nncli.config.yaml_positions import dump_yaml
from nncli.core.errors import ConfigError, UserError
from nncli.runs.atomic import atomic_write_json, atomic_write_text, jsonable
from nncli.runs.folder.metrics_log import trim_metrics
from nncli.runs.folder.own_files import check_own_files
from nncli.runs.folder.recorder import RunRecorder
from nncli.runs.folder.run_dir import create_run_dir, iso, utc_now
from nncli.runs.folder.run_info import RunInfo, command_line
from nncli.runs.folder.watch_log import WATCH_FILE, WatchRecorder
from nncli.runs.session.config_compare import config_dict, config_hash
from nncli.runs.session.data_checks import check_split, fingerprint
from nncli.runs.session.datafile import check_fingerprint, data_file, pinned
from nncli.runs.session.extend import Extension

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class Session:
    """One training session, checked: config, model, data, optimiser and trainer (see the module).

    A new run saves its data file as its absolute path with its SHA-256 (``runs/session/datafile.py``);
    a ``resuming`` one keeps its config as it was saved, and must train on the same data.
    """

    def __init__(self, loaded, cfg, base_dir: Path, overrides: list[str], resuming: bool = False):
        from nncli.config.build import build_chain
        from nncli.training.data import load_dataset
        from nncli.training.data_seeds import epoch_permutation
        from nncli.training.loop import Trainer
        from nncli.training.optimizers import make_optimizer

        if cfg.data is None:
            raise ConfigError(
                "a training config needs a data: section (a built-in name or a file)", field="data"
            )
        self.loaded, self.cfg, self.base_dir, self.overrides = loaded, cfg, Path(base_dir), overrides
        #: what the run should be told at the end (``TrainOutcome.warnings``), e.g. by a resume
        self.warnings: list[str] = []
        # refuses a batch that cannot fit before allocating the model
        self.chain = build_chain(loaded, dtype=cfg.dtype, seed=cfg.seed, batch_size=cfg.data.batch_size)
        self.data_path = data_file(cfg.data, self.base_dir)
        try:
            sha = check_fingerprint(cfg.data, self.data_path, resuming)
            self.dataset = load_dataset(
                cfg.data,
                input_shape=tuple(cfg.model.input_shape),
                loss=self.chain.loss,
                seed=cfg.seed,
                base_dir=self.base_dir,
                output_shape=self.chain.output_shape(),
            )
        except UserError as exc:
            if exc.place is None:  # point at the data section of the config (or the field named)
                exc.field = exc.field or "data.source"
                raise loaded.locate(exc) from None
            raise
        # saved with an absolute path and the file's SHA-256: the run's config.yaml trains again
        # from any folder, and refuses a file that changed since
        if not resuming:
            self.cfg = cfg = pinned(cfg, self.data_path, sha)
        for split in ("train", "val", "test"):
            part = getattr(self.dataset, split, None)
            if part is not None:
                check_split(part, split, self.chain)
        self.optimizer = make_optimizer(cfg.optimizer, self.chain)
        try:
            self.trainer = Trainer(
                cfg, self.chain, self.dataset.train, self.dataset.val, self.optimizer, epoch_permutation
            )
        except UserError as exc:  # e.g. best_metric val_loss without a validation split
            raise (loaded.locate(exc) if exc.place is None else exc) from None
        ds = self.dataset
        self.data_info = {
            **(ds.info or {}),
            "sizes": {
                s: (0 if getattr(ds, s, None) is None else int(len(getattr(ds, s).x)))
                for s in ("train", "val", "test")
            },
            "fingerprint": fingerprint(
                ds.train.x, ds.train.y, *((ds.val.x, ds.val.y) if ds.val is not None else ())
            ),
        }
        if sha is not None:
            self.data_info["file_sha256"] = sha
        self.folder: Path | None = None
        self.info: RunInfo | None = None
        self.resume_step: int | None = None
        #: the run whose weights a new run starts from (run.json's ``init_from``), and a resumed
        #: run's larger budget (``nncli.runs.session.extend``)
        self.init_from: dict[str, Any] | None = None
        self.extension: Extension | None = None
        self._lock = None

    # -- the run folder --------------------------------------------------------------------------------
    def open(self, runs_dir: Path) -> Path:
        """Create the run folder (new run) or reopen it (resume), and attach the run recorder.

        Before anything is written: the runs folder must be writable and its disk must have room
        for the run's checkpoints (``nncli.runs.session.preflight``), else a RunError (exit 2) and no folder.
        """
        from nncli.runs.session.preflight import (
            bytes_needed,
            check_free_space,
            check_runs_dir,
            check_writable,
            lock_run,
            not_writable,
        )

        step = self.resume_step
        need, ckpt = bytes_needed(self.trainer, step is None)
        if step is None:  # a new run
            check_free_space(runs_dir, need, ckpt)
            check_runs_dir(runs_dir)
            try:
                folder = self.folder = create_run_dir(runs_dir, self.cfg.name, populate=self._populate)
            except BaseException as exc:  # nothing of the run is left behind (create_run_dir)
                self.release()
                self.info = None
                if isinstance(exc, OSError):
                    raise not_writable(runs_dir, exc) from None
                raise
            self._opened()[1].folder = folder
        else:
            if self.folder is None:
                raise RuntimeError("a resumed session needs its run folder (see prepare_resume)")
            folder = self.folder
            check_free_space(folder, need, ckpt)
            check_own_files(folder)
            check_writable(folder)
            check_writable(folder / "checkpoints")
            self._lock = lock_run(folder)  # refuses while another process trains this run
            check_own_files(folder)  # again, now that no nncli can be changing it
            for tmp in folder.glob(".*.tmp"):  # left by a write that a kill -9 cut short
                tmp.unlink(missing_ok=True)
            trim_metrics(folder / "metrics.jsonl", step)
            trim_metrics(folder / WATCH_FILE, step)
            self.info = info = RunInfo.load(folder)
            resumes = list(info.data.get("resumes", []))
            at, previous = iso(utc_now()), info.data.get("status")
            resumes.append({"at": at, "step": step, "command": command_line(), "previous_status": previous})
            fields: dict[str, Any] = {"status": "running", "ended": None, "resumes": resumes}
            if self.extension is not None:  # run.json first: it says why config.yaml changes
                extensions = list(info.data.get("extensions", []))
                extensions.append(self.extension.record(at, command_line(), previous))
                fields["extensions"] = extensions
            info.update(**fields)
            if self.extension is not None:
                self._write_config(folder, folder.name)
        self.trainer.callbacks.insert(0, RunRecorder(folder, {"config_sha256": config_hash(self.cfg)}))
        if self.cfg.train.watch is not None:
            self.trainer.callbacks.append(WatchRecorder(folder, self.cfg.train.watch.every))
        return folder

    def _opened(self) -> tuple[Path, RunInfo]:
        """The run folder and its run.json, once ``open`` has made or reopened them."""
        if self.folder is None or self.info is None:
            raise RuntimeError("the session's run folder is not open (Session.open makes it)")
        return self.folder, self.info

    def release(self) -> None:
        """Let another process resume this run (the lock taken by ``open``)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    def _populate(self, folder: Path, name: str) -> None:
        """Lock the run being created in ``folder`` and write its first files (it will be ``name``)."""
        from nncli.runs.session.preflight import lock_run

        if self._lock is None:
            self._lock = lock_run(folder)  # the lock stays with the folder when it is renamed
        self._write_new_run(folder, name)

    def start_from(self, init) -> None:
        """Start from the weights of another run's checkpoint (``nncli.runs.session.init_from.InitFrom``);
        CheckpointError placed at the first layer whose shapes differ."""
        from nncli.runs.session.init_from import apply_init

        apply_init(self.chain, init, self.loaded)
        self.init_from = init.record()

    def _write_config(self, folder: Path, name: str) -> None:
        head = (
            f"# Resolved config of run {name}: defaults filled in, overrides applied.\n"
            f"# Overrides: {' '.join(self.overrides) if self.overrides else '(none)'}\n"
        )
        ext = self.extension
        if ext is not None:
            head += f"# Extended from {ext.old_steps} to {ext.new_steps} steps by {' '.join(ext.overrides)}\n"
        atomic_write_text(folder / "config.yaml", head + dump_yaml(config_dict(self.cfg)))

    def _write_new_run(self, folder: Path, name: str) -> None:
        self._write_config(folder, name)
        self.info = RunInfo.start(
            folder,
            seed=self.cfg.seed,
            argv=command_line(),
            overrides=self.overrides,
            data_info=self.data_info,
            extra={
                "name": self.cfg.name,
                "dtype": self.cfg.dtype,
                "data_base_dir": str(self.base_dir.resolve()),
                "param_count": self.chain.param_count,
                "config_sha256": config_hash(self.cfg),
                **({"init_from": self.init_from} if self.init_from is not None else {}),
            },
        )

    def fail(self, exc: BaseException) -> None:
        """Record why the run stopped. Never raises: on a full disk run.json may not be writable,
        and the error the user must see is ``exc``, not this one."""
        if self.info is None:
            return
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            self.info.finish(status, error=f"{type(exc).__name__}: {exc}")
        except (OSError, KeyboardInterrupt):
            pass

    def finish(self, result) -> dict[str, Any]:
        """Write summary.json and the final status; return the summary."""
        from nncli.training.loop import evaluate

        folder, info = self._opened()
        t = self.trainer
        test = test_best = None
        ds_test = getattr(self.dataset, "test", None)
        if result.status == "completed" and ds_test is not None and len(ds_test.x):
            x = np.ascontiguousarray(ds_test.x, dtype=self.chain.dtype)
            y = t.as_targets(ds_test.y, self.chain.dtype)
            test = evaluate(self.chain, self.chain.loss, x, y, t.classifier, t.metrics)
            test_best = self._test_with_best_weights(result, x, y)
        best = dict(result.best_eval or {})
        if best:
            best["metric"] = self.cfg.train.best_metric
        summary = {
            "status": result.status,
            "reason": result.reason,
            "steps": result.steps,
            "epochs": t.epoch,
            "wall_time": round(result.seconds, 3),
            "param_count": self.chain.param_count,
            "final": result.last_eval,
            "best": best or None,
            "test": test,
            "test_best": test_best,
            **result.extra,
            "run_dir": str(folder.resolve()),
        }
        atomic_write_json(folder / "summary.json", summary)
        info.finish(result.status, reason=result.reason, steps=result.steps)
        return jsonable(summary)

    def _test_with_best_weights(self, result, x, y):
        """Test metrics of the ``best`` checkpoint when it is not the final weights (else None)."""
        from nncli.runs.checkpoint import has_checkpoint, load_checkpoint
        from nncli.training.loop import evaluate

        folder = self._opened()[0] / "checkpoints"
        best_step = (result.best_eval or {}).get("step")
        if best_step is None or best_step == result.steps or not has_checkpoint(folder, "best"):
            return None
        final = self.chain.state_dict()
        self.chain.load_state_dict(load_checkpoint(folder, "best").weights)
        try:
            t = self.trainer
            return {**evaluate(self.chain, self.chain.loss, x, y, t.classifier, t.metrics), "step": best_step}
        finally:
            self.chain.load_state_dict(final)


def prepare(
    config_path: Path, overrides: list[str], name: str | None = None, init_from: str | Path | None = None
) -> Session:
    """A session for a new run of ``config_path``; ``init_from`` (``RUN[:best|last]``): start from
    that run's weights (``nncli.runs.session.init_from``)."""
    from nncli.config.load import load_config
    from nncli.runs.session.init_from import read_init, split_spec

    init = read_init(*split_spec(init_from)) if init_from is not None else None  # cheap checks first
    loaded = load_config(config_path, overrides)
    cfg = loaded.config
    if name is not None:
        if not NAME_RE.match(name):
            raise ConfigError(f"--name may hold only letters, digits, '_', '.' and '-', got {name!r}")
        cfg = cfg.model_copy(update={"name": name})
    session = Session(loaded, cfg, loaded.folder_of("data.source"), overrides)
    if init is not None:
        session.start_from(init)
    return session
