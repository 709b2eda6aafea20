"""Training metrics out: TensorBoard (clu), metrics.jsonl, and a readable progress line.

Only process 0 writes; other processes' reporters are silent.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping

from clu import metric_writers


def format_duration(seconds: float) -> str:
    """Compact h/m/s text, e.g. '1h02m', '4m05s', '12s'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class Reporter:
    """Writes each logged step's scalars and prints one progress line.

    The line: step, loss, lr, EMA momentum, collapse monitors, steps/s, clips/s and ETA, with
    rates measured over the interval since the previous report (the first interval, which
    includes compilation, is reported separately).
    """

    def __init__(
        self,
        workdir: str,
        total_steps: int,
        examples_per_step: int,
        is_main: bool,
        unit: str = "clips",
        stream=None,
    ):
        self.total_steps = total_steps
        self.examples_per_step = examples_per_step
        self.is_main = is_main
        self.unit = unit
        self.stream = stream or sys.stdout
        self.writer = None
        self.jsonl = None
        if is_main:
            self.writer = metric_writers.AsyncWriter(
                metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard"))
            )
            self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        self._last_step: int | None = None
        self._last_time: float | None = None

    def start(self, step: int) -> None:
        """Mark the step the timing intervals start from (after the first, compiling step)."""
        self._last_step, self._last_time = step, time.perf_counter()

    def print(self, text: str) -> None:
        if self.is_main:
            print(text, file=self.stream, flush=True)

    def report(self, step: int, metrics: Mapping[str, float]) -> dict[str, float]:
        """Record `metrics` (host floats) at `step`; returns them with the rate fields added."""
        now = time.perf_counter()
        scalars = dict(metrics)
        if self._last_step is not None and step > self._last_step:
            steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
            scalars["steps_per_s"] = steps_per_s
            scalars[f"{self.unit}_per_s"] = steps_per_s * self.examples_per_step
        self._last_step, self._last_time = step, now
        if not self.is_main:
            return scalars
        self.writer.write_scalars(step, scalars)
        self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self.jsonl.flush()
        self.print(self.line(step, scalars))
        return scalars

    def line(self, step: int, s: Mapping[str, float]) -> str:
        width = len(str(self.total_steps))
        parts = [
            f"step {step:>{width}}/{self.total_steps}",
            f"loss {s['loss']:.4f}",
            f"lr {s['lr']:.2e}",
            f"ema {s['ema_momentum']:.5f}",
            f"feat_std {s['feature_std']:.3f}",
            f"rank {s['effective_rank']:.1f}",
        ]
        return " | ".join(parts + self.rate_parts(step, s))

    def rate_parts(self, step: int, s: Mapping[str, float]) -> list[str]:
        """The progress line's tail: steps/s, items/s and ETA (empty before rates are known)."""
        if "steps_per_s" not in s:
            return []
        rate = s["steps_per_s"]
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        return [
            f"{rate:.2f} steps/s",
            f"{s[f'{self.unit}_per_s']:.1f} {self.unit}/s",
            f"ETA {format_duration(eta)}",
        ]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
