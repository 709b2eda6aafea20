"""The I-JEPA / V-JEPA training loop: `train(config, workdir)`.

Importable from a notebook; the CLI (`jepa-jax train`) is a thin wrapper around it. A run with an
existing checkpoint in `workdir` resumes from it: the train state and the grain iterator are
restored, so the resumed run produces the same losses as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from jepa_jax import config_lib
from jepa_jax.eval.pretrain_probe import precheck_probe, run_pretrain_probe
from jepa_jax.hardware import compiled_flops, peak_tflops_per_device
from jepa_jax.sharding import make_global_batch
from jepa_jax.train.data_stats import DataStats
from jepa_jax.train.flops import jepa_step_flops
from jepa_jax.train.reporting import StepPerformance
from jepa_jax.train.runner import run
from jepa_jax.train.setup import build_trainer


def step_performance(trainer, compiled) -> StepPerformance:
    """Model FLOPs per device (analytic; XLA's count of the compiled step for reference) and the
    device's peak, for throughput and MFU."""
    device = trainer.mesh.devices.flat[0]
    peak, source = peak_tflops_per_device(device, str(trainer.config.model.dtype))
    return StepPerformance(
        flops_per_device=jepa_step_flops(trainer) / trainer.mesh.devices.size,
        xla_flops_per_device=compiled_flops(compiled),
        tokens_per_example=int(np.prod(trainer.sampler.grid)),
        peak_tflops_per_device=peak,
        peak_source=source,
    )


def train(config: Mapping[str, Any], workdir: str) -> dict[str, Any]:
    """Train (or resume) to `config.total_steps`, then run the configured probe.

    Returns:
      {"final_metrics": metrics of the last logged step, "probe": probe results or None,
       "interrupted": True if stopped early by a signal, "skipped_steps": non-finite steps
       skipped under config.nan_policy="skip_step"}.

    Raises:
      ConfigError: a config that cannot work (before anything is written).
      RunError: the run diverged or a checkpoint could not be saved (train.runner).
    """
    # Set-up: config checks, mesh, data, masks, models, optimizer; nothing is written before the
    # config is known to work.
    config_lib.validate_config(config, jax.device_count(), jax.process_count())
    trainer = build_trainer(config)
    precheck_probe(config)  # a probe task the data lacks fails now, not after training
    data_iter = iter(trainer.train_dataset())
    data_stats = DataStats()

    def make_advance(shardings, reporter):
        step_fn = None

        def advance(state):
            nonlocal step_fn
            batch = make_global_batch(data_stats.next_batch(data_iter), trainer.mesh)
            if step_fn is None:
                # Compile ahead of time once: the executable's cost analysis gives the FLOPs for
                # throughput/MFU, and running it rejects any shape change outright.
                step_fn = trainer.make_step(shardings, batch).lower(state, batch).compile()
                reporter.set_performance(step_performance(trainer, step_fn))
            return step_fn(state, batch)

        return advance, data_stats.scalars

    header = trainer.sampler.describe().splitlines()
    if trainer.image_sampler is not None:  # joint image + video training
        header.append(
            f"images: {config.images.batch_size} of {config.images.data.name} per step beside the "
            f"clips, loss share {config.images.loss_share}"
        )
        header += [f"image {line}" for line in trainer.image_sampler.describe().splitlines()]
    outcome = run(config, trainer, workdir, make_advance, header, data_iter)
    state = outcome.state

    # End-of-training probe (trained vs random-init encoder).
    probe_results = None
    if config.probe.enabled and not outcome.interrupted:
        probe_results = run_pretrain_probe(
            config,
            trainer.encoder,
            state["target_params"]["encoder"],
            trainer.mesh,
            workdir,
            log=lambda s: print(s, flush=True) if jax.process_index() == 0 else None,
        )
    logging.info("training finished at step %d", int(jax.device_get(state["step"])))
    return {
        "final_metrics": outcome.final_metrics,
        "probe": probe_results,
        "interrupted": outcome.interrupted,
        "skipped_steps": outcome.skipped_steps,
    }
