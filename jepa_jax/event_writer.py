"""TensorBoard scalars without TensorFlow.

clu's SummaryWriter imports TensorFlow (4 s of start-up, and TF's C++ logging on stderr), and so
does tensorboard's EventFileWriter when TF is installed (it opens files through tf.io.gfile). An
event file is a stream of length- and CRC-framed `Event` protos: tensorboard's RecordWriter
frames them into a plain local file. Writes are a few hundred bytes per logged step.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


class ScalarWriter:
    """Writes scalars to `<logdir>/events.out.tfevents.*`, readable by TensorBoard.

    The same methods as clu's MetricWriter for scalars: `write_scalars`, `flush`, `close`.
    """

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        # TensorBoard reads every file whose name contains "tfevents", newest last.
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        self._writer = RecordWriter(open(self.path, "ab"))
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """One event at `step` holding every scalar (names as TensorBoard tags)."""
        values = [
            summary_pb2.Summary.Value(tag=name, simple_value=float(value))
            for name, value in scalars.items()
        ]
        event = event_pb2.Event(
            wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)
        )
        self._write(event)

    def _write(self, event: event_pb2.Event) -> None:
        self._writer.write(event.SerializeToString())
        self._writer.flush()  # a killed run keeps every logged step

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
