"""The world-model training loop: `train(config, workdir)` for `config.method = "world_model"`.

The action-conditioned predictor's set-up around the shared step loop (jepa_jax.train.runner):
the batch is generated inside the jitted step from (seed, step), so there is no data iterator,
and the checkpoint holds the train state alone. A run with a checkpoint in `workdir` resumes from
it and reproduces the losses of a run that never stopped. `jepa-jax plan` then plans with the
result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from absl import logging

from jepa_jax import config_lib
from jepa_jax.train.reporting import Reporter
from jepa_jax.train.runner import run
from jepa_jax.world_model.setup import build_world_model_trainer

# Loss terms shown on the progress line (all are in metrics.jsonl and TensorBoard).
SHOWN_TERMS = (
    ("teacher_forcing", "tf"),
    ("rollout", "roll"),
    ("inverse_dynamics", "idm"),
    ("state", "state_px2"),
    ("distance", "dist"),
)


class WorldModelReporter(Reporter):
    """The JEPA reporter with a world-model progress line:
    step | loss | tf | roll | idm | lr | feat_std | rank | steps/s | sequences/s | ETA."""

    def line(self, step: int, s: Mapping[str, float]) -> str:
        width = len(str(self.total_steps))
        parts = [f"step {step:>{width}}/{self.total_steps}", f"loss {s['loss']:.4f}"]
        parts += [f"{short} {s[f'loss_{k}']:.4f}" for k, short in SHOWN_TERMS if f"loss_{k}" in s]
        parts += [
            f"lr {s['lr']:.2e}",
            f"feat_std {s['feature_std']:.3f}",
            f"rank {s['effective_rank']:.1f}",
        ]
        return " | ".join(parts + self.rate_parts(step, s) + self.fault_parts(s))


def train(config: Mapping[str, Any], workdir: str) -> dict[str, Any]:
    """Train (or resume) the world model to `config.total_steps`.

    Returns:
      {"final_metrics": metrics of the last logged step, "interrupted": True if stopped early
       by a signal, "train_seconds": wall time of the steps run by this call}.
    """
    config_lib.validate_config(config, jax.device_count(), jax.process_count())
    trainer = build_world_model_trainer(config)
    wm = config.world_model
    banner = [
        f"world model on Two Rooms sequences: {wm.num_steps} model steps of {wm.action_chunk} "
        f"env steps, batch {config.batch_size}, "
        f"{'random' if not config.env.fixed_wall else 'fixed'} walls; encoder "
        f"{'trained jointly' if wm.encoder_trainable else 'frozen'}"
    ]
    outcome = run(
        config,
        trainer,
        workdir,
        lambda shardings, reporter: (trainer.make_step(shardings), None),
        banner,
        reporter_class=WorldModelReporter,
    )
    state = outcome.state
    logging.info("world-model training finished at step %d", int(jax.device_get(state["step"])))
    return {
        "final_metrics": outcome.final_metrics,
        "interrupted": outcome.interrupted,
        "train_seconds": outcome.seconds,
        "skipped_steps": outcome.skipped_steps,
    }
