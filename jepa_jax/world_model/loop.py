"""The world-model training loop: `train(config, workdir)` for `config.method = "world_model"`.

A fork of the JEPA loop (jepa_jax.train.loop) for the action-conditioned predictor: the batch is
generated inside the jitted step from (seed, step), so there is no data iterator, and the
checkpoint holds the train state alone. A run with a checkpoint in `workdir` resumes from it and
reproduces the losses of a run that never stopped. `jepa-jax plan` then plans with the result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from jepa_jax import config_lib
from jepa_jax.checkpoint import Checkpointer
from jepa_jax.train.loop import _StopRequest as StopRequest
from jepa_jax.train.loop import host_metrics
from jepa_jax.train.reporting import Reporter, format_duration
from jepa_jax.world_model.setup import build_world_model_trainer

# Loss terms shown on the progress line (all are in metrics.jsonl and TensorBoard).
SHOWN_TERMS = (("teacher_forcing", "tf"), ("rollout", "roll"), ("inverse_dynamics", "idm"))


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
        return " | ".join(parts + self.rate_parts(step, s))


def train(config: Mapping[str, Any], workdir: str) -> dict[str, Any]:
    """Train (or resume) the world model to `config.total_steps`.

    Returns:
      {"final_metrics": metrics of the last logged step, "interrupted": True if stopped early
       by a signal, "train_seconds": wall time of the steps run by this call}.
    """
    config_lib.validate_config(config, jax.device_count(), jax.process_count())
    trainer = build_world_model_trainer(config)
    mesh, total_steps = trainer.mesh, int(config.total_steps)
    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(workdir, int(config.checkpoint_every), int(config.keep_checkpoints))
    reporter = WorldModelReporter(
        workdir, total_steps, int(config.batch_size), jax.process_index() == 0, unit="sequences"
    )
    wm = config.world_model
    reporter.print(
        f"jepa-jax world model: {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"mesh {dict(mesh.shape)}; workdir {workdir}"
    )
    reporter.print(
        f"Two Rooms sequences: {wm.num_steps} model steps of {wm.action_chunk} env steps, "
        f"batch {config.batch_size}, {'random' if not config.env.fixed_wall else 'fixed'} walls; "
        f"encoder {'trained jointly' if wm.encoder_trainable else 'frozen'}"
    )

    with jax.set_mesh(mesh):
        latest = ckpt.latest_step()
        if latest is None:
            state, shardings = trainer.create_state()
        else:
            abstract = trainer.abstract_state()
            state = ckpt.restore(latest, abstract, None)
            shardings = jax.tree.map(lambda a: a.sharding, abstract)
            reporter.print(f"resumed from checkpoint at step {latest}")
        n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
        reporter.print(f"{n_params / 1e6:.2f}M trainable parameters")
        start_step = int(jax.device_get(state["step"]))
        step_fn = trainer.make_step(shardings)
        metrics_host: dict[str, float] = {}
        interrupted = False
        t_start = time.perf_counter()
        with StopRequest() as stop:
            for step in range(start_step, total_steps):
                state, metrics = step_fn(state)
                done = step + 1
                first = step == start_step
                if first or done % int(config.log_every) == 0 or done == total_steps:
                    metrics_host = host_metrics(metrics)
                    if not np.isfinite(metrics_host["loss"]):
                        raise FloatingPointError(
                            f"loss is {metrics_host['loss']} at step {done}; lower optim.lr "
                            f"(last checkpoint: {ckpt.latest_step()})"
                        )
                    if first:
                        reporter.print(
                            f"compiled and ran the first step in "
                            f"{format_duration(time.perf_counter() - t_start)}"
                        )
                        reporter.report(done, metrics_host)
                        reporter.start(done)
                    else:
                        metrics_host = reporter.report(done, metrics_host)
                if ckpt.should_save(done, total_steps) or stop.signum is not None:
                    ckpt.save(done, state, None)
                if stop.signum is not None:
                    reporter.print(
                        f"stopped by signal {stop.signum} after step {done}; checkpoint saved, "
                        f"run the same command to resume"
                    )
                    interrupted = True
                    break
        ckpt.close()
    reporter.close()
    seconds = time.perf_counter() - t_start
    if start_step < total_steps and not interrupted:
        reporter.print(f"trained {total_steps - start_step} steps in {format_duration(seconds)}")
    logging.info("world-model training finished at step %d", int(jax.device_get(state["step"])))
    return {"final_metrics": metrics_host, "interrupted": interrupted, "train_seconds": seconds}
