"""Encoder inputs and targets: pixel normalisation and the targets' non-affine LayerNorm.

Shared by training, evaluation, export and the world model, so it lives with the models.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# ImageNet statistics, as the reference's normalisation (numpy: importing this module must not
# start a JAX backend).
PIXEL_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
PIXEL_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def normalize_pixels(pixels: jax.Array, dtype=jnp.float32) -> jax.Array:
    """uint8 (or float 0..255) pixels [..., 3] -> normalised floats. Done on device, so the host
    ships uint8 (4x less transfer)."""
    x = (pixels.astype(jnp.float32) - PIXEL_MEAN) / PIXEL_STD
    return x.astype(dtype)


def layer_norm_nonaffine(h: jax.Array, eps: float = 1e-6) -> jax.Array:
    """LayerNorm over the last axis without scale or bias (the reference's target normalisation)."""
    h = h.astype(jnp.float32)
    mean = h.mean(-1, keepdims=True)
    var = jnp.square(h - mean).mean(-1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + eps)
