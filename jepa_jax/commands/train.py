"""`jepa-jax train --config=configs/<file>.py[:arg] --workdir=DIR [--config.key=value ...]`

Trains until `config.total_steps`; if DIR holds a checkpoint, resumes from it. Writes
DIR/checkpoints, DIR/tensorboard, DIR/metrics.jsonl and (when the config's probe is enabled)
DIR/probe_results.json. `config.method` picks the loop: "jepa" (I-JEPA / V-JEPA, the default) or
"world_model" (the action-conditioned Two Rooms world model, e.g. configs/ac_two_rooms.py).
"""

from __future__ import annotations

from absl import flags

from jepa_jax import compile_cache, distributed
from jepa_jax.commands.common import (
    define_config_flag,
    directory_flag,
    loaded_config,
    start_command,
)

define_config_flag(
    "Config file, configs/<file>.py[:arg]; override fields with --config.<key>=<value>."
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Run directory: checkpoints, TensorBoard events, metrics.jsonl, probe_results.json. "
    "A checkpoint found here is resumed.",
)
flags.mark_flags_as_required(["config", "workdir"])
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process runs: host:port of process 0 (else auto-detect)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process runs: process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Join a multi-process run found by JAX's auto-detection (TPU VM pods, SLURM, MPI); implied "
    "by --coordinator_address and by JAX_COORDINATOR_ADDRESS / SLURM with several tasks.",
)


def main(argv: list[str]) -> None:
    start_command(argv)
    # Before anything touches a JAX backend.
    distributed.initialize(
        _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _DISTRIBUTED.value
    )
    config = loaded_config()
    workdir = directory_flag("workdir")
    cache = compile_cache.cache_dir(config, workdir)
    if cache:  # before anything compiles
        compile_cache.enable(cache)
    # heavy imports after flag parsing; config.method picks the training loop
    if config.method == "world_model":
        from jepa_jax.world_model.loop import train
    else:
        from jepa_jax.train.loop import train

    train(config, workdir)
    import jax

    if cache and jax.process_index() == 0:
        counts = compile_cache.summary()
        print(
            f"compile cache {cache}: {counts['hits']} compilations loaded, "
            f"{counts['misses']} compiled and stored",
            flush=True,
        )
