"""Training metrics out: TensorBoard events, metrics.jsonl, and a readable progress line.

Only process 0 writes; other processes' reporters are silent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Mapping

from jepa_jax.event_writer import ScalarWriter

METRICS_FILE = "metrics.jsonl"


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


@dataclasses.dataclass(frozen=True)
class StepPerformance:
    """What turns steps/s into throughput and MFU."""

    flops_per_device: float  # model FLOPs of one step per device (train/flops.py)
    xla_flops_per_device: float  # XLA's cost analysis of the compiled step (loops counted once)
    tokens_per_example: int  # input tokens of one clip / image
    peak_tflops_per_device: float
    peak_source: str

    def describe(self) -> str:
        return (
            f"step: {self.flops_per_device / 1e9:.4g} model GFLOP per device (XLA's cost analysis: "
            f"{self.xla_flops_per_device / 1e9:.4g}); peak {self.peak_tflops_per_device:.3g} "
            f"TFLOP/s per device ({self.peak_source})"
        )


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
            self.writer = ScalarWriter(os.path.join(workdir, "tensorboard"))
            self.jsonl_path = os.path.join(workdir, METRICS_FILE)
            self.jsonl = open(self.jsonl_path, "a")
        self._last_step: int | None = None
        self._last_time: float | None = None
        self.first_row: dict | None = None  # a resumed run's first logged row (resume_at)
        self.performance: StepPerformance | None = None

    def resume_at(self, step: int) -> None:
        """Drop metrics.jsonl rows after `step`, the checkpoint a resumed run restarts from: a
        run killed after its last checkpoint logged steps that the resumed run logs again."""
        self.first_row = None
        if self.jsonl is None:
            return
        self.jsonl.close()
        kept = []
        with open(self.jsonl_path) as f:
            for line in f:
                try:
                    if json.loads(line)["step"] <= step:
                        kept.append(line if line.endswith("\n") else line + "\n")
                except (ValueError, KeyError, TypeError):  # a line cut short by a kill
                    continue
        self.first_row = json.loads(kept[0]) if kept else None
        tmp = f"{self.jsonl_path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, self.jsonl_path)
        self.jsonl = open(self.jsonl_path, "a")

    def set_performance(self, performance: StepPerformance) -> None:
        """Enable tokens/s, TFLOP/s per device and MFU in the reports."""
        self.performance = performance
        self.print(performance.describe())

    def start(self, step: int) -> None:
        """Mark the step the timing intervals start from (after the first, compiling step)."""
        self._last_step, self._last_time = step, time.perf_counter()

    def print(self, text: str) -> None:
        if self.is_main:
            print(text, file=self.stream, flush=True)

    def warn(self, text: str) -> None:
        """A warning the user must see: one line on stderr (process 0 only)."""
        if self.is_main:
            print(f"jepa-jax: warning: {text}", file=sys.stderr, flush=True)

    def report(self, step: int, metrics: Mapping[str, float]) -> dict[str, float]:
        """Record `metrics` (host floats) at `step`; returns them with the rate fields added."""
        now = time.perf_counter()
        scalars = dict(metrics)
        if self._last_step is not None and step > self._last_step:
            steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
            scalars["steps_per_s"] = steps_per_s
            scalars[f"{self.unit}_per_s"] = steps_per_s * self.examples_per_step
            if self.performance is not None:
                perf = self.performance
                scalars["tokens_per_s"] = scalars[f"{self.unit}_per_s"] * perf.tokens_per_example
                tflops = perf.flops_per_device * steps_per_s / 1e12
                scalars["tflops_per_device"] = tflops
                scalars["mfu"] = tflops / perf.peak_tflops_per_device
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
        parts += self.rate_parts(step, s)
        if s.get("data/replaced"):  # unreadable inputs skipped so far (data.reading)
            parts.append(f"replaced {int(s['data/replaced'])} inputs")
        return " | ".join(parts + self.fault_parts(s))

    def fault_parts(self, s: Mapping[str, float]) -> list[str]:
        """Notes on faults, for the end of the progress line."""
        parts = []
        if s.get("collapse"):  # train.runner's collapse guard
            parts.append("COLLAPSE: rank below the collapse threshold")
        if s.get("skipped_steps"):  # config.nan_policy="skip_step"
            parts.append(f"skipped {int(s['skipped_steps'])} non-finite steps")
        return parts

    def rate_parts(self, step: int, s: Mapping[str, float]) -> list[str]:
        """The progress line's tail: steps/s, items/s, MFU (when known) and ETA; empty before
        rates are known."""
        if "steps_per_s" not in s:
            return []
        rate = s["steps_per_s"]
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        parts = [f"{rate:.2f} steps/s", f"{s[f'{self.unit}_per_s']:.1f} {self.unit}/s"]
        if "mfu" in s:
            parts.append(f"MFU {100 * s['mfu']:.0f}%")
        return parts + [f"ETA {format_duration(eta)}"]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()
