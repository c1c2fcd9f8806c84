"""TensorBoard event files, written with TensorBoard's own event writer (no TensorFlow, no PyTorch).

Scalars go under ``train/<field>`` and ``eval/<field>`` (``train/train_loss``, ``eval/val_acc``), the
learning rate under ``lr``; the resolved config.yaml is a text summary ``config`` at step 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nncli.runs.trackers import TrackerError, scalars

DIRNAME = "tensorboard"


def import_tensorboard():
    """(EventFileWriter, event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2); TrackerError when
    tensorboard is not installed."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise TrackerError(
            "--logger tensorboard needs the 'tensorboard' package: pip install 'nncli[tensorboard]'"
        ) from None
    return EventFileWriter, event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2


class TensorBoardTracker:
    def __init__(self, session):
        self.session = session
        self.writer = None
        import_tensorboard()  # refuse before the run folder exists when the package is missing

    @property
    def logdir(self) -> Path:
        return Path(self.session.folder) / DIRNAME

    def on_begin(self, trainer) -> None:
        writer_cls, *_ = import_tensorboard()
        self.writer = writer_cls(str(self.logdir))
        config = Path(self.session.folder) / "config.yaml"
        if config.is_file():
            self.text("config", config.read_text(encoding="utf-8"), trainer.state.step)

    def _event(self, step: int, values: list) -> None:
        _, event_pb2, summary_pb2, *_ = import_tensorboard()
        self.writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values))
        )

    def scalars(self, prefix: str, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        _, _, summary_pb2, *_ = import_tensorboard()
        values = []
        for k, v in scalars(record).items():
            if k == "seconds":
                continue
            tag = "lr" if k == "lr" else f"{prefix}/{k}"
            values.append(summary_pb2.Summary.Value(tag=tag, simple_value=v))
        if values:
            self._event(record.get("step", 0), values)

    def text(self, tag: str, text: str, step: int) -> None:
        """A text summary, as TensorBoard's text plugin reads it (a string tensor)."""
        _, _, summary_pb2, tensor_pb2, tensor_shape_pb2 = import_tensorboard()
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text")
        )
        tensor = tensor_pb2.TensorProto(
            dtype=7,  # DT_STRING
            string_val=[f"```\n{text}\n```".encode()],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]
            ),
        )
        self._event(step, [summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor)])

    def on_log(self, trainer, record) -> None:
        self.scalars("train", record)

    def on_eval(self, trainer, record, improved) -> None:
        self.scalars("eval", record)

    def on_end(self, trainer, result) -> None:
        if self.writer is not None:
            self.writer.flush()

    def finish(self, summary) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
