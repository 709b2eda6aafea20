"""Collapse regularisers for a jointly trained encoder (VICReg-style, as eb_jepa's AC world model).

Without them a jointly trained encoder and predictor can agree on a constant latent and drive
the prediction loss to zero. All take latents [..., D] and pool every leading axis into samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _rows(z: jax.Array) -> jax.Array:
    return z.reshape(-1, z.shape[-1]).astype(jnp.float32)


def variance_hinge(z: jax.Array, target: float = 1.0, eps: float = 1e-4) -> jax.Array:
    """mean_d relu(target - std_d): pushes every latent dimension's std (over samples) up to
    `target`. z: [..., D] -> scalar."""
    std = jnp.sqrt(_rows(z).var(axis=0) + eps)
    return jnp.mean(jax.nn.relu(target - std))


def covariance_penalty(z: jax.Array) -> jax.Array:
    """Sum of squared off-diagonal covariances / D (VICReg): decorrelates latent dimensions so
    they do not all carry the same information. z: [..., D] -> scalar."""
    x = _rows(z)
    x = x - x.mean(axis=0)
    cov = x.T @ x / max(x.shape[0] - 1, 1)
    off = cov - jnp.diag(jnp.diag(cov))
    return jnp.sum(jnp.square(off)) / x.shape[1]


def time_similarity(z: jax.Array) -> jax.Array:
    """Mean squared difference of consecutive latents: z [B, T, ...] -> scalar. Makes the latent
    change smoothly along a trajectory."""
    diff = z[:, 1:].astype(jnp.float32) - z[:, :-1].astype(jnp.float32)
    return jnp.mean(jnp.square(diff))
