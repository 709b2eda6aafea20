"""A small convolutional frame encoder: one latent vector per frame (eb_jepa's Two Rooms encoder,
scaled down for a CPU).

Three stride-2 convolutions (64 -> 32 -> 16 -> 8 px for Two Rooms' frames), one residual block at
the coarsest resolution, then the flattened map -> a linear head. Flattening (not pooling) keeps
*where* things are, which is what a position-like latent needs. The output has one token, so the
world model treats it like a one-patch ViT: [N, 1, D].
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn


class ConvEncoder(nn.Module):
    """Frames [N, H, W, C] -> latents [N, 1, width] (before the world model's LayerNorm)."""

    channels: tuple[int, ...] = (16, 32, 32)  # one stride-2 conv per entry
    width: int = 128  # latent size D
    # Fixed per-channel standardisation of the input, (x - mean) / std (e.g. the env's
    # two_rooms.channel_statistics), so a small bright object is not drowned by a large one.
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.input_mean is not None:
            x = (x - jnp.asarray(self.input_mean)) / jnp.asarray(self.input_std)
        x = x.astype(self.dtype)
        for i, c in enumerate(self.channels):
            x = nn.relu(nn.Conv(c, (4, 4), strides=2, dtype=self.dtype, name=f"down{i}")(x))
        c = self.channels[-1]
        # Post-activation residual block (eb_jepa's): relu(x + conv(relu(conv(x)))).
        y = nn.relu(nn.Conv(c, (3, 3), dtype=self.dtype, name="res_a")(x))
        x = nn.relu(x + nn.Conv(c, (3, 3), dtype=self.dtype, name="res_b")(y))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.width, dtype=self.dtype, name="head")(x)[:, None, :]
