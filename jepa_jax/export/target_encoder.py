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
from jepa_jax.errors import ConfigError
from jepa_jax.models.encoder_config import EncoderConfig
from jepa_jax.models.layers import unstack_layers
from jepa_jax.models.param_layout import check_same_shapes

TARGET_ENCODER = ("target_params", "encoder")


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
    from jepa_jax.models.init import init_encoder_params

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
    workdir, step = rundir.find_checkpoint(path, step)
    config = rundir.read_config(workdir)
    cfg = EncoderConfig.from_train_config(config)
    state_dir = os.path.join(workdir, rundir.CHECKPOINT_DIR, str(step), rundir.STATE_ITEM)
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
