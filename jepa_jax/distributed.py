"""Joining a multi-process JAX run (TPU pod slices, multi-node GPU, several CPU processes).

Uses JAX's own runtime (`jax.distributed.initialize`) and nothing home-made: with an explicit
coordinator it connects to it; otherwise JAX auto-detects the cluster (TPU VM pod metadata,
SLURM, Open MPI, or the JAX_COORDINATOR_ADDRESS environment variables). Must run before anything
touches a JAX backend.
"""

from __future__ import annotations

import os

import jax
from absl import logging

from jepa_jax.errors import ConfigError

# Environment variables that mean "this process is one of several".
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "MEGASCALE_COORDINATOR_ADDRESS")


def _slurm_multi_task() -> bool:
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ


def should_initialize(coordinator_address: str | None, force: bool) -> bool:
    """Whether this process is part of a multi-process run."""
    return (
        force
        or bool(coordinator_address)
        or any(os.environ.get(k) for k in _CLUSTER_ENV)
        or _slurm_multi_task()
    )


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    force: bool = False,
) -> bool:
    """Call `jax.distributed.initialize` when the run spans processes; True if it did.

    Args:
      coordinator_address: "host:port" of process 0's coordinator; None = auto-detect.
      num_processes, process_id: required with an explicit coordinator, else auto-detected.
      force: initialise even without cluster hints (e.g. on a TPU VM pod, where JAX detects the
        workers from the TPU metadata).
    """
    if not should_initialize(coordinator_address, force):
        return False
    if coordinator_address and (num_processes is None or process_id is None):
        raise ConfigError(
            f"--coordinator_address={coordinator_address} needs --num_processes and --process_id"
        )
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ConfigError(
            f"--process_id={process_id} must be in [0, --num_processes={num_processes})"
        )
    # Cross-process collectives on the CPU backend go through gloo (harmless on TPU/GPU).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address or None,
        num_processes=num_processes,
        process_id=process_id,
    )
    logging.info(
        "joined distributed run: process %d of %d", jax.process_index(), jax.process_count()
    )
    return True
