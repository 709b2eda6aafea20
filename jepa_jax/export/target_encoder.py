"""Reading the target encoder out of a training workdir's orbax checkpoints.

Only `target_params/encoder` (and, for exports, `params/predictor`) is read (orbax partial
restore), not the optimizer state, and its shapes are checked against the model the workdir's
config.json describes before any array is read, so a checkpoint of another model size is a
clear error rather than a shape crash.
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
PREDICTOR = ("params", "predictor")


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
    abstract = _stored(state_dir, TARGET_ENCODER, sharding)
    check_same_shapes(
        expected_encoder_shapes(cfg),
        jax.eval_shape(unstack_layers, abstract),  # exports use the unscanned layout
        f"the model of {os.path.join(workdir, rundir.CONFIG_FILE)} (width {cfg.width}, depth "
        f"{cfg.depth}, {cfg.num_heads} heads, MLP {cfg.mlp_dim})",
        f"the checkpoint at step {step}",
        expected_short="model",
        actual_short="checkpoint",
    )
    params = unstack_layers(_restore(state_dir, TARGET_ENCODER, abstract))
    return config, cfg, params, step


def restore_predictor(
    workdir: str, step: int, config: Any, encoder: EncoderConfig
) -> tuple[Any, Any]:
    """(Predictor module, unscanned params) of a JEPA run's checkpoint at `step`, on the first
    device, with the run's config and its encoder's description.

    Raises:
      ConfigError: the checkpoint's predictor does not match the module the config describes
        (e.g. a checkpoint written before the predictor's heads shared one final norm).
    """
    from jepa_jax.models import build_jepa_predictor
    from jepa_jax.models.init import init_predictor_params
    from jepa_jax.models.vit import token_grid

    predictor = build_jepa_predictor(config, encoder.build(), dtype="float32", scan_layers=False)
    grid = token_grid((1,) + encoder.input_shape, encoder.patch_size, encoder.tubelet_size)
    expected = nn.meta.unbox(
        jax.eval_shape(lambda k: init_predictor_params(predictor, k, grid, 4, 4), jax.random.key(0))
    )
    state_dir = os.path.join(workdir, rundir.CHECKPOINT_DIR, str(step), rundir.STATE_ITEM)
    abstract = _stored(state_dir, PREDICTOR, None)
    check_same_shapes(
        expected,
        jax.eval_shape(unstack_layers, abstract),
        "the predictor config.json describes",
        f"the checkpoint's predictor at step {step}",
        expected_short="model",
        actual_short="checkpoint",
    )
    return predictor, unstack_layers(_restore(state_dir, PREDICTOR, abstract))


def _stored(state_dir: str, key: tuple[str, str], sharding: jax.sharding.Sharding | None) -> Any:
    """ShapeDtypeStructs (placed with `sharding`, default the first device) of the subtree
    `key` of a checkpoint's state, read from its metadata only."""
    checkpointer = ocp.PyTreeCheckpointer()
    with _quiet_orbax():
        metadata = checkpointer.metadata(state_dir).item_metadata.tree
    try:
        stored = metadata[key[0]][key[1]]
    except (KeyError, TypeError) as e:
        raise ConfigError(f"checkpoint {state_dir!r} has no {'/'.join(key)}") from e
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), stored
    )


def _restore(state_dir: str, key: tuple[str, str], abstract: Any) -> Any:
    """The subtree `key` of a checkpoint's state (orbax partial restore: nothing else is read)."""
    item = {key[0]: {key[1]: abstract}}
    with _quiet_orbax():
        restored = ocp.PyTreeCheckpointer().restore(
            state_dir,
            args=ocp.args.PyTreeRestore(
                item=item,
                restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                partial_restore=True,
            ),
        )
    return restored[key[0]][key[1]]
