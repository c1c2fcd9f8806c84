"""An MLflow run per nncli run, through ``MlflowClient`` (no global active run, safe beside other code).

Tracking URI: ``MLFLOW_TRACKING_URI`` when set (a server, a database, a folder), else SQLite at
``<runs dir>/mlflow.db`` with artifacts in ``<runs dir>/mlartifacts``. The experiment is named after the
config, the MLflow run after the run folder; params are the flattened resolved config (``--set`` paths).
Metrics are sent in batches, one per train or eval row; at the end config.yaml, summary.json,
metrics.jsonl and checkpoints/ are logged as artifacts and the run's status set.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from nncli.runs.trackers import TrackerError, scalars

#: MLflow's own limit on a param value's length
MAX_PARAM = 6000


def import_mlflow():
    """(MlflowClient, Metric, Param); TrackerError when mlflow is not installed."""
    try:
        import mlflow  # noqa: F401
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackerError(
            "--logger mlflow needs the 'mlflow' package: pip install 'nncli[mlflow]'"
        ) from None
    for name in ("mlflow", "alembic"):  # the database set-up chatter on every first use of a store
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient, Metric, Param


def tracking_uri(runs_dir: Path | str) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment, or None for a server's own default)."""
    root = Path(runs_dir).resolve()
    artifacts = (root / "mlartifacts").as_uri()
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{root / 'mlflow.db'}", artifacts
    # a tracking server keeps artifacts where it was told to; a bare database store would put them in
    # ./mlruns of whatever folder nncli runs in, so they go beside the runs instead
    return uri, None if uri.split(":", 1)[0] in ("http", "https", "databricks") else artifacts


class MlflowTracker:
    def __init__(self, session, runs_dir):
        import_mlflow()
        self.session, self.runs_dir = session, runs_dir
        self.client = self.run_id = None

    def on_begin(self, trainer) -> None:
        from nncli.runs.folder.safe_read import read_config
        from nncli.runs.listing import flatten

        client_cls, _, param_cls = import_mlflow()
        folder = Path(self.session.folder)
        uri, artifacts = tracking_uri(self.runs_dir)
        Path(self.runs_dir).mkdir(parents=True, exist_ok=True)
        self.client = client_cls(tracking_uri=uri)
        config = read_config(folder)
        name = str(config.get("name") or "nncli")
        exp = self.client.get_experiment_by_name(name)
        exp_id = (
            exp.experiment_id if exp else self.client.create_experiment(name, artifact_location=artifacts)
        )
        existing = self.client.search_runs(
            [exp_id], filter_string=f"tags.nncli_run_dir = '{folder}'", max_results=1
        )
        if existing:  # a resumed run continues its MLflow run
            self.run_id = existing[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            return
        run = self.client.create_run(exp_id, run_name=folder.name, tags={"nncli_run_dir": str(folder)})
        self.run_id = run.info.run_id
        # MLflow's names take no brackets: model.layers[0].out → model.layers.0.out
        params = [
            param_cls(re.sub(r"\[(\d+)\]", r".\1", k)[:250], str(v)[:MAX_PARAM])
            for k, v in flatten(config).items()
        ]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def _metrics(self, record: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        _, metric_cls, _ = import_mlflow()
        now, step = int(time.time() * 1000), int(record.get("step", 0))
        values = [
            metric_cls(k, v, now, step)
            for k, v in scalars(record).items()
            if v == v and abs(v) != float("inf")
        ]
        if values:
            self.client.log_batch(self.run_id, metrics=values)

    def on_log(self, trainer, record) -> None:
        self._metrics(record)

    def on_eval(self, trainer, record, improved) -> None:
        self._metrics(record)

    def on_end(self, trainer, result) -> None:
        self.status = {"completed": "FINISHED", "interrupted": "KILLED"}.get(result.status, "FAILED")

    def finish(self, summary) -> None:
        if self.run_id is None:
            return
        folder = Path(self.session.folder)
        for name in ("config.yaml", "summary.json", "metrics.jsonl"):
            if (folder / name).is_file():
                self.client.log_artifact(self.run_id, str(folder / name))
        if (folder / "checkpoints").is_dir():
            self.client.log_artifacts(self.run_id, str(folder / "checkpoints"), artifact_path="checkpoints")
        self.client.set_terminated(self.run_id, status=getattr(self, "status", "FAILED"))
