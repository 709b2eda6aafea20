"""Learning curves: a training run's target encoder probed at several checkpoints.

The curve (probe accuracy vs training step) says whether pretraining helps the way a single
checkpoint cannot: accuracy must rise with training, not fall. `benchmarks/learning_curve.py`
draws learning_curve.json as a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import ml_collections

from jepa_jax.errors import ConfigError
from jepa_jax.eval.suite import run_eval
from jepa_jax.rundir import committed_steps, write_json_atomic

CURVE_FILE = "learning_curve.json"


def run_learning_curve(
    config: Mapping[str, Any],
    checkpoint: str,
    workdir: str,
    *,
    steps: list[int] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Probe a training run's target encoder at several checkpoints: accuracy vs step.

    The baselines (config.probe.baselines) do not change with the step, so they are probed once,
    with the first step. Each step's results also go to TensorBoard at that step.

    Args:
      config: a probe config, as for `run_eval`.
      checkpoint: a training workdir.
      workdir: where learning_curve.json (and each step's eval_results.json) go.
      steps: checkpoint steps to probe (default: every committed one; the run keeps the last
        `keep_checkpoints`).

    Returns:
      The curve written to <workdir>/learning_curve.json: {"task", "chance", "steps",
      "trained": {probe: [accuracy per step]}, "baselines": {encoder: {probe: accuracy}}}.
    """
    available = committed_steps(checkpoint)
    if not available:
        raise ConfigError(f"{checkpoint!r} holds no committed checkpoint to draw a curve from")
    missing = sorted(set(steps or []) - set(available))
    if missing:
        raise ConfigError(f"no checkpoint at steps {missing} in {checkpoint!r}; kept: {available}")
    steps = sorted(steps or available)
    curve: dict[str, Any] = {"steps": steps, "trained": {}, "baselines": {}}
    for i, step in enumerate(steps):
        step_config = ml_collections.ConfigDict(config.to_dict())
        if i > 0:
            step_config.probe.baselines = ()
        log(f"learning curve: step {step} ({i + 1}/{len(steps)})")
        results = run_eval(step_config, checkpoint, workdir, step, log)
        curve.update(task=results["task"], chance=results["chance"])
        for encoder, per_probe in results["encoders"].items():
            for probe_name, r in per_probe.items():
                if encoder == "trained":
                    curve["trained"].setdefault(probe_name, []).append(r["accuracy"])
                else:
                    curve["baselines"].setdefault(encoder, {})[probe_name] = r["accuracy"]
    if jax.process_index() == 0:
        write_json_atomic(os.path.join(workdir, CURVE_FILE), curve)
    log(f"learning curve: wrote {os.path.join(workdir, CURVE_FILE)}")
    for probe_name, accs in curve["trained"].items():
        log(
            f"  {probe_name}: "
            + "  ".join(f"{s}:{a:.3f}" for s, a in zip(steps, accs, strict=True))
        )
    return curve
