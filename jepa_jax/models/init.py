"""Parameter initialisation with the reference recipe (residual projections rescaled by depth),
for the encoder and the predictor: used by training, evaluation (random-init baselines), export
and the world model.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jepa_jax.models.layers import rescale_residual_projections
from jepa_jax.models.predictor import Predictor
from jepa_jax.models.vit import VisionTransformer


def init_encoder_params(
    encoder: VisionTransformer, rng: jax.Array, input_shape: tuple[int, ...]
) -> Any:
    """Boxed encoder params with the reference init (incl. residual-projection rescaling)."""
    x = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
    params = encoder.init(rng, x)["params"]
    params = dict(params)
    params["transformer"] = rescale_residual_projections(params["transformer"], encoder.depth)
    return params


def init_predictor_params(
    predictor: Predictor, rng: jax.Array, grid: tuple[int, ...], num_context: int, num_target: int
) -> Any:
    """Boxed predictor params (shapes do not depend on the token counts used here)."""
    ctx = jnp.zeros((1, num_context, predictor.out_width), jnp.float32)
    ctx_idx = jnp.zeros((1, num_context), jnp.int32)
    tgt_idx = jnp.zeros((1, num_target), jnp.int32)
    params = dict(predictor.init(rng, ctx, ctx_idx, tgt_idx, grid, 0)["params"])
    params["transformer"] = rescale_residual_projections(params["transformer"], predictor.depth)
    return params
