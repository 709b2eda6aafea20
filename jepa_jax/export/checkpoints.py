"""Reading the target encoder out of a training workdir's orbax checkpoints.

Only `target_params/encoder` is read (orbax partial restore), not the optimizer state, and its
shapes are checked against the model the workdir's config.json describes before any array is
read, so a checkpoint of another model size is a clear error rather than a shape crash.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from flax import linen as nn

from jepa_jax import rundir
from jepa_jax.checkpoint import STATE
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.layers import unstack_layers
from jepa_jax.models.param_layout import check_same_shapes

TARGET_ENCODER = ("target_params", "encoder")


def committed_steps(workdir: str) -> list[int]:
    """Steps with a committed checkpoint in `<workdir>/checkpoints`, ascending.

    Read-only: orbax renames a save into its `<step>` directory only when it is complete, so
    in-progress saves (temporary names) of a run still training are ignored, never touched.
    """
    directory = os.path.join(workdir, rundir.CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return []
    return sorted(
        int(name)
        for name in os.listdir(directory)
        if name.isdigit() and os.path.isdir(os.path.join(directory, name, STATE))
    )


def find_checkpoint(path: str, step: int | None = None) -> tuple[str, int]:
    """(workdir, step) for a training workdir (latest step, or `step`) or a
    `<workdir>/checkpoints/<step>` directory.

    Raises:
      ConfigError: no such directory, no committed checkpoint, or no such step.
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ConfigError(f"checkpoint path not found: {path!r}")
    parent = os.path.dirname(path)
    if os.path.basename(parent) == rundir.CHECKPOINT_DIR and os.path.basename(path).isdigit():
        path_step = int(os.path.basename(path))
        if step is not None and step != path_step:
            raise ConfigError(f"step {step} asked for, but {path!r} is the step-{path_step} one")
        workdir, step = os.path.dirname(parent), path_step
    else:
        workdir = path
    steps = committed_steps(workdir)
    if not steps:
        raise ConfigError(
            f"{workdir!r} holds no committed checkpoint (expected {rundir.CHECKPOINT_DIR}/<step>/"
            f"{STATE} written by `jepa-jax train`)"
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise ConfigError(f"no checkpoint at step {step} in {workdir!r}; it has steps {steps}")
    return workdir, step


@contextlib.contextmanager
def _quiet_orbax():
    """orbax warns that a lone item directory has no step metadata; that is expected here."""
    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def expected_encoder_shapes(cfg: EncoderConfig) -> Any:
    """ShapeDtypeStructs of the (unscanned) encoder params `cfg` describes, without allocating."""
    from jepa_jax.train.state import init_encoder_params

    module = cfg.build()
    shapes = jax.eval_shape(
        lambda k: init_encoder_params(module, k, cfg.input_shape), jax.random.key(0)
    )
    return nn.meta.unbox(shapes)


def restore_target_encoder(
    path: str, step: int | None = None, sharding: jax.sharding.Sharding | None = None
) -> tuple[Any, EncoderConfig, dict, int]:
    """The target (EMA) encoder of a training run.

    Args:
      path: a training workdir or one of its `checkpoints/<step>` directories.
      step: which checkpoint (default: the one `path` names, else the latest).
      sharding: where the arrays go (default: the first device); e.g. replicated over a mesh.

    Returns:
      (training config, EncoderConfig, unscanned encoder params, step).

    Raises:
      ConfigError: not a workdir, no config.json, no checkpoint, or a checkpoint whose encoder
        does not match the config's model (e.g. another model size).
    """
    workdir, step = find_checkpoint(path, step)
    config = rundir.read_config(workdir)
    cfg = EncoderConfig.from_train_config(config)
    state_dir = os.path.join(workdir, rundir.CHECKPOINT_DIR, str(step), STATE)
    checkpointer = ocp.PyTreeCheckpointer()
    with _quiet_orbax():
        metadata = checkpointer.metadata(state_dir).item_metadata.tree
    try:
        stored = metadata[TARGET_ENCODER[0]][TARGET_ENCODER[1]]
    except (KeyError, TypeError) as e:
        raise ConfigError(f"checkpoint {state_dir!r} has no target_params/encoder") from e
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), stored
    )
    check_same_shapes(
        expected_encoder_shapes(cfg),
        jax.eval_shape(unstack_layers, abstract),  # exports use the unscanned layout
        f"the model of {os.path.join(workdir, rundir.CONFIG_FILE)} (width {cfg.width}, depth "
        f"{cfg.depth}, {cfg.num_heads} heads, MLP {cfg.mlp_dim})",
        f"the checkpoint at step {step}",
        expected_short="model",
        actual_short="checkpoint",
    )
    item = {TARGET_ENCODER[0]: {TARGET_ENCODER[1]: abstract}}
    with _quiet_orbax():
        restored = checkpointer.restore(
            state_dir,
            args=ocp.args.PyTreeRestore(
                item=item,
                restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                partial_restore=True,
            ),
        )
    params = unstack_layers(restored[TARGET_ENCODER[0]][TARGET_ENCODER[1]])
    return config, cfg, params, step
