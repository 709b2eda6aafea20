"""The I-JEPA / V-JEPA training loop: `train(config, workdir)`.

Importable from a notebook; the CLI (`jepa-jax train`) is a thin wrapper around it. A run with an
existing checkpoint in `workdir` resumes from it: the train state and the grain iterator are
restored, so the resumed run produces the same losses as one that never stopped.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from jepa_jax import config_lib, rundir
from jepa_jax.checkpoint import Checkpointer
from jepa_jax.eval.pretrain_probe import run_pretrain_probe
from jepa_jax.hardware import compiled_flops, peak_tflops_per_device
from jepa_jax.sharding import make_global_batch
from jepa_jax.train.data_stats import DataStats
from jepa_jax.train.flops import jepa_step_flops
from jepa_jax.train.monitors import monitors_from_stats
from jepa_jax.train.reporting import Reporter, StepPerformance, format_duration
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


def host_metrics(metrics: dict) -> dict[str, float]:
    """Fetch a step's metrics and finish the collapse monitors on the host."""
    fetched = jax.device_get(metrics)
    stats = fetched.pop("feature_stats")
    out = {k: float(v) for k, v in fetched.items()}
    out.update(monitors_from_stats(stats))
    return out


class _StopRequest:
    """Turns SIGTERM / SIGINT into a flag the loop checks between steps, so an interrupted run
    saves a checkpoint at a step boundary instead of dying mid-step."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: give up waiting
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(config: Mapping[str, Any], workdir: str) -> dict[str, Any]:
    """Train (or resume) to `config.total_steps`, then run the configured probe.

    Returns:
      {"final_metrics": metrics of the last logged step, "probe": probe results or None,
       "interrupted": True if stopped early by a signal}.
    """
    # ----------------------------------------------------------------------------------------
    # Set-up: config checks, mesh, data, masks, models, optimizer.
    # ----------------------------------------------------------------------------------------
    config_lib.validate_config(config, jax.device_count(), jax.process_count())
    is_main = jax.process_index() == 0
    trainer = build_trainer(config)
    mesh, total_steps = trainer.mesh, int(config.total_steps)
    data_iter = iter(trainer.train_dataset())
    # Only now, with the config known to work, touch the workdir.
    os.makedirs(workdir, exist_ok=True)
    if is_main:  # lets `jepa-jax export` / `eval` rebuild the model from the workdir alone
        rundir.write_config(workdir, config)
    ckpt = Checkpointer(workdir, int(config.checkpoint_every), int(config.keep_checkpoints))
    reporter = Reporter(workdir, total_steps, int(config.batch_size), is_main, unit=trainer.unit)
    reporter.print(
        f"jepa-jax: {jax.device_count()} {jax.devices()[0].platform} device(s) in "
        f"{jax.process_count()} process(es), mesh {dict(mesh.shape)}; workdir {workdir}"
    )
    for line in trainer.sampler.describe().splitlines():
        reporter.print(line)

    # ----------------------------------------------------------------------------------------
    # State: fresh and sharded, or restored from the latest checkpoint.
    # ----------------------------------------------------------------------------------------
    with jax.set_mesh(mesh):
        latest = ckpt.latest_step()
        if latest is None:
            state, shardings = trainer.create_state()
        else:
            abstract = trainer.abstract_state()
            state = ckpt.restore(latest, abstract, data_iter)
            shardings = jax.tree.map(lambda a: a.sharding, abstract)
            reporter.print(f"resumed from checkpoint at step {latest}")
        n_params = sum(x.size for x in jax.tree.leaves(state["params"]))
        reporter.print(f"{n_params / 1e6:.2f}M trainable parameters")
        start_step = int(jax.device_get(state["step"]))

        # ------------------------------------------------------------------------------------
        # Training.
        # ------------------------------------------------------------------------------------
        step_fn = None
        metrics_host: dict[str, float] = {}
        interrupted = False
        data_stats = DataStats()
        t_start = time.perf_counter()
        with _StopRequest() as stop:
            for step in range(start_step, total_steps):
                batch = make_global_batch(data_stats.next_batch(data_iter), mesh)
                if step_fn is None:
                    # Compile ahead of time once: the executable's cost analysis gives the FLOPs
                    # for throughput/MFU, and running it rejects any shape change outright.
                    step_fn = trainer.make_step(shardings, batch).lower(state, batch).compile()
                    reporter.set_performance(step_performance(trainer, step_fn))
                state, metrics = step_fn(state, batch)
                done = step + 1
                first = step == start_step
                if first or done % int(config.log_every) == 0 or done == total_steps:
                    metrics_host = host_metrics(metrics) | data_stats.scalars()
                    if not np.isfinite(metrics_host["loss"]):
                        raise FloatingPointError(
                            f"loss is {metrics_host['loss']} at step {done}; lower optim.lr or "
                            f"enable optim.grad_clip_norm (last checkpoint: {ckpt.latest_step()})"
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
                    ckpt.save(done, state, data_iter)
                if stop.signum is not None:
                    reporter.print(
                        f"stopped by signal {stop.signum} after step {done}; checkpoint saved, "
                        f"run the same command to resume"
                    )
                    interrupted = True
                    break
        ckpt.close()
    reporter.close()
    if start_step < total_steps and not interrupted:
        reporter.print(
            f"trained {total_steps - start_step} steps in "
            f"{format_duration(time.perf_counter() - t_start)}"
        )

    # ----------------------------------------------------------------------------------------
    # End-of-training probe (trained vs random-init encoder).
    # ----------------------------------------------------------------------------------------
    probe_results = None
    if config.probe.enabled and not interrupted:
        probe_results = run_pretrain_probe(
            config,
            trainer.encoder,
            state["target_params"]["encoder"],
            mesh,
            workdir,
            log=reporter.print,
        )
    logging.info("training finished at step %d", int(jax.device_get(state["step"])))
    return {"final_metrics": metrics_host, "probe": probe_results, "interrupted": interrupted}
